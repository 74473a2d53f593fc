//! Association slots (`crate::places`): `max_associations` in all and
//! `max_associations_per_peer` per IP address. A slot is taken only once the caller has
//! passed the access check on its peeked request (`peek_ae_titles`), so callers that are
//! not allowed cannot starve those that are.

use std::time::Duration;

use tokio::net::TcpStream;

pub use crate::places::{Full, Slot, Slots};

// Said in terms of the DICOM settings: every refusal it explains is an association's.
impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Full::Total(n) => write!(f, "max_associations ({n}) reached"),
            Full::Peer(n) => write!(f, "max_associations_per_peer ({n}) reached"),
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
