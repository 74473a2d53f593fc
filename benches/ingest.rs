//! Ingest benchmark: DCMTK storescu sends the same set to DCMTK storescp (no fsync), to
//! `osteoscreen serve` with the journal off (each instance fsynced in its spool file,
//! directory fsynced and row committed before it is acknowledged) and to `osteoscreen
//! serve` as shipped (the ingest journal, `journal_segment_mb = 256`: flushed in its
//! segment before the answer, the mover then filing it), rotating which goes first, several rounds, with 1, 4 and 8
//! parallel senders. The time is until the last acknowledgement; the journal's lag past
//! it is printed beside, and the instances are counted once it has settled. Two sets: 300 CT slices 512x512 + 10 DX 2500x3000 (mixed), and 10 DX
//! radiographs of 3000x3400 (~20 MB each) on their own. Every osteoscreen round starts a
//! fresh daemon on fresh storage (a re-sent UID takes another path), and each round counts
//! what the receiver actually stored: a round that lost an instance prints no ratio.
//! Prints medians and the ratio; asserts nothing else.
//!
//! Run: `cargo bench --bench ingest` (needs dcmtk; `ROUNDS=5` to change the round count).

#[path = "common/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use report::median;

const CT_SLICES: usize = 300;
const DX_IMAGES: usize = 10;

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let work = tempfile::tempdir().expect("temp dir");
    // BENCH_INPUT=DIR keeps the generated sets there (for profiling by hand).
    let input = std::env::var_os("BENCH_INPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| work.path().join("input"));
    let mixed = make_input_set(&input.join("mixed"));
    let large = make_large_set(&input.join("large"));
    for (name, files) in [
        (
            format!("{CT_SLICES} CT 512x512 + {DX_IMAGES} DX 2500x3000"),
            &mixed,
        ),
        (format!("{DX_IMAGES} DX 3000x3400 on their own"), &large),
    ] {
        run_set(work.path(), &name, files, rounds);
    }
    println!("\nosteoscreen makes every instance durable (fsync, or journal flush) before acknowledging it; storescp does not.");
}

/// One set: the disk floor, then each sender count against both servers.
fn run_set(work: &Path, name: &str, files: &[PathBuf], rounds: usize) {
    let bytes: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    println!(
        "\n== ingest benchmark: {} instances ({name}), {:.1} MB, {rounds} rounds",
        files.len(),
        bytes as f64 / 1e6
    );
    // What durability alone costs on this disk: each instance written to its own new file
    // and fdatasynced, one after the other, no network (median of 3). A single sender
    // cannot be acknowledged faster than this plus the transfer itself.
    let sizes: Vec<u64> = files.iter().map(|f| f.metadata().unwrap().len()).collect();
    let disk: Vec<f64> = (0..3)
        .map(|_| durable_write_seconds(work, &sizes))
        .collect();
    let disk_s = median(&disk);
    println!(
        "disk alone: each instance written as a new file + fdatasync, in sequence: {disk_s:.3} s median ({:.1} MB/s)",
        bytes as f64 / 1e6 / disk_s
    );

    let storescp_out = work.join("storescp");
    let storescp = Server::storescp(&storescp_out);
    for senders in [1usize, 4, 8] {
        // An untimed first run makes the journal's segments (the first start of a daemon).
        let journal_cache = work.join(format!("journal-{senders}"));
        {
            let dir = work.join(format!("osteoscreen-{senders}-warm-up"));
            let osteo = Server::osteoscreen(&dir, senders, true);
            send_all(&osteo, files, senders);
            osteo.stop();
            keep_journal(&dir, &journal_cache);
            let _ = std::fs::remove_dir_all(&dir);
        }
        let names = ["dcmtk storescp", "osteo, no jrnl", "osteoscreen"];
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        let mut lost = [0usize; 3];
        let mut settled = Vec::new();
        for round in 0..rounds {
            // Rotate which server goes first, so drift on a shared machine hits all.
            for k in 0..3 {
                let which = (round + k) % 3;
                let (seconds, stored) = if which == 0 {
                    let _ = std::fs::remove_dir_all(&storescp_out);
                    std::fs::create_dir_all(&storescp_out).unwrap();
                    let t = send_all(&storescp, files, senders);
                    (t, count_files(&storescp_out))
                } else {
                    // A fresh daemon on fresh storage every round; its start is not timed.
                    // Its journal segments are those the previous daemon left (as at any
                    // restart): a daemon zero-fills segments only the first time it runs.
                    let journal = which == 2;
                    let dir = work.join(format!("osteoscreen-{senders}-{round}-{which}"));
                    if journal {
                        adopt_journal(&journal_cache, &dir);
                    }
                    let osteo = Server::osteoscreen(&dir, senders, journal);
                    let t = send_all(&osteo, files, senders);
                    let acked = Instant::now();
                    let spool = dir.join("spool");
                    while count_files(&spool) < files.len()
                        && acked.elapsed() < Duration::from_secs(120)
                    {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    if journal {
                        settled.push(acked.elapsed().as_secs_f64());
                    }
                    let stored = count_files(&spool);
                    osteo.stop();
                    if journal {
                        keep_journal(&dir, &journal_cache);
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                    (t, stored)
                };
                times[which].push(seconds);
                lost[which] += files.len().saturating_sub(stored);
            }
        }
        println!("\n{senders} parallel sender(s):");
        println!(
            "  {:<16} {:>10} {:>12} {:>10}   per-round seconds",
            "server", "median s", "instances/s", "MB/s"
        );
        let mut medians = [0.0; 3];
        for which in 0..3 {
            let m = median(&times[which]);
            medians[which] = m;
            println!(
                "  {:<16} {:>10.3} {:>12.1} {:>10.1}   {:?}",
                names[which],
                m,
                files.len() as f64 / m,
                bytes as f64 / 1e6 / m,
                times[which]
                    .iter()
                    .map(|t| (t * 1000.0).round() / 1000.0)
                    .collect::<Vec<_>>()
            );
        }
        println!(
            "  with the journal, the spool tree and database are complete {:.3} s (median) after the last acknowledgement",
            median(&settled)
        );
        if lost.iter().any(|&n| n > 0) {
            println!(
                "  NO RATIO: instances missing after the rounds: storescp {}, journal off {}, osteoscreen (journal) {}",
                lost[0], lost[1], lost[2]
            );
        } else {
            println!(
                "  every instance stored by all in every round; throughput ratio to storescp: osteoscreen as shipped (journal) {:.2}x, journal off {:.2}x (>1 means faster than storescp)",
                medians[0] / medians[2],
                medians[0] / medians[1]
            );
        }
    }
}

/// Regular files under `dir`, recursively (storescp's output, osteoscreen's spool; the
/// spool's `.tmp` holds only partial files, never counted).
fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                if e.file_name().to_string_lossy().starts_with('.') {
                    0
                } else {
                    count_files(&path)
                }
            } else {
                1
            }
        })
        .sum()
}

/// Move the journal of `dir` (a stopped daemon's storage) to `cache`.
fn keep_journal(dir: &Path, cache: &Path) {
    let _ = std::fs::remove_dir_all(cache);
    let _ = std::fs::rename(dir.join("spool/.journal"), cache);
}

/// Give the fresh storage `dir` the journal kept in `cache`.
fn adopt_journal(cache: &Path, dir: &Path) {
    std::fs::create_dir_all(dir.join("spool")).unwrap();
    let _ = std::fs::rename(cache, dir.join("spool/.journal"));
}

/// A running server and how to reach it.
struct Server {
    child: Child,
    port: u16,
    ae: &'static str,
    /// The server's own log (warnings and errors), shown when a send fails.
    log: Option<PathBuf>,
}

impl Server {
    /// SIGTERM, and wait for a clean exit (the journal's last records filed and let go).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // let the probe connection's association attempt end before measuring
    std::thread::sleep(Duration::from_millis(300));
}

impl Server {
    fn storescp(out: &Path) -> Server {
        std::fs::create_dir_all(out).unwrap();
        let port = free_port();
        let child = Command::new("storescp")
            // one process per association, so parallel senders are served in parallel
            .args([
                "--fork",
                "+xa",
                "--max-pdu",
                "65536",
                "-aet",
                "STORESCP",
                "-od",
            ])
            .arg(out)
            .arg(port.to_string())
            .env("TCP_NODELAY", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("storescp (install dcmtk)");
        wait_listening(port);
        Server {
            child,
            port,
            ae: "STORESCP",
            log: None,
        }
    }

    /// A fresh daemon, with the journal or without; with it, a segment is ready for each
    /// sender, as an administrator sets `journal_spare_segments` for the peers they
    /// expect. The start (and any zero-filling of segments) is not timed.
    fn osteoscreen(dir: &Path, senders: usize, journal: bool) -> Server {
        let port = free_port();
        let log = dir.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_osteoscreen"))
            .arg("--config")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/osteoscreen.toml"))
            .arg("serve")
            .env("OSTEOSCREEN__DICOM__LISTEN", format!("127.0.0.1:{port}"))
            // Any free port: the benchmark does not use HTTP, and 8080 may be taken.
            .env("OSTEOSCREEN__HTTP__LISTEN", "127.0.0.1:0")
            .env("OSTEOSCREEN__STORAGE__DIR", dir)
            .env("OSTEOSCREEN__LOG__LEVEL", "warn")
            .env("OSTEOSCREEN__DICOM__MAX_PDU_LENGTH", "65536")
            .env(
                "OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB",
                // The shipped segment size (config/osteoscreen.toml), or the journal off.
                if journal { "256" } else { "0" },
            )
            .env(
                "OSTEOSCREEN__DICOM__JOURNAL_SPARE_SEGMENTS",
                (senders + 1).to_string(),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("daemon log"))
            .spawn()
            .expect("osteoscreen");
        wait_listening(port);
        let segments = dir.join("spool/.journal");
        let start = Instant::now();
        while journal
            && std::fs::read_dir(&segments).map_or(0, |d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
                    .count()
            }) < senders + 1
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "journal not ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            port,
            ae: "OSTEOSCREEN",
            log: Some(log),
        }
    }
}

/// Send every file with `senders` parallel storescu processes; wall-clock seconds.
fn send_all(server: &Server, files: &[PathBuf], senders: usize) -> f64 {
    let start = Instant::now();
    let chunks: Vec<&[PathBuf]> = files.chunks(files.len().div_ceil(senders)).collect();
    let children: Vec<Child> = chunks
        .iter()
        .map(|chunk| {
            Command::new("storescu")
                // -v: what storescu did, shown only if it fails.
                .args(["-v", "-aec", server.ae, "127.0.0.1"])
                .arg(server.port.to_string())
                .args(chunk.iter())
                .env("TCP_NODELAY", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("storescu (install dcmtk)")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "storescu to {} failed ({}): {}{}\n{} log:\n{}",
            server.ae,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            server.ae,
            server
                .log
                .as_ref()
                .and_then(|l| std::fs::read_to_string(l).ok())
                .unwrap_or_default()
        );
    }
    start.elapsed().as_secs_f64()
}

/// Seconds to write one new file per size (zeros) and fdatasync each, in sequence.
fn durable_write_seconds(dir: &Path, sizes: &[u64]) -> f64 {
    use std::io::Write;
    let probe = dir.join("disk-probe");
    std::fs::create_dir_all(&probe).unwrap();
    let largest = sizes.iter().copied().max().unwrap_or(0) as usize;
    let buf = vec![0x5Au8; largest];
    let start = Instant::now();
    for (i, &size) in sizes.iter().enumerate() {
        let mut f = std::fs::File::create(probe.join(i.to_string())).unwrap();
        f.write_all(&buf[..size as usize]).unwrap();
        f.sync_data().unwrap();
    }
    let t = start.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&probe).unwrap();
    t
}

/// 300 copies of the WG04 CT slice (new UIDs) and 10 generated 2500x3000 DX images.
fn make_input_set(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let ct_src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/real/wg04/CT1_UNC.dcm");
    let mut ct = dicom_object::open_file(&ct_src).expect("WG04 CT1_UNC test file");
    let study = "1.2.826.0.1.3680043.9.7777.90";
    put_uid(&mut ct, tags::STUDY_INSTANCE_UID, study);
    put_uid(&mut ct, tags::SERIES_INSTANCE_UID, &format!("{study}.1"));
    let mut files = Vec::new();
    for i in 1..=CT_SLICES {
        let uid = format!("{study}.1.{i}");
        put_uid(&mut ct, tags::SOP_INSTANCE_UID, &uid);
        ct.update_meta(|m| m.media_storage_sop_instance_uid = uid.clone());
        let path = dir.join(format!("ct{i:04}.dcm"));
        ct.write_to_file(&path).unwrap();
        files.push(path);
    }
    for i in 1..=DX_IMAGES {
        let path = dir.join(format!("dx{i:02}.dcm"));
        write_dx(&path, study, i, (3000, 2500));
        files.push(path);
    }
    files
}

/// 10 DX radiographs of 3400 rows x 3000 columns (~20 MB each), their own study.
fn make_large_set(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let study = "1.2.826.0.1.3680043.9.7777.91";
    (1..=DX_IMAGES)
        .map(|i| {
            let path = dir.join(format!("dx{i:02}.dcm"));
            write_dx(&path, study, i, (3400, 3000));
            path
        })
        .collect()
}

fn put_uid(obj: &mut InMemDicomObject, tag: dicom_core::Tag, uid: &str) {
    obj.put(DataElement::new(tag, VR::UI, PrimitiveValue::from(uid)));
}

/// A DX For Presentation image, `rows` x `cols`, 16 bits allocated, 12 stored,
/// with a smooth gradient plus pseudo-random noise (so it is not trivially compressible).
fn write_dx(path: &Path, study: &str, i: usize, (rows, cols): (u16, u16)) {
    let sop = format!("{study}.2.{i}");
    let mut obj = InMemDicomObject::new_empty();
    let s = |obj: &mut InMemDicomObject, tag, vr, v: &str| {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    };
    s(
        &mut obj,
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    );
    s(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, &sop);
    s(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, study);
    s(
        &mut obj,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &format!("{study}.2"),
    );
    s(&mut obj, tags::MODALITY, VR::CS, "DX");
    s(&mut obj, tags::PATIENT_NAME, VR::PN, "BENCH^DX");
    s(&mut obj, tags::PATIENT_ID, VR::LO, "BENCH");
    s(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    for (tag, v) in [
        (tags::SAMPLES_PER_PIXEL, 1u16),
        (tags::ROWS, rows),
        (tags::COLUMNS, cols),
        (tags::BITS_ALLOCATED, 16),
        (tags::BITS_STORED, 12),
        (tags::HIGH_BIT, 11),
        (tags::PIXEL_REPRESENTATION, 0),
    ] {
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
    }
    let mut state = 0x9E37_79B9u32 ^ i as u32;
    let pixels: Vec<u16> = (0..rows as usize * cols as usize)
        .map(|n| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let (y, x) = (n / cols as usize, n % cols as usize);
            ((x + y) as u32 / 3 % 3000 + (state & 0x3FF)) as u16 & 0x0FFF
        })
        .collect();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION)
                .media_storage_sop_instance_uid(sop.as_str()),
        )
        .unwrap();
    file.write_to_file(path).unwrap();
}
