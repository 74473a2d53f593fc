//! DICOM TLS in: DCMTK's storescu over TLS with a client certificate stores; a peer
//! without one, or speaking plain DICOM to the TLS port, is refused. The certificates
//! (a CA, the daemon's, a client's) are made by the test with openssl.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// `name.pem` + `name.key`, signed by the CA in `dir` (made first, as "ca").
fn make_cert(dir: &Path, name: &str, usage: &str) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
        ),
    )
    .unwrap();
    let ok = |out: std::process::Output| assert!(out.status.success(), "{}", text(&out));
    ok(run(Command::new("openssl")
        .args(["req", "-newkey", "rsa:2048", "-nodes", "-subj"])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)));
    ok(run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(dir.join("ca.pem"))
        .arg("-CAkey")
        .arg(dir.join("ca.key"))
        .arg("-CAcreateserial")
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(dir.join(format!("{name}.pem")))));
}

fn make_pki(dir: &Path) {
    let out = run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=osteoscreen test CA", "-keyout"])
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.pem")));
    assert!(out.status.success(), "{}", text(&out));
    make_cert(dir, "server", "serverAuth");
    make_cert(dir, "client", "clientAuth");
}

fn storescu_tls(port: u16, pki: &Path, identity: bool, file: &Path) -> std::process::Output {
    let mut cmd = Command::new("storescu");
    if identity {
        cmd.arg("+tls")
            .arg(pki.join("client.key"))
            .arg(pki.join("client.pem"))
            .arg("-pw");
    } else {
        cmd.arg("+tla");
    }
    cmd.arg("+cf")
        .arg(pki.join("ca.pem"))
        .args([
            "-ta",
            "20",
            "-aet",
            "TLSSCU",
            "-aec",
            "OSTEOSCREEN",
            "127.0.0.1",
        ])
        .arg(port.to_string())
        .arg(file);
    run(&mut cmd)
}

#[test]
fn storescu_over_tls_with_a_client_certificate_stores_and_others_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let pki = work.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    make_pki(&pki);
    let tls_port = free_port();
    let s = |p: &str| pki.join(p).to_string_lossy().into_owned();
    let daemon = Daemon::start(
        work.path(),
        &[
            (
                "OSTEOSCREEN__DICOM__TLS__LISTEN",
                &format!("127.0.0.1:{tls_port}"),
            ),
            ("OSTEOSCREEN__DICOM__TLS__CERTIFICATE", &s("server.pem")),
            ("OSTEOSCREEN__DICOM__TLS__PRIVATE_KEY", &s("server.key")),
            ("OSTEOSCREEN__DICOM__TLS__CLIENT_CA", &s("ca.pem")),
            ("OSTEOSCREEN__DICOM__TIMEOUT_SECONDS", "3"),
        ],
    );
    assert!(daemon.logs().contains(&format!("tls=127.0.0.1:{tls_port}")));

    let out = storescu_tls(tls_port, &pki, true, &real("pydicom/CT_small.dcm"));
    assert!(out.status.success(), "{}\n{}", text(&out), daemon.logs());
    let rows = daemon.rows(1);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].calling_ae, "TLSSCU");
    assert!(daemon.logs().contains("transport=TLS"));

    // No client certificate: the handshake fails, nothing is stored.
    let out = storescu_tls(tls_port, &pki, false, &real("wg04/CT1_UNC.dcm"));
    assert!(!out.status.success(), "{}", text(&out));
    // Plain DICOM on the TLS port: rejected for good with an A-ASSOCIATE-RJ, so the
    // caller's log says refused rather than a dropped connection; the daemon's says why.
    let out = run(Command::new("echoscu")
        .args(["-ta", "20", "-aec", "OSTEOSCREEN", "127.0.0.1"])
        .arg(tls_port.to_string()));
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("Association Rejected"), "{said}");
    assert!(said.contains("Rejected Permanent"), "{said}");
    daemon.wait_for_log(
        "a plain DICOM association request on the TLS port",
        Duration::from_secs(20),
    );
    assert_eq!(daemon.rows(1).len(), 1);
    // A handshake begun and never finished: the daemon closes it (it held its slot for
    // ever before) and says why.
    {
        use std::io::Write;
        let mut stalled = std::net::TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
        stalled.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00]).unwrap();
        assert!(closed_by_peer(&mut stalled, Duration::from_secs(120)));
        daemon.wait_for_log(
            "negotiation not finished within 6s",
            Duration::from_secs(20),
        );
    }
    // The plain listener still serves.
    let out = run(daemon.storescu("PLAIN").arg(real("wg04/CT1_UNC.dcm")));
    assert!(out.status.success(), "{}", text(&out));
}

/// Test certificates in `work/pki`, and DCMTK's storescp as a TLS PACS that requires a
/// client certificate from our CA, receiving into `work/received`.
fn tls_pacs(work: &Path) -> (std::path::PathBuf, std::path::PathBuf, Storescp) {
    let pki = work.join("pki");
    let out_dir = work.join("received");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::create_dir_all(&out_dir).unwrap();
    make_pki(&pki);
    let s = |p: &str| pki.join(p).to_string_lossy().into_owned();
    let pacs = Storescp::start(
        &out_dir,
        &[
            "+tls",
            &s("server.key"),
            &s("server.pem"),
            "-pw",
            "+cf",
            &s("ca.pem"),
        ],
    );
    (pki, out_dir, pacs)
}

#[test]
fn echo_and_send_speak_tls_to_dcmtk_storescp() {
    let work = tempfile::tempdir().unwrap();
    let (pki, out_dir, pacs) = tls_pacs(work.path());
    let link = |verb: &str, identity: bool, extra: &[&std::path::Path]| {
        let mut cmd = Command::new(bin());
        cmd.arg("--config")
            .arg(shipped_config())
            .arg(verb)
            .args([
                "--host",
                "127.0.0.1",
                "--called-ae",
                "PACS",
                "--timeout",
                "20",
            ])
            .arg("--port")
            .arg(pacs.port.to_string())
            .arg("--tls-ca")
            .arg(pki.join("ca.pem"));
        if identity {
            cmd.arg("--tls-certificate")
                .arg(pki.join("client.pem"))
                .arg("--tls-key")
                .arg(pki.join("client.key"));
        }
        run(cmd.args(extra))
    };
    let out = link("echo", true, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let file = real("pydicom/CT_small.dcm");
    let out = link("send", true, &[&file]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        1,
        "one file received"
    );
    // Without our certificate the PACS refuses the handshake.
    let out = link("echo", false, &[]);
    assert!(!out.status.success(), "{}", text(&out));
}

/// The daemon's own deliveries over TLS: a CT study in, its SR and key image out to
/// DCMTK's storescp as a TLS PACS that requires our client certificate.
#[test]
fn the_daemon_delivers_its_results_to_a_tls_pacs() {
    let work = tempfile::tempdir().unwrap();
    let (pki, out_dir, pacs) = tls_pacs(work.path());
    let s = |p: &str| pki.join(p).to_string_lossy().into_owned();
    let config = work.path().join("osteoscreen.toml");
    let settings = std::fs::read_to_string(shipped_config()).unwrap()
        + &format!(
            "\n[[destinations]]\nname = \"tls-pacs\"\nkind = \"dimse\"\nae_title = \"PACS\"\n\
             host = \"127.0.0.1\"\nport = {}\ntls_ca = \"{}\"\ntls_certificate = \"{}\"\n\
             tls_private_key = \"{}\"\n",
            pacs.port,
            s("ca.pem"),
            s("client.pem"),
            s("client.key")
        );
    std::fs::write(&config, settings).unwrap();
    let daemon = Daemon::start_with_config(
        work.path(),
        &config,
        &[
            ("OSTEOSCREEN__PIPELINE__PAUSED", "false"),
            ("OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS", "1"),
            ("OSTEOSCREEN__DELIVERY__INITIAL_BACKOFF_SECONDS", "0.3"),
            ("OSTEOSCREEN__DELIVERY__MAX_BACKOFF_SECONDS", "1"),
        ],
    );
    let study = synth_study(&work.path().join("ct"), &CT_3MM);
    let out = run(daemon.storescu("CTSCU").arg("+sd").arg(&study));
    assert!(out.status.success(), "{}", text(&out));
    // storescp names what it receives by SOP class: SR* and SC.* (our key image).
    let received = || -> Vec<String> {
        std::fs::read_dir(&out_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let start = std::time::Instant::now();
    // storescp writes each file before it answers, so the daemon's outcome line (which
    // names the destination) comes a moment after the files: wait for both.
    while !(received().iter().any(|n| n.starts_with("SR"))
        && received().iter().any(|n| n.starts_with("SC."))
        && daemon
            .logs()
            .lines()
            .any(|l| l.contains("study finished") && l.contains("tls-pacs")))
    {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "no SR and key image at the TLS PACS: {:?}\n{}",
            received(),
            daemon.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A write left in rustls's buffer (dicom-ul does not flush) once stalled the first
    // association until its read timeout; the retry then hid it. No retries here.
    let logs = daemon.logs();
    assert!(!logs.contains("delivery failed"), "{logs}");
    assert!(!logs.contains("destination not reached"), "{logs}");
}
