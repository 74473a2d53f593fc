//! The `[http]` listener against curl: STOW-RS stores a study as C-STORE does (same rows,
//! same spooled bytes, same job), reports bad parts per instance and refuses bad requests
//! whole; /healthz, /readyz and /metrics tell an administrator what is going on.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::http::get;
use common::stow::*;
use common::*;
use osteoscreen::deliver::dimse::send_files;

const FAILURE_CANNOT_UNDERSTAND: u64 = 0xC000;
const FAILURE_MISMATCH: u64 = 0xA900;
const FAILURE_SOP_CLASS: u64 = 0x0122;
const FAILURE_OUT_OF_RESOURCES: u64 = 0xA700;

#[test]
fn stow_stores_a_study_as_c_store_does() {
    let work = tempfile::tempdir().unwrap();
    let study_dir = synth_study(&work.path().join("synth"), &DX_SMALL);
    let files = dicom_files(&study_dir);
    assert_eq!(files.len(), 2, "AP + lateral");
    let env = [("OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS", "1")];
    std::fs::create_dir_all(work.path().join("a")).unwrap();
    std::fs::create_dir_all(work.path().join("b")).unwrap();
    let by_stow = Daemon::start(&work.path().join("a"), &env);
    let by_dimse = Daemon::start(&work.path().join("b"), &env);

    let reply = stow(&by_stow, &files_body(&files));
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), by_stow.logs());
    assert_eq!(reply.header("content-type"), ["application/dicom+json"]);
    let sent: BTreeSet<String> = files.iter().map(|f| sop_instance_uid(f)).collect();
    assert_eq!(referenced(&reply), sent);
    assert!(failed(&reply).is_empty());
    // The crate's own SCU sends each data set as the file holds it (storescu re-encodes
    // sequence lengths), so the two spools can be compared byte for byte.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sent_by_dimse = rt.block_on(send_files(&by_dimse.peer("MODALITY"), &files));
    assert!(
        sent_by_dimse.iter().all(|o| o.stored()),
        "{sent_by_dimse:?}"
    );

    by_dimse.settled();
    let (a, b) = (by_stow.store(), by_dimse.store());
    let (rows_a, rows_b) = (a.instances().unwrap(), b.instances().unwrap());
    assert_eq!(rows_a.len(), 2);
    assert_eq!(rows_b.len(), 2);
    for (ra, rb) in rows_a.iter().zip(&rows_b) {
        assert_eq!(ra.sop_instance_uid, rb.sop_instance_uid);
        assert_eq!(
            (
                &ra.study_uid,
                &ra.series_uid,
                &ra.modality,
                &ra.sop_class_uid
            ),
            (
                &rb.study_uid,
                &rb.series_uid,
                &rb.modality,
                &rb.sop_class_uid
            )
        );
        assert_eq!(ra.transfer_syntax, rb.transfer_syntax);
        assert_eq!(ra.calling_ae, "STOW-RS");
        assert!(ra.path.starts_with(by_stow.storage.join("spool")));
        let original = files
            .iter()
            .find(|f| sop_instance_uid(f) == ra.sop_instance_uid)
            .unwrap();
        assert!(
            data_set_bytes(&ra.path) == data_set_bytes(original),
            "STOW-RS stores the data set byte for byte"
        );
        assert!(
            data_set_bytes(&ra.path) == data_set_bytes(&rb.path),
            "same spooled bytes as by C-STORE"
        );
    }
    assert!(tmp_is_empty(&by_stow));

    // Both become the same job once quiet.
    for (store, daemon) in [(&a, &by_stow), (&b, &by_dimse)] {
        wait_until("job", Duration::from_secs(20), || {
            !store.jobs().unwrap().is_empty()
        });
        let jobs = store.jobs().unwrap();
        assert_eq!(jobs.len(), 1, "{}", daemon.logs());
        assert_eq!(
            (jobs[0].study_uid.as_str(), jobs[0].instance_count),
            (rows_b[0].study_uid.as_str(), 2)
        );
    }

    // What was sent is what the metrics count, per sender.
    let extra = make_instances(
        &real("wg04/CT1_UNC.dcm"),
        &work.path().join("extra"),
        1,
        "1.2.826.0.1.3680043.9.7777.40",
        "1.2.826.0.1.3680043.9.7777.40.1",
        "1.2.826.0.1.3680043.9.7777.40.1",
    );
    let out = run(by_stow.storescu("MODALITY").arg(&extra[0].0));
    assert!(out.status.success(), "{}", text(&out));
    let stored = |ae: &str| {
        metric(
            &by_stow,
            &format!("osteoscreen_instances_total{{calling_ae=\"{ae}\",status=\"stored\"}}"),
        )
    };
    assert_eq!(stored("STOW-RS"), Some(2.0));
    assert_eq!(stored("MODALITY"), Some(1.0));
    assert!(metric(&by_stow, "osteoscreen_disk_free_bytes").unwrap() > 0.0);
    assert!(metric(&by_stow, "osteoscreen_queue_depth").is_some());
    assert!(metric(&by_stow, "osteoscreen_oldest_queued_age_seconds").is_some());
    // Fewer than 32 radiographs analysed: the site's look is not a number yet.
    assert!(metric(&by_stow, "osteoscreen_xray_feature_shift").is_some_and(f64::is_nan));
    let scrape = get(&by_stow.work, by_stow.http_port, "/metrics").text();
    let jobs: f64 = scrape
        .lines()
        .filter(|l| l.starts_with("osteoscreen_jobs{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        jobs, 1.0,
        "the job is counted once, in its state:\n{scrape}"
    );
}

/// A copy of `src` whose meta group names another SOP Instance UID than its data set.
fn with_meta_instance(src: &Path, out: &Path, uid: &str) -> Vec<u8> {
    let mut obj = dicom_object::open_file(src).unwrap();
    obj.update_meta(|m| m.media_storage_sop_instance_uid = uid.to_string());
    obj.write_to_file(out).unwrap();
    std::fs::read(out).unwrap()
}

#[test]
fn bad_parts_are_listed_as_failed_and_good_ones_stored() {
    let work = tempfile::tempdir().unwrap();
    let study_dir = synth_study(&work.path().join("synth"), &DX_SMALL);
    let files = dicom_files(&study_dir);
    let daemon = Daemon::start(work.path(), &[]);
    let good: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let mismatch = with_meta_instance(
        &real("pydicom/CT_small.dcm"),
        &work.path().join("mismatch.dcm"),
        "1.2.826.0.1.3680043.9.7777.41.1",
    );
    let j2k = std::fs::read(real("wg04/CT1_J2KR.dcm")).unwrap();
    let unc = std::fs::read(real("wg04/CT1_UNC.dcm")).unwrap();
    let parts = vec![
        good[0].clone(),
        b"this is not a DICOM file".to_vec(),
        std::fs::read(real("pydicom/MR_small.dcm")).unwrap(),
        mismatch,
        j2k[..j2k.len() - 8].to_vec(), // the pixel data's sequence delimiter cut off
        j2k[..j2k.len() - 200].to_vec(), // cut inside its last fragment
        unc[..unc.len() - 1000].to_vec(), // native pixel data cut short
        good[1].clone(),
    ];
    let reply = stow(&daemon, &multipart(&parts));
    assert_eq!(reply.status, 202, "{}\n{}", reply.text(), daemon.logs());
    let good_uids: BTreeSet<String> = files.iter().map(|f| sop_instance_uid(f)).collect();
    assert_eq!(referenced(&reply), good_uids);
    let reasons: Vec<u64> = failed(&reply).iter().map(|(_, r)| *r).collect();
    assert_eq!(
        reasons,
        [
            FAILURE_CANNOT_UNDERSTAND,
            FAILURE_SOP_CLASS,
            FAILURE_MISMATCH,
            FAILURE_CANNOT_UNDERSTAND,
            FAILURE_CANNOT_UNDERSTAND,
            FAILURE_CANNOT_UNDERSTAND
        ],
        "{}",
        reply.text()
    );
    assert_eq!(failed(&reply)[0].0, "", "garbage names no instance");
    assert_eq!(
        failed(&reply)[3].0,
        sop_instance_uid(&real("wg04/CT1_J2KR.dcm"))
    );
    let warnings = reply.header("warning");
    assert_eq!(warnings.len(), 6, "{warnings:?}");
    assert!(
        warnings.iter().any(|w| w.contains("truncated")),
        "{warnings:?}"
    );
    // The fragment cut short is found by the length pre-scan, without reading the fragment.
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("declares") && w.contains("remain")),
        "{warnings:?}"
    );

    let store = daemon.store();
    let rows: BTreeSet<String> = store
        .instances()
        .unwrap()
        .into_iter()
        .map(|r| r.sop_instance_uid)
        .collect();
    assert_eq!(rows, good_uids, "only the good parts are stored");
    assert!(tmp_is_empty(&daemon), "refused parts leave no temp file");

    // /studies/{study}: an instance of another study is refused for that instance.
    let study = store.instances().unwrap()[0].study_uid.clone();
    let other = std::fs::read(real("pydicom/CT_small.dcm")).unwrap();
    let path = format!("/dicomweb/studies/{study}");
    let reply = stow_to(
        &daemon,
        &path,
        &stow_type(),
        &multipart(&[good[0].clone(), other]),
        &[],
    );
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(referenced(&reply).len(), 1);
    assert_eq!(
        failed(&reply),
        [(
            sop_instance_uid(&real("pydicom/CT_small.dcm")),
            FAILURE_MISMATCH
        )]
    );
    assert_eq!(store.instances().unwrap().len(), 2);

    // Nothing stored: 409.
    let reply = stow(&daemon, &multipart(&[b"junk".to_vec()]));
    assert_eq!(reply.status, 409, "{}", reply.text());
    let refused = metric(
        &daemon,
        "osteoscreen_instances_total{calling_ae=\"STOW-RS\",status=\"refused\"}",
    );
    assert_eq!(refused, Some(8.0));
    assert!(tmp_is_empty(&daemon));
}

#[test]
fn malformed_or_unsupported_requests_store_nothing() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(work.path(), &[("OSTEOSCREEN__HTTP__MAX_BODY_MB", "1")]);
    let ct = std::fs::read(real("pydicom/CT_small.dcm")).unwrap();
    let good = multipart(std::slice::from_ref(&ct));
    let bare = "multipart/related; type=\"application/dicom\"";

    let reply = stow_to(&daemon, "/dicomweb/studies", bare, &good, &[]);
    assert_eq!(reply.status, 400, "no boundary: {}", reply.text());
    assert!(reply.text().contains("boundary"), "{}", reply.text());
    let reply = stow(&daemon, b"just some bytes, not multipart");
    assert_eq!(reply.status, 400, "not multipart: {}", reply.text());
    let mut cut = good.clone();
    cut.truncate(good.len() - BOUNDARY.len() - 8);
    let reply = stow(&daemon, &cut);
    assert_eq!(reply.status, 400, "no closing boundary: {}", reply.text());
    let reply = stow(&daemon, format!("--{BOUNDARY}--\r\n").as_bytes());
    assert_eq!(reply.status, 400, "no parts: {}", reply.text());
    let reply = stow_to(
        &daemon,
        "/dicomweb/studies/1.2.abc",
        &stow_type(),
        &good,
        &[],
    );
    assert_eq!(reply.status, 400, "study UID in the path: {}", reply.text());

    for wrong in [
        "application/dicom".to_string(),
        format!("multipart/related; type=\"application/dicom+json\"; boundary={BOUNDARY}"),
        format!("multipart/form-data; boundary={BOUNDARY}"),
    ] {
        let reply = stow_to(&daemon, "/dicomweb/studies", &wrong, &good, &[]);
        assert_eq!(reply.status, 415, "{wrong}: {}", reply.text());
    }

    // Over [http] max_body_mb (1 MiB): announced, or found while streaming.
    let big = multipart(&[ct.clone(), vec![0x55; 1 << 20]]);
    let reply = stow(&daemon, &big);
    assert_eq!(reply.status, 413, "{} {}", reply.text(), reply.curl);
    let reply = stow_to(
        &daemon,
        "/dicomweb/studies",
        &stow_type(),
        &big,
        &["Transfer-Encoding: chunked"],
    );
    assert_eq!(
        reply.status,
        413,
        "chunked: {} {}",
        reply.text(),
        reply.curl
    );

    let store = daemon.store();
    assert!(store.instances().unwrap().is_empty(), "nothing stored");
    assert!(tmp_is_empty(&daemon));
    let spool: Vec<_> = std::fs::read_dir(daemon.storage.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".tmp" && n != ".journal")
        .collect();
    assert!(spool.is_empty(), "{spool:?}");

    // Still serving.
    let reply = stow(&daemon, &good);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(store.instances().unwrap().len(), 1);
}

#[test]
fn a_stalled_upload_is_answered_408_and_stores_nothing() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(work.path(), &[("OSTEOSCREEN__HTTP__TIMEOUT_SECONDS", "1")]);
    let ct = std::fs::read(real("pydicom/CT_small.dcm")).unwrap();
    let body = multipart(&[ct.clone(), ct]);
    // The first part whole, the second half-sent, then silence.
    let mut socket = TcpStream::connect(("127.0.0.1", daemon.http_port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /dicomweb/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {}\r\n\
         Content-Length: {}\r\n\r\n",
        stow_type(),
        body.len()
    );
    socket.write_all(head.as_bytes()).unwrap();
    socket.write_all(&body[..body.len() - 20_000]).unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).expect("an answer before the guard");
        assert!(n > 0, "closed without an answer");
        response.extend_from_slice(&buf[..n]);
    }
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(daemon.store().instances().unwrap().is_empty());
    assert!(
        tmp_is_empty(&daemon),
        "the complete first part is removed too"
    );
}

#[test]
fn the_bearer_token_is_required_when_set() {
    let work = tempfile::tempdir().unwrap();
    let token = "s3cret-Token.42";
    let daemon = Daemon::start(work.path(), &[("OSTEOSCREEN__HTTP__BEARER_TOKEN", token)]);
    let body = multipart(&[std::fs::read(real("pydicom/CT_small.dcm")).unwrap()]);
    let path = "/dicomweb/studies";
    let reply = stow_to(&daemon, path, &stow_type(), &body, &[]);
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.header("www-authenticate").len(), 1);
    for wrong in [
        "Bearer s3cret-Token.4",
        "Bearer s3cret-Token.42x",
        "Basic czNjcmV0",
    ] {
        let auth = format!("Authorization: {wrong}");
        let reply = stow_to(&daemon, path, &stow_type(), &body, &[auth.as_str()]);
        assert_eq!(reply.status, 401, "{wrong}");
    }
    assert!(daemon.store().instances().unwrap().is_empty());
    let auth = format!("Authorization: Bearer {token}");
    let reply = stow_to(&daemon, path, &stow_type(), &body, &[auth.as_str()]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(daemon.store().instances().unwrap().len(), 1);
    // Operations endpoints stay open.
    assert_eq!(get(&daemon.work, daemon.http_port, "/healthz").status, 200);
    assert!(!daemon.logs().contains(token), "the token is never logged");
}

#[test]
fn readiness_follows_the_disk_watermark() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("ok")).unwrap();
    std::fs::create_dir_all(work.path().join("full")).unwrap();
    let ok = Daemon::start(&work.path().join("ok"), &[]);
    let full = Daemon::start(
        &work.path().join("full"),
        &[("OSTEOSCREEN__DICOM__MIN_FREE_DISK_MB", "1000000000")],
    );
    for daemon in [&ok, &full] {
        let reply = get(&daemon.work, daemon.http_port, "/healthz");
        assert_eq!((reply.status, reply.text().as_str()), (200, "ok\n"));
    }
    let reply = get(&ok.work, ok.http_port, "/readyz");
    assert_eq!((reply.status, reply.text().as_str()), (200, "ready\n"));
    let reply = get(&full.work, full.http_port, "/readyz");
    assert_eq!(reply.status, 503);
    assert!(reply.text().contains("disk space low"), "{}", reply.text());
    assert!(reply.text().contains("1000000000 MiB"), "{}", reply.text());

    // Below the watermark STOW-RS is answered as C-STORE is: out of resources.
    let body = multipart(&[std::fs::read(real("pydicom/CT_small.dcm")).unwrap()]);
    let reply = stow(&full, &body);
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert_eq!(failed(&reply)[0].1, FAILURE_OUT_OF_RESOURCES);
    assert!(full.store().instances().unwrap().is_empty());
}

#[test]
fn every_real_file_in_every_transfer_syntax_is_stored_byte_for_byte() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__ACCEPTED_MODALITIES", "CR,DX,CT,OT,NM")],
    );
    // Deflated copies aside: their spooled bytes are checked by the C-STORE test.
    let files = acceptable_files(work.path(), false);
    let reply = stow(&daemon, &files_body(&files));
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), daemon.logs());
    let rows = daemon.store().instances().unwrap();
    assert_eq!(rows.len(), files.len());
    for f in &files {
        let uid = sop_instance_uid(f);
        let row = rows
            .iter()
            .find(|r| r.sop_instance_uid == uid)
            .unwrap_or_else(|| panic!("{} not stored", f.display()));
        let meta = dicom_object::open_file(f).unwrap();
        assert_eq!(
            row.transfer_syntax,
            meta.meta().transfer_syntax(),
            "{}",
            f.display()
        );
        assert!(
            data_set_bytes(&row.path) == data_set_bytes(f),
            "{} stored byte for byte",
            f.display()
        );
    }
}

/// Peak resident memory of a process, KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_large_upload_streams_through_bounded_memory() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(work.path(), &[]);
    let study = "1.2.826.0.1.3680043.9.7777.43";
    let made = make_instances(
        &real("wg04/CT1_UNC.dcm"),
        &work.path().join("many"),
        240,
        study,
        &format!("{study}.1"),
        &format!("{study}.1"),
    );
    let files: Vec<PathBuf> = made.iter().map(|(p, _)| p.clone()).collect();
    let body = files_body(&files);
    assert!(body.len() > 120 << 20, "{} bytes", body.len());
    // Warm up (first request, thread pools, SQLite caches) before measuring.
    let reply = stow(&daemon, &files_body(&files[..2]));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let before = peak_rss_kib(daemon.pid());
    let reply = stow(&daemon, &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(referenced(&reply).len(), files.len());
    let grown = peak_rss_kib(daemon.pid()).saturating_sub(before);
    assert!(
        grown < 40 << 10,
        "peak memory grew by {grown} KiB for a {} MiB body",
        body.len() >> 20
    );
    assert_eq!(daemon.store().instances().unwrap().len(), files.len());
}

#[test]
fn orthanc_pushes_a_study_by_stow_rs() {
    let work = tempfile::tempdir().unwrap();
    let study_dir = synth_study(&work.path().join("synth"), &DX_SMALL);
    let token = "orthanc-token-7";
    std::fs::create_dir_all(work.path().join("osteoscreen")).unwrap();
    let daemon = Daemon::start(
        &work.path().join("osteoscreen"),
        &[
            ("OSTEOSCREEN__HTTP__BEARER_TOKEN", token),
            ("OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS", "1"),
        ],
    );
    let pacs = common::orthanc::Orthanc::start_with(
        work.path(),
        common::orthanc::OrthancOptions {
            dicomweb: true,
            ..Default::default()
        },
    );
    let study = pacs.upload_study(&study_dir);
    let url = common::http::url(daemon.http_port, "/dicomweb/");
    let bearer = format!("Bearer {token}");
    pacs.add_dicomweb_server("wrong", &url, &[("Authorization", "Bearer nope")]);
    assert!(
        !pacs.stow_study("wrong", &study),
        "a wrong token is refused"
    );
    assert!(daemon.store().instances().unwrap().is_empty());

    pacs.add_dicomweb_server("osteoscreen", &url, &[("Authorization", &bearer)]);
    assert!(pacs.stow_study("osteoscreen", &study), "{}", daemon.logs());
    let rows = daemon.store().instances().unwrap();
    let sent: BTreeSet<String> = dicom_files(&study_dir)
        .iter()
        .map(|f| sop_instance_uid(f))
        .collect();
    let stored: BTreeSet<String> = rows.iter().map(|r| r.sop_instance_uid.clone()).collect();
    assert_eq!(stored, sent);
    assert!(rows.iter().all(|r| r.calling_ae == "STOW-RS"));
    let store = daemon.store();
    wait_until("job", Duration::from_secs(20), || {
        !store.jobs().unwrap().is_empty()
    });
    assert_eq!(store.jobs().unwrap()[0].instance_count, 2);
}

#[test]
fn a_taken_http_port_stops_start_up_naming_it() {
    let work = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .arg("serve")
        .env(
            "OSTEOSCREEN__DICOM__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("OSTEOSCREEN__HTTP__LISTEN", &addr)
        .env("OSTEOSCREEN__STORAGE__DIR", work.path().join("var"))
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_until("the daemon to give up", Duration::from_secs(30), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.unwrap().success());
    assert!(
        stderr.contains(&addr) && stderr.contains("[http] listen"),
        "{stderr}"
    );
}
