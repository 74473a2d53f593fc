//! The C-STORE SCU that delivers results, against DCMTK's storescp and against PACSes
//! that answer wrongly or not at all: an object counts as stored only on the peer's own
//! answer to it, outcomes stay with their files, and no wait is unbounded.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::*;
use dicom_ul::association::server::ServerAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::Pdu;
use osteoscreen::deliver::dimse::{send_files, FileOutcome, Peer};
use osteoscreen::dicom::command::encode_response;
use osteoscreen::dicom::{Command, DimseStatus};

fn peer(port: u16, timeout: Duration) -> Peer {
    Peer {
        tls: None,
        host: "127.0.0.1".into(),
        port,
        called_ae: "PACS".into(),
        calling_ae: "OSTEOTEST".into(),
        max_pdu_length: 16384,
        timeout,
    }
}

fn send(peer: &Peer, paths: &[PathBuf]) -> Vec<FileOutcome> {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(send_files(peer, paths))
}

/// How the fake PACS answers a C-STORE.
#[derive(Clone, Copy)]
enum Answer {
    /// Success, but to the next message ID (a duplicate or stray response would look so).
    AnotherMessage,
    /// Reads the request and data set and never answers.
    Never,
}

/// A PACS on a free port that accepts one association and answers as told. Each
/// C-STORE request it reads (command and whole data set) is reported on the channel, so
/// a test can tell that the exchange happened; its thread ends when we close.
fn fake_pacs(answer: Answer) -> (u16, Receiver<u16>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (requests, heard) = channel();
    std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        let mut association = ServerAssociationOptions::new()
            .accept_any()
            .promiscuous(true)
            .ae_title("PACS")
            .establish(socket)
            .expect("the SCU's association");
        let mut command = Vec::new();
        while let Ok(Pdu::PData { data }) = association.receive() {
            for value in data {
                match value.value_type {
                    PDataValueType::Command => command.extend_from_slice(&value.data),
                    PDataValueType::Data if value.is_last => {
                        let mut request = Command::decode(&command).unwrap();
                        command.clear();
                        let _ = requests.send(request.message_id);
                        if let Answer::AnotherMessage = answer {
                            request.message_id = request.message_id.wrapping_add(1);
                            let rsp = encode_response(&request, DimseStatus::SUCCESS, None);
                            let _ = association.send(&Pdu::PData {
                                data: vec![PDataValue {
                                    presentation_context_id: value.presentation_context_id,
                                    value_type: PDataValueType::Command,
                                    is_last: true,
                                    data: rsp,
                                }],
                            });
                        }
                    }
                    PDataValueType::Data => {}
                }
            }
        }
    });
    (port, heard)
}

#[test]
fn each_outcome_stays_with_its_file() {
    let work = tempfile::tempdir().unwrap();
    let scp = Storescp::start(work.path(), &[]);
    let junk = work.path().join("junk.dcm");
    std::fs::write(&junk, b"not dicom").unwrap();
    let paths = vec![
        junk,
        real("pydicom/CT_small.dcm"),
        work.path().join("missing.dcm"),
        real("wg04/RG3_RLE.dcm"),
    ];
    let outcomes = send(&peer(scp.port, Duration::from_secs(20)), &paths);
    assert_eq!(outcomes.len(), paths.len());
    for (o, p) in outcomes.iter().zip(&paths) {
        assert_eq!(&o.path, p);
    }
    let stored: Vec<bool> = outcomes.iter().map(FileOutcome::stored).collect();
    assert_eq!(stored, [false, true, false, true], "{outcomes:?}");
}

#[test]
fn a_response_to_another_message_is_not_taken_for_a_stored_object() {
    let (port, heard) = fake_pacs(Answer::AnotherMessage);
    let paths = [real("pydicom/CT_small.dcm"), real("wg04/RG3_RLE.dcm")];
    let outcomes = send(&peer(port, Duration::from_secs(10)), &paths);
    // The PACS read the first store (message 1) and answered message 2; the second
    // object was never offered.
    assert_eq!(heard.try_iter().collect::<Vec<_>>(), [1]);
    assert!(outcomes.iter().all(|o| !o.stored()), "{outcomes:?}");
    let first = outcomes[0].result.as_ref().unwrap_err();
    assert!(first.contains("does not answer the request"), "{first}");
    let second = outcomes[1].result.as_ref().unwrap_err();
    assert!(second.starts_with("not sent"), "{second}");
}

#[test]
fn a_pacs_that_never_answers_is_given_up_on_within_the_timeouts() {
    let (port, heard) = fake_pacs(Answer::Never);
    let paths = [real("pydicom/CT_small.dcm"), real("wg04/RG3_RLE.dcm")];
    let started = Instant::now();
    let outcomes = send(&peer(port, Duration::from_secs(1)), &paths);
    assert_eq!(
        heard.try_iter().collect::<Vec<_>>(),
        [1],
        "the store went out"
    );
    // Four timeouts for the exchange, and a little for the association.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(outcomes.iter().all(|o| !o.stored()), "{outcomes:?}");
    let first = outcomes[0].result.as_ref().unwrap_err();
    assert!(
        first.contains("no complete response") || first.contains("timed out"),
        "{first}"
    );
}

/// An HTTP server on a free port that answers every request with `response` (status
/// line, headers and body) after reading the request head.
fn canned_http(response: &'static str) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 65536];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

#[test]
fn a_stow_rs_redirect_or_login_page_is_not_a_stored_object() {
    use osteoscreen::deliver::settings::{Destination, DestinationKind};
    use osteoscreen::deliver::stow::StowClient;
    let cases = [
        "HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 27\r\nConnection: close\r\n\r\n<html>Please sign in</html>",
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    for response in cases {
        let port = canned_http(response);
        let d = Destination {
            name: "web".into(),
            kind: DestinationKind::Stow,
            url: format!("http://127.0.0.1:{port}/dicom-web"),
            ..Default::default()
        };
        let client = StowClient::new(&d, Duration::from_secs(5)).unwrap();
        let result = rt.block_on(client.store(&real("pydicom/CT_small.dcm")));
        assert!(result.is_err(), "{response:?} taken for success");
    }
}
