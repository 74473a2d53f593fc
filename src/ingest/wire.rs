//! Reading PDUs off an association without copying the data they carry. dicom-ul's
//! `receive` copies every P-DATA-TF value into a `Vec` of its own (two copies of every
//! byte received, 8 % of the daemon's time under four senders); here a complete P-DATA-TF
//! PDU is split off the association's read buffer as one shared `Bytes` and its values
//! are slices of it. Other PDUs (release, abort, anything unexpected) go through
//! dicom-ul's own parser.

use std::io::Cursor;
use std::time::Duration;

use bytes::{Buf, Bytes};
use dicom_ul::association::{AsyncAssociation, AsyncServerAssociation};
use dicom_ul::Pdu;

use super::association::Link;

/// P-DATA-TF.
const P_DATA_TF: u8 = 0x04;
/// PDU type (1), reserved (1), length (4).
const PDU_HEADER: usize = 6;
/// Item length (4), presentation context (1), message control header (1).
const PDV_HEADER: usize = 6;

/// One presentation data value: a fragment of a command or of a data set.
#[derive(Debug, Clone)]
pub struct Value {
    pub presentation_context_id: u8,
    /// A command fragment (else a data set fragment).
    pub command: bool,
    /// The last fragment of its command or data set.
    pub is_last: bool,
    /// A slice of the PDU as received.
    pub data: Bytes,
}

/// What arrived.
#[derive(Debug)]
pub enum Arrived {
    PData(Vec<Value>),
    Other(Pdu),
}

/// Why no PDU could be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("no PDU within {0:?}")]
    TimedOut(Duration),
    #[error("reading PDU: {0}")]
    Io(#[from] std::io::Error),
    #[error("PDU of {length} bytes over the negotiated maximum of {max}")]
    TooLarge { length: usize, max: usize },
    #[error("malformed P-DATA-TF PDU: {0}")]
    Malformed(&'static str),
    #[error("{0}")]
    Other(String),
}

/// Read the next PDU, waiting at most `timeout` for it. A P-DATA-TF PDU longer than
/// `max_pdu_length` (what we told the peer) is refused before it is buffered.
pub async fn receive<S: Link>(
    association: &mut AsyncServerAssociation<S>,
    max_pdu_length: u32,
    timeout: Duration,
) -> Result<Arrived, WireError> {
    tokio::time::timeout(timeout, next(association, max_pdu_length as usize))
        .await
        .map_err(|_| WireError::TimedOut(timeout))?
}

async fn next<S: Link>(
    association: &mut AsyncServerAssociation<S>,
    max: usize,
) -> Result<Arrived, WireError> {
    use tokio::io::AsyncReadExt;
    let (socket, buffer) = association.get_mut();
    loop {
        if buffer.len() >= PDU_HEADER {
            let length = u32::from_be_bytes([buffer[2], buffer[3], buffer[4], buffer[5]]) as usize;
            if length > max {
                return Err(WireError::TooLarge { length, max });
            }
            let whole = PDU_HEADER + length;
            if buffer.len() >= whole {
                if buffer[0] == P_DATA_TF {
                    let pdu = buffer.split_to(whole).freeze();
                    return values(pdu.slice(PDU_HEADER..)).map(Arrived::PData);
                }
                let mut cursor = Cursor::new(&buffer[..whole]);
                let pdu = dicom_ul::pdu::read_pdu(&mut cursor, max as u32, true)
                    .map_err(|e| WireError::Other(e.to_string()))?
                    .ok_or(WireError::Malformed("PDU shorter than its length"))?;
                buffer.advance(whole);
                return Ok(Arrived::Other(pdu));
            }
            // Room for the rest of this PDU in one go.
            buffer.reserve(whole - buffer.len());
        } else {
            buffer.reserve(PDU_HEADER);
        }
        if socket.read_buf(buffer).await? == 0 {
            return Err(WireError::Closed);
        }
    }
}

/// The values of a P-DATA-TF PDU's body, each a slice of it.
fn values(mut body: Bytes) -> Result<Vec<Value>, WireError> {
    let mut values = Vec::with_capacity(1);
    while !body.is_empty() {
        if body.len() < PDV_HEADER {
            return Err(WireError::Malformed("truncated value header"));
        }
        let length = body.get_u32() as usize;
        if length < 2 {
            return Err(WireError::Malformed("value item shorter than its header"));
        }
        if body.len() < length {
            return Err(WireError::Malformed("value item longer than its PDU"));
        }
        let presentation_context_id = body.get_u8();
        let header = body.get_u8();
        values.push(Value {
            presentation_context_id,
            command: header & 0x01 != 0,
            is_last: header & 0x02 != 0,
            data: body.split_to(length - 2),
        });
    }
    if values.is_empty() {
        return Err(WireError::Malformed("no value item"));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pc: u8, header: u8, data: &[u8]) -> Vec<u8> {
        let mut out = ((data.len() + 2) as u32).to_be_bytes().to_vec();
        out.extend([pc, header]);
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn values_are_slices_of_the_pdu_with_their_flags() {
        let mut body = item(1, 0x03, b"cmd");
        body.extend(item(3, 0x00, b"data set"));
        let v = values(Bytes::from(body)).unwrap();
        assert_eq!(v.len(), 2);
        assert!(v[0].command && v[0].is_last && v[0].presentation_context_id == 1);
        assert_eq!(&v[0].data[..], b"cmd");
        assert!(!v[1].command && !v[1].is_last && v[1].presentation_context_id == 3);
        assert_eq!(&v[1].data[..], b"data set");
    }

    #[test]
    fn malformed_items_are_refused_not_panicked_on() {
        for body in [
            vec![],
            vec![0, 0, 0],
            vec![0, 0, 0, 1, 1, 0],
            vec![0, 0, 0, 9, 1, 0, 1],
            vec![0xff, 0xff, 0xff, 0xff, 1, 0],
        ] {
            assert!(values(Bytes::from(body.clone())).is_err(), "{body:?}");
        }
    }
}
