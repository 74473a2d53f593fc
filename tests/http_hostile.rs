//! Hostile HTTP clients against the real daemon: a request whose headers never end is
//! closed after `[http] timeout_seconds`; a STOW-RS body that trickles in, or whose part
//! headers never end, is cut off with the reason; an idle keep-alive connection does not
//! hold the daemon's shutdown; readiness probes from many clients at once are answered.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::http::get;
use common::stow::*;
use common::*;

/// The response the daemon sends on `socket`, head and body (empty when it closed
/// without one).
fn answer(socket: &mut TcpStream) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let complete = |r: &[u8]| {
        let Some(end) = r.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&r[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        r.len() >= end + 4 + length
    };
    while !complete(&response) {
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

fn post_head(len: usize) -> String {
    format!(
        "POST /dicomweb/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {}\r\n\
         Content-Length: {len}\r\n\r\n",
        stow_type()
    )
}

#[test]
fn unfinished_headers_and_trickling_bodies_are_cut_off() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(work.path(), &[("OSTEOSCREEN__HTTP__TIMEOUT_SECONDS", "2")]);
    let connect = || TcpStream::connect(("127.0.0.1", daemon.http_port)).unwrap();

    // Request headers that never end: the daemon closes the connection (it kept it for
    // ever before).
    let mut slow = connect();
    slow.write_all(b"POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert!(closed_by_peer(&mut slow, Duration::from_secs(120)));

    // Part headers that never end: refused once they pass the allowance.
    let mut body = format!("--{BOUNDARY}\r\nX-Filler: ").into_bytes();
    body.resize(20 << 20, b'a');
    let mut flood = connect();
    // Read while writing: the answer comes before the body ends.
    let reader = {
        let mut socket = flood.try_clone().unwrap();
        std::thread::spawn(move || answer(&mut socket))
    };
    flood.write_all(post_head(body.len()).as_bytes()).unwrap();
    let _ = flood.write_all(&body);
    let said = reader.join().unwrap();
    assert!(said.starts_with("HTTP/1.1 400"), "{said}");
    assert!(said.contains("part's headers"), "{said}");

    // A valid part, then a trickle (640 bytes/s, never silent for timeout_seconds): cut
    // off once the average falls below the floor, however regular the trickle.
    let ct = std::fs::read(real("pydicom/CT_small.dcm")).unwrap();
    let body = multipart(&[ct.clone(), ct]);
    let mut trickle = connect();
    trickle.write_all(post_head(body.len()).as_bytes()).unwrap();
    trickle.write_all(&body[..body.len() / 2]).unwrap();
    let reader = {
        let mut socket = trickle.try_clone().unwrap();
        std::thread::spawn(move || answer(&mut socket))
    };
    // At most half the body (the request is never completed), 64 bytes a tenth of a
    // second, until the daemon answers.
    for piece in body[body.len() / 2..body.len() - 64].chunks(64) {
        if reader.is_finished() || trickle.write_all(piece).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let said = reader.join().unwrap();
    assert!(said.starts_with("HTTP/1.1 400"), "{said}");
    assert!(said.contains("slower than"), "{said}");
    assert!(daemon.store().instances().unwrap().is_empty());

    // Probes from many clients at once are all answered.
    let port = daemon.http_port;
    let probes: Vec<_> = (0..8)
        .map(|_| {
            let dir = work.path().to_path_buf();
            std::thread::spawn(move || (0..10).all(|_| get(&dir, port, "/readyz").status == 200))
        })
        .collect();
    assert!(probes.into_iter().all(|p| p.join().unwrap()));
    daemon.terminate();
}

/// An idle keep-alive connection does not hold the daemon's shutdown, however long
/// `[http] timeout_seconds` is; one address cannot hold every connection.
#[test]
fn an_idle_keep_alive_connection_does_not_hold_the_shutdown() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__HTTP__TIMEOUT_SECONDS", "600")],
    );
    let connect = || TcpStream::connect(("127.0.0.1", daemon.http_port)).unwrap();
    let mut idle = connect();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(answer(&mut idle).starts_with("HTTP/1.1 200"));
    // One address holds at most 64 connections: the next is closed by the daemon (with a
    // 600 s header timeout nothing else would close it), and a place comes back when one
    // of them goes.
    // The listener accepts in arrival order: the 65th is taken after these.
    let mut others: Vec<TcpStream> = (1..64).map(|_| connect()).collect();
    let mut over = connect();
    assert!(closed_by_peer(&mut over, Duration::from_secs(60)));
    daemon.wait_for_log("64 already open from this address", Duration::from_secs(30));
    others.pop();
    wait_until("a place back", Duration::from_secs(30), || {
        get(work.path(), daemon.http_port, "/healthz").status == 200
    });
    // Stopped with 64 idle connections open: none is waited on past the drain.
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
    assert!(daemon.logs().contains("shutdown complete"));
    assert!(
        !daemon.logs().contains("still in flight"),
        "{}",
        daemon.logs()
    );
}
