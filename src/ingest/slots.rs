//! Association slots: `max_associations` in all and `max_associations_per_peer` per IP
//! address. A slot is taken only once the caller has passed the access check (see
//! `precheck`), so callers that are not allowed cannot starve those that are, and it is
//! released by `Drop` however the association ends, a panic included.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slots of one listener.
pub struct Slots {
    total: Arc<Semaphore>,
    max_total: usize,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    max_per_peer: usize,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `max_associations` reached.
    Total(usize),
    /// `max_associations_per_peer` reached for this address.
    Peer(usize),
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Full::Total(n) => write!(f, "max_associations ({n}) reached"),
            Full::Peer(n) => write!(f, "max_associations_per_peer ({n}) reached"),
        }
    }
}

/// One taken slot.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    peer: IpAddr,
    slots: Arc<Slots>,
}

impl Slots {
    pub fn new(max_total: usize, max_per_peer: usize) -> Arc<Slots> {
        Arc::new(Slots {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            per_peer: Mutex::new(HashMap::new()),
            max_per_peer,
        })
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_peer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for `peer` (IPv4-mapped addresses count as their IPv4 address).
    pub fn try_take(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Full> {
        let peer = peer.to_canonical();
        let mut peers = self.peers();
        if peers.get(&peer).copied().unwrap_or(0) >= self.max_per_peer {
            return Err(Full::Peer(self.max_per_peer));
        }
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Full::Total(self.max_total))?;
        *peers.entry(peer).or_insert(0) += 1;
        Ok(Slot {
            _permit: permit,
            peer,
            slots: self.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut peers = self.slots.peers();
        if let Some(n) = peers.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

/// What the first bytes of a connection are, read without consuming them (dicom-ul
/// negotiates on the same bytes afterwards).
#[derive(Debug, PartialEq)]
pub enum Peeked {
    /// An A-ASSOCIATE-RQ: (called, calling) AE titles.
    Request(String, String),
    /// Something else, or the peer closed: the negotiation refuses or ends it.
    Other,
    /// Nothing complete within the timeout (the ARTIM timer of PS3.8 9.1.5): the
    /// connection is closed, so a silent peer cannot outwait the slot check.
    Silent,
}

/// Peek at an A-ASSOCIATE-RQ's AE titles.
pub async fn peek_ae_titles(socket: &TcpStream, timeout: Duration) -> Peeked {
    // Type (1), reserved (1), length (4), protocol version (2), reserved (2), called AE
    // (16), calling AE (16).
    const NEEDED: usize = 42;
    let peek = async {
        let mut buf = [0u8; NEEDED];
        loop {
            let Ok(n) = socket.peek(&mut buf).await else {
                return Peeked::Other;
            };
            if n == 0 || buf[0] != 0x01 {
                return Peeked::Other;
            }
            if n >= NEEDED {
                // As dicom-ul decodes them (one byte, one character), so that both
                // decisions see the same titles.
                let text = |b: &[u8]| {
                    b.iter()
                        .map(|&c| c as char)
                        .collect::<String>()
                        .trim()
                        .to_string()
                };
                return Peeked::Request(text(&buf[10..26]), text(&buf[26..42]));
            }
            // A partial request: peek returns at once while bytes are waiting, so wait a
            // little for the rest instead of spinning.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(timeout, peek)
        .await
        .unwrap_or(Peeked::Silent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_peer_and_total_caps_release_on_drop() {
        let slots = Slots::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = slots.try_take(a).unwrap();
        let _s2 = slots.try_take(mapped).unwrap();
        assert_eq!(slots.try_take(a).err(), Some(Full::Peer(2)));
        let _s3 = slots.try_take(b).unwrap();
        assert_eq!(slots.try_take(b).err(), Some(Full::Total(3)));
        drop(s1);
        assert!(slots.try_take(a).is_ok());
    }
}
