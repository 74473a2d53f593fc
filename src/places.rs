//! Places held by connections, counted in all and per IP address, each given back by
//! `Drop` however its holder ends, a panic included. The DICOM listener's association
//! slots and open sockets, and the HTTP listener's connections, are counted this way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Places: `max_total` in all and `max_per_peer` per address.
pub struct Slots {
    total: Arc<Semaphore>,
    max_total: usize,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    max_per_peer: usize,
}

/// Why no place was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The total reached.
    Total(usize),
    /// The per-address count reached for this address.
    Peer(usize),
}

/// One place taken.
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

    /// A place for `peer` (IPv4-mapped addresses count as their IPv4 address).
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
