//! Limits on how a STOW-RS body arrives that the multipart parser does not enforce. The
//! parser buffers a part's headers (and anything before the first boundary) until it
//! finds their end, so bytes that are not part data are bounded here; and a body must
//! keep a minimum average rate once it has had `timeout` to start, or a client sending a
//! byte now and then would hold its studies back from the assembler, and the daemon's
//! shutdown, for ever.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

/// Bytes a body may deliver while the parser looks for the next part's headers. Those are
/// boundaries, headers and transport padding, a few hundred bytes; the allowance is for
/// the parser's read-ahead, which pulls in whatever the connection has buffered (by the
/// megabyte with a fast client) before it looks. What it bounds is a header that never
/// ends, which the parser would buffer (and search again on every read) without limit.
const HEADER_BYTES: u64 = 16 << 20;
/// The slowest average a body may arrive at, once it has had `timeout` to start.
pub const MIN_BYTES_PER_SECOND: u64 = 16 << 10;

/// What one request's body has delivered so far, and why it was cut off, if it was.
#[derive(Default)]
pub struct Progress {
    raw: AtomicU64,
    /// Bytes since the parser began looking for the next part's headers; none counted
    /// while it hands out part data.
    seeking: AtomicU64,
    seeking_headers: AtomicBool,
    broken: Mutex<Option<String>>,
}

impl Progress {
    /// The parser is looking for the next part (its boundary and headers).
    pub fn seeking_part(&self) {
        self.seeking.store(0, Ordering::Relaxed);
        self.seeking_headers.store(true, Ordering::Relaxed);
    }

    /// A part's headers are in: what follows is its data.
    pub fn in_part(&self) {
        self.seeking_headers.store(false, Ordering::Relaxed);
    }

    /// Why the body was cut off, when a limit here did it.
    pub fn broken(&self) -> Option<String> {
        self.broken.lock().ok()?.clone()
    }

    /// Count `n` more body bytes; the limit they break, if any.
    fn arrived(&self, n: usize, started: Instant, timeout: Duration) -> Option<String> {
        let raw = self.raw.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if self.seeking_headers.load(Ordering::Relaxed)
            && self.seeking.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > HEADER_BYTES
        {
            return Some(format!(
                "more than {} MiB without the end of a part's headers",
                HEADER_BYTES >> 20
            ));
        }
        let elapsed = started.elapsed();
        if elapsed > timeout && (raw as f64) < MIN_BYTES_PER_SECOND as f64 * elapsed.as_secs_f64() {
            return Some(format!(
                "body arriving slower than {} KiB/s",
                MIN_BYTES_PER_SECOND >> 10
            ));
        }
        None
    }
}

/// `body` as a stream that ends in an error once a limit is broken (`progress` says
/// which).
pub fn guard(
    body: Body,
    progress: Arc<Progress>,
    timeout: Duration,
) -> impl Stream<Item = Result<Bytes, axum::Error>> {
    let started = Instant::now();
    body.into_data_stream().map(move |chunk| {
        let bytes = chunk?;
        match progress.arrived(bytes.len(), started, timeout) {
            None => Ok(bytes),
            Some(why) => {
                if let Ok(mut broken) = progress.broken.lock() {
                    broken.get_or_insert_with(|| why.clone());
                }
                Err(axum::Error::new(std::io::Error::other(why)))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_without_end_and_a_trickle_are_cut_off() {
        let p = Progress::default();
        let now = Instant::now();
        let long = Duration::from_secs(3600);
        p.seeking_part();
        assert_eq!(p.arrived(15 << 20, now, long), None);
        // Part data do not count, however much.
        p.in_part();
        assert_eq!(p.arrived(100 << 20, now, long), None);
        p.seeking_part();
        assert_eq!(p.arrived(15 << 20, now, long), None);
        assert!(p
            .arrived(2 << 20, now, long)
            .unwrap()
            .contains("part's headers"));

        let p = Progress::default();
        let started = Instant::now() - Duration::from_secs(60);
        let why = p.arrived(100, started, Duration::from_secs(30)).unwrap();
        assert!(why.contains("slower than"), "{why}");
        // Within its first `timeout` a body may be as slow as it likes.
        assert_eq!(
            p.arrived(100, Instant::now(), Duration::from_secs(30)),
            None
        );
    }
}
