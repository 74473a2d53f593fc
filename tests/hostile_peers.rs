//! Hostile and broken peers against the real daemon over real sockets: length bombs,
//! oversized instances, unencodable refusal comments, wrong called AE titles, per-peer
//! limits, idle and lifetime limits, a second daemon on the same storage. Each test
//! asserts the answer, that the daemon is alive, and its peak memory (VmHWM).

mod common;

use std::process::Command;
use std::time::Duration;

use common::scu::RawAssociation;
use common::*;
use dicom_ul::Pdu;
use osteoscreen::deliver::dimse::OutgoingFile;
use osteoscreen::dicom::DimseStatus as Status;

const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
/// Peak resident memory the daemon may reach under any of these peers.
const MAX_PEAK_MIB: u64 = 200;

/// One Explicit VR Little Endian element.
fn element(group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
    out
}

/// A CT header with these UIDs, padded to even lengths.
fn header(sop_class: &str, sop_instance: &str, charset: Option<&str>) -> Vec<u8> {
    let even = |s: &str, pad: u8| {
        let mut v = s.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(pad);
        }
        v
    };
    let mut out = Vec::new();
    if let Some(cs) = charset {
        out.extend(element(0x0008, 0x0005, b"CS", &even(cs, b' ')));
    }
    out.extend(element(0x0008, 0x0016, b"UI", &even(sop_class, 0)));
    out.extend(element(0x0008, 0x0018, b"UI", &even(sop_instance, 0)));
    out.extend(element(0x0008, 0x0060, b"CS", b"CT"));
    out.extend(element(
        0x0020,
        0x000D,
        b"UI",
        &even("1.2.826.0.1.3680043.2.1", 0),
    ));
    out.extend(element(
        0x0020,
        0x000E,
        b"UI",
        &even("1.2.826.0.1.3680043.2.2", 0),
    ));
    out
}

fn peak_mib(daemon: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024
}

fn assert_alive_and_small(daemon: &mut Daemon) {
    assert!(daemon.is_running(), "daemon died:\n{}", daemon.logs());
    let peak = peak_mib(daemon);
    eprintln!("daemon peak RSS (VmHWM): {peak} MiB");
    assert!(peak < MAX_PEAK_MIB, "peak RSS {peak} MiB");
    let out = run(daemon.storescu("AFTER").arg(real("pydicom/CT_small.dcm")));
    assert!(out.status.success(), "{}\n{}", text(&out), daemon.logs());
}

#[test]
fn length_bombs_are_refused_without_allocating_them() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(work.path(), &[]);
    let mut association =
        RawAssociation::open(daemon.port, "BOMBER", CT_IMAGE, EXPLICIT_LE).unwrap();
    // Pixel Data declaring 4 GiB, then a text element declaring 64 KiB in a sequence item,
    // then a sequence nested 200 deep: each a ~200-byte data set.
    let uid = "1.2.826.0.1.3680043.2.3";
    let mut pixel_bomb = header(CT_IMAGE, uid, None);
    pixel_bomb.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
    pixel_bomb.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    pixel_bomb.extend_from_slice(&[0; 64]);
    let mut nested = header(CT_IMAGE, uid, None);
    for _ in 0..200 {
        nested.extend_from_slice(&[
            0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        nested.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    for (name, data) in [("pixel data", &pixel_bomb), ("nesting", &nested)] {
        association.send_store_rq(CT_IMAGE, uid);
        association.send_data(data, true);
        let (status, comment) = association.response();
        assert_eq!(status, Status::CANNOT_UNDERSTAND, "{name}: {comment:?}");
        assert!(
            comment.as_deref().unwrap_or("").contains("refused"),
            "{name}: {comment:?}"
        );
    }
    association.release();
    assert!(daemon.store().instances().unwrap().is_empty());
    assert_eq!(daemon.partial_files(), vec![]);
    assert_alive_and_small(&mut daemon);
}

/// A P-DATA-TF PDU whose header declares `length` bytes, followed by `body`.
fn p_data(length: u32, body: &[u8]) -> Vec<u8> {
    let mut pdu = vec![0x04, 0];
    pdu.extend_from_slice(&length.to_be_bytes());
    pdu.extend_from_slice(body);
    pdu
}

/// PDUs are read off the wire without copying their values (`ingest::wire`): a PDU over
/// the negotiated maximum is refused from its header, before it is buffered, and a value
/// item that claims more than its PDU ends the association with an A-ABORT; a whole
/// C-STORE in one PDU (command and data set, two values) is stored.
#[test]
fn oversized_and_malformed_pdus_are_aborted_and_two_values_in_one_pdu_are_stored() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(work.path(), &[]);
    let ct = OutgoingFile::inspect(&real("pydicom/CT_small.dcm")).unwrap();
    let mut whole = RawAssociation::for_file(daemon.port, "WHOLE", &ct);
    whole.store_in_one_pdu(
        &ct.sop_class_uid,
        &ct.sop_instance_uid,
        &ct.data_set().unwrap(),
    );
    assert_eq!(whole.response().0, Status::SUCCESS, "{}", daemon.logs());
    whole.release();
    assert_eq!(daemon.rows(1).len(), 1);

    let uid = "1.2.826.0.1.3680043.2.4";
    let mut huge = RawAssociation::open(daemon.port, "HUGE", CT_IMAGE, EXPLICIT_LE).unwrap();
    huge.send_store_rq(CT_IMAGE, uid);
    // 1 GiB declared, 1 KiB sent: refused from the header alone.
    huge.send_raw(&p_data(1 << 30, &[0; 1024]));
    assert!(
        !matches!(huge.receive(), Ok(Pdu::PData { .. })),
        "no answer to an oversized PDU"
    );
    let mut lying = RawAssociation::open(daemon.port, "LIAR", CT_IMAGE, EXPLICIT_LE).unwrap();
    let pc = lying.pc_id();
    lying.send_store_rq(CT_IMAGE, uid);
    // A value item of 4,000 bytes in a PDU of 16.
    let mut body = 4000u32.to_be_bytes().to_vec();
    body.extend_from_slice(&[pc, 0x02]);
    body.extend_from_slice(&[0; 10]);
    lying.send_raw(&p_data(body.len() as u32, &body));
    assert!(
        matches!(lying.receive(), Ok(Pdu::AbortRQ { .. })),
        "an A-ABORT for a malformed value item"
    );
    assert_eq!(daemon.rows(1).len(), 1);
    assert_eq!(daemon.partial_files(), vec![]);
    assert_alive_and_small(&mut daemon);
    let logs = daemon.logs();
    assert!(logs.contains("over the negotiated maximum"), "{logs}");
    assert!(logs.contains("value item longer than its PDU"), "{logs}");
}

#[test]
fn an_instance_over_max_instance_mb_is_refused_while_it_arrives() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(work.path(), &[("OSTEOSCREEN__DICOM__MAX_INSTANCE_MB", "2")]);
    let mut association =
        RawAssociation::open(daemon.port, "BIGSCU", CT_IMAGE, EXPLICIT_LE).unwrap();
    let uid = "1.2.826.0.1.3680043.2.4";
    association.send_store_rq(CT_IMAGE, uid);
    let mut data = header(CT_IMAGE, uid, None);
    data.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
    data.extend_from_slice(&(64u32 << 20).to_le_bytes());
    association.send_data(&data, false);
    // 16 MiB of pixel data, no last fragment yet: the partial file never passes the cap.
    let chunk = vec![0x55u8; 1 << 20];
    for _ in 0..16 {
        association.send_data(&chunk, false);
        for (_, size) in daemon.partial_files() {
            assert!(
                size <= (2 << 20) + (64 << 10),
                "partial file of {size} bytes"
            );
        }
    }
    wait_until("partial file removed", Duration::from_secs(20), || {
        daemon.partial_files().is_empty()
    });
    association.send_data(&chunk[..16], true);
    let (status, comment) = association.response();
    assert_eq!(status, Status::OUT_OF_RESOURCES);
    assert!(comment.unwrap_or_default().contains("max_instance_mb"));
    association.release();
    assert!(daemon.store().instances().unwrap().is_empty());
    assert_alive_and_small(&mut daemon);
}

#[test]
fn a_refusal_comment_that_cannot_be_encoded_is_still_answered() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(work.path(), &[]);
    let mut association =
        RawAssociation::open(daemon.port, "UTF8SCU", CT_IMAGE, EXPLICIT_LE).unwrap();
    let uid = "1.2.826.0.1.3680043.2.5";
    // The data set's SOP Class UID (UTF-8, with a euro sign) differs from the command's.
    association.send_store_rq(CT_IMAGE, uid);
    let mut data = header("1.2€", uid, Some("ISO_IR 192"));
    data.extend(element(0x7FE0, 0x0010, b"OW", &[0; 8]));
    association.send_data(&data, true);
    let (status, comment) = association.response();
    assert_eq!(status, Status::DATA_SET_MISMATCH, "{comment:?}");
    assert!(comment.unwrap_or_default().contains("1.2?"));
    // The association goes on: a good instance on it is stored.
    let (status, _) = association.store(&real("pydicom/CT_small.dcm"));
    assert_eq!(status, Status::SUCCESS);
    association.release();
    daemon.wait_for_log(
        "association closed calling_ae=UTF8SCU",
        Duration::from_secs(20),
    );
    assert_alive_and_small(&mut daemon);
}

fn echoscu(port: u16, called: &str) -> std::process::Output {
    run(Command::new("echoscu")
        .args(["-ta", "30", "-aet", "ECHOSCU", "-aec", called, "127.0.0.1"])
        .arg(port.to_string()))
}

#[test]
fn a_wrong_called_ae_title_is_rejected_unless_any_is_accepted() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(work.path(), &[]);
    for called in ["WRONGAE", "ANYTHING", "                "] {
        let out = echoscu(daemon.port, called);
        let said = text(&out);
        assert!(!out.status.success(), "{called:?} accepted: {said}");
        assert!(said.contains("Called AE Title Not Recognized"), "{said}");
    }
    assert!(echoscu(daemon.port, "OSTEOSCREEN").status.success());
    drop(daemon);
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__ACCEPT_ANY_CALLED_AE", "true")],
    );
    assert!(echoscu(daemon.port, "ANYTHING").status.success());
}

/// An A-ASSOCIATE-RQ (C-ECHO context) whose Called AE Title field holds `called` as sent.
fn association_rq(called: &[u8; 16]) -> Vec<u8> {
    use dicom_ul::pdu::{AssociationRQ, PresentationContextProposed, UserVariableItem};
    let rq = Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "HOSTILE".into(),
        called_ae_title: "OSTEOSCREEN".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: "1.2.840.10008.1.1".into(),
            transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
        }],
        user_variables: vec![UserVariableItem::MaxLength(16384)],
    });
    let mut out = Vec::new();
    dicom_ul::write_pdu(&mut out, &rq).unwrap();
    out[10..26].copy_from_slice(called);
    out
}

/// The first PDU type the daemon answers with on `socket` (0 when it closed).
fn answer_type(socket: &mut std::net::TcpStream) -> u8 {
    use std::io::Read;
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut first = [0u8; 1];
    match socket.read(&mut first) {
        Ok(1) => first[0],
        _ => 0,
    }
}

/// A Called AE Title with a Latin-1 no-break space before its padding is ours to
/// dicom-ul, which trims it: the check before the slot must read it the same way, or
/// the association gets in without a slot (it once did: the per-peer limit then let a
/// second one in). A command on a presentation context that was not accepted, or a
/// response sent to us, ends the association with an A-ABORT.
#[test]
fn ae_titles_read_two_ways_and_commands_off_context_are_refused() {
    use std::io::Write;
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__MAX_ASSOCIATIONS_PER_PEER", "1")],
    );
    let mut odd = std::net::TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    odd.write_all(&association_rq(b"OSTEOSCREEN\xa0    "))
        .unwrap();
    assert_eq!(answer_type(&mut odd), 0x02, "A-ASSOCIATE-AC expected");
    let out = echoscu(daemon.port, "OSTEOSCREEN");
    assert!(
        !out.status.success(),
        "a second association: {}",
        text(&out)
    );
    assert!(text(&out).contains("Rejected Transient"), "{}", text(&out));
    drop(odd);
    wait_until("slot free", Duration::from_secs(20), || {
        echoscu(daemon.port, "OSTEOSCREEN").status.success()
    });

    assert_alive_and_small(&mut daemon);
    drop(daemon);

    // Default limits from here: each association below is refused and ends at once.
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(work.path(), &[]);
    for (pc, field) in [(99u8, 0x0030u16), (0, 0x8030)] {
        let mut a = RawAssociation::open(daemon.port, "HOSTILE", CT_IMAGE, EXPLICIT_LE)
            .expect("association accepted");
        let pc = if pc == 0 { a.pc_id() } else { pc };
        let mut command = osteoscreen::dicom::command::encode_echo_rq(1);
        if field != 0x0030 {
            // The same command set with its Command Field turned into a C-ECHO-RSP.
            let at = command
                .windows(4)
                .position(|w| w == [0x00, 0x00, 0x00, 0x01])
                .expect("Command Field element");
            command[at + 8..at + 10].copy_from_slice(&field.to_le_bytes());
        }
        let mut pdu = Vec::new();
        dicom_ul::write_pdu(
            &mut pdu,
            &Pdu::PData {
                data: vec![dicom_ul::pdu::PDataValue {
                    presentation_context_id: pc,
                    value_type: dicom_ul::pdu::PDataValueType::Command,
                    is_last: true,
                    data: command,
                }],
            },
        )
        .unwrap();
        a.send_raw(&pdu);
        let got = a.receive();
        assert!(
            matches!(got, Ok(Pdu::AbortRQ { .. }) | Err(_)),
            "{field:#06x} on {pc}: {got:?}"
        );
    }
    daemon.wait_for_log("which was not accepted", Duration::from_secs(20));
    daemon.wait_for_log("sent to us, the SCP", Duration::from_secs(20));
    assert_alive_and_small(&mut daemon);
}

#[test]
fn one_peer_cannot_take_every_slot_and_echoes_do_not_keep_one_forever() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(
        work.path(),
        &[
            ("OSTEOSCREEN__DICOM__MAX_ASSOCIATIONS_PER_PEER", "1"),
            ("OSTEOSCREEN__DICOM__IDLE_SECONDS", "3"),
            ("OSTEOSCREEN__DICOM__TIMEOUT_SECONDS", "60"),
        ],
    );
    let mut holder = RawAssociation::open(daemon.port, "HOLDER", CT_IMAGE, EXPLICIT_LE).unwrap();
    daemon.wait_for_log("calling_ae=HOLDER", Duration::from_secs(20));
    // The same address again: rejected at once (transient), not queued.
    let out = echoscu(daemon.port, "OSTEOSCREEN");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("Rejected Transient"), "{said}");
    assert!(daemon
        .logs()
        .contains("max_associations_per_peer (1) reached"));
    // Echoing every second does not keep the slot past idle_seconds: the echoes succeed
    // until the daemon ends the association for idleness (the count is only a guard).
    let mut echoes = 0;
    while !daemon.logs().contains("no C-STORE for idle_seconds (3 s)") {
        assert!(
            echoes < 30,
            "still open after {echoes} echoes:\n{}",
            daemon.logs()
        );
        assert_eq!(holder.echo(), Status::SUCCESS);
        echoes += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(echoes >= 2, "ended before echoes were tried ({echoes})");
    wait_until("slot free", Duration::from_secs(20), || {
        echoscu(daemon.port, "OSTEOSCREEN").status.success()
    });
    assert_alive_and_small(&mut daemon);
}

#[test]
fn a_trickling_store_ends_at_the_lifetime_limit_and_does_not_hold_shutdown() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(
        work.path(),
        &[
            ("OSTEOSCREEN__DICOM__MAX_ASSOCIATION_SECONDS", "4"),
            ("OSTEOSCREEN__DICOM__SHUTDOWN_GRACE_SECONDS", "2"),
        ],
    );
    let uid = "1.2.826.0.1.3680043.2.6";
    let trickle = |daemon: &Daemon, ae: &str| {
        let mut association = RawAssociation::open(daemon.port, ae, CT_IMAGE, EXPLICIT_LE).unwrap();
        association.send_store_rq(CT_IMAGE, uid);
        association.send_data(&header(CT_IMAGE, uid, None), false);
        association
    };
    // A peer that sends a byte now and then is cut off at max_association_seconds.
    // It keeps sending (never silent), so only the lifetime limit can end it; the count
    // of sends is only a guard against a hang.
    let mut slow = trickle(&daemon, "TRICKLE");
    let mut sends = 0;
    while !daemon.logs().contains("max_association_seconds (4 s)") {
        assert!(
            sends < 60,
            "still open after {sends} sends:\n{}",
            daemon.logs()
        );
        // The daemon may abort between the check and the send.
        let _ = slow.try_send_data(&[0, 0]);
        sends += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_until("partial file removed", Duration::from_secs(20), || {
        daemon.partial_files().is_empty()
    });
    // At shutdown, a trickling store gets shutdown_grace_seconds, then its association goes.
    let mut slow = trickle(&daemon, "TRICKLE2");
    slow.send_data(&[0, 0], false);
    daemon.sigterm();
    // The store never completes, so the daemon can only exit through the grace limit.
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", daemon.logs());
    assert!(daemon
        .logs()
        .contains("store unfinished after shutdown_grace_seconds"));
}

#[test]
fn a_second_daemon_on_the_same_storage_refuses_to_start() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(work.path(), &[]);
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .arg("serve")
        .env("OSTEOSCREEN__STORAGE__DIR", &daemon.storage)
        .env(
            "OSTEOSCREEN__DICOM__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env(
            "OSTEOSCREEN__HTTP__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        ));
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("is in use by another osteoscreen")
            && said.contains(&format!("pid {}", daemon.pid())),
        "{said}"
    );
    // The first one is untouched and still stores.
    assert_alive_and_small(&mut daemon);
}

#[test]
fn analyze_survives_hostile_headers_and_bombs() {
    let work = tempfile::tempdir().unwrap();
    let study = synth_study(&work.path().join("dx"), &DX_SMALL);
    // A PatientAge whose UTF-8 text is 4 bytes but not "nnnU" (a byte index would fall
    // inside 'é'), and a NaN window centre.
    for file in dicom_files(&study) {
        let out = run(Command::new("dcmodify")
            .args([
                "-nb",
                "-i",
                "(0008,0005)=ISO_IR 192",
                "-i",
                "(0010,1010)=12é",
                "-i",
                "(0028,1050)=NaN",
                "-i",
                "(0028,1051)=400",
            ])
            .arg(&file));
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = common::models::analyze(&study, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let finding: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(finding["xray"]["class"].is_string(), "{finding}");
    // The unreadable PatientAge is ignored: the age comes from the birth and study dates.
    let age = finding["risk"]["age_years"].as_f64().unwrap_or(0.0);
    assert!((age - 12.0).abs() > 1.0, "{}", finding["risk"]);
    // A file whose pixel data declares 4 GiB: refused with the reason, no allocation.
    let bomb = work.path().join("bomb.dcm");
    let mut bytes = vec![0u8; 128];
    bytes.extend_from_slice(b"DICM");
    let ts = element(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0");
    bytes.extend(element(
        0x0002,
        0x0000,
        b"UL",
        &(ts.len() as u32).to_le_bytes(),
    ));
    bytes.extend(ts);
    bytes.extend(header(CT_IMAGE, "1.2.826.0.1.3680043.2.7", None));
    bytes.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
    bytes.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    std::fs::write(&bomb, &bytes).unwrap();
    let out = run(Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kib=%M"])
        .arg(bin())
        .arg("--config")
        .arg(shipped_config())
        .args(["analyze", "--json"])
        .arg(&bomb));
    let said = text(&out);
    let rss: u64 = said
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .and_then(|v| v.trim().parse().ok())
        .expect("GNU time's report");
    assert!(
        rss / 1024 < MAX_PEAK_MIB,
        "analyze peaked at {} MiB",
        rss / 1024
    );
    assert!(!said.contains("panicked"), "{said}");

    // A CT slice placed at -1e300 mm: the series is refused naming it, not counted into
    // an overflow of missed vertebrae.
    let ct = synth_study(&work.path().join("ct"), &CT_3MM);
    let slice = dicom_files(&ct)[5].clone();
    let out = run(Command::new("dcmodify")
        .args(["-nb", "-m", "(0020,0032)=0\\0\\-1e300"])
        .arg(&slice));
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&common::models::analyze(&ct, &[]));
    assert!(!said.contains("panicked"), "{said}");
    assert!(said.contains("slice position -1e300 mm"), "{said}");
}
