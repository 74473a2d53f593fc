//! The service benchmark: synthetic DX studies (AP + lateral) and CTs routed by Orthanc to
//! osteoscreen, analysed, and their SR stored back in Orthanc, with 1 and with 8
//! concurrent sending associations. Prints, per run: latency from a study's last
//! instance received to its SR stored in Orthanc (median, p95; the stable window is
//! reported apart), throughput at saturation (studies/hour), C-ECHO latency while the
//! daemon works, the daemon's peak RSS; and beside it, measured in the same run, the
//! time Orthanc alone takes to route the same studies to DCMTK storescp (the floor).
//! Asserts nothing.
//!
//! Run: `scripts/bench-service.sh` (= `cargo bench --bench round_trip`; DX=16 CT=4 set
//! the study counts).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::orthanc::Orthanc;
use common::{dicom_files, free_port, shipped_config, untrained_model, wait_until, Daemon};

/// Seconds a study must be quiet before it is queued (reported apart from latency).
const STABLE_SECONDS: u64 = 1;
/// The daemon's log level (debug shows each delivery round).
const LOG_LEVEL: &str = "debug";

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn synth(out: &Path, modality: &str, n: usize, seed: &str, extra: &[&str]) -> Vec<PathBuf> {
    let status = Command::new(common::bin())
        .args(["synth", "--modality", modality, "--seed", seed, "--studies"])
        .arg(n.to_string())
        .arg("--out")
        .arg(out)
        .args(extra)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    (0..n).map(|k| out.join(format!("study{k:05}"))).collect()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Send every study from Orthanc to `modality` over `senders` concurrent associations;
/// returns the seconds each send took and the wall time.
fn route(o: &Orthanc, modality: &str, studies: &[String], senders: usize) -> (Vec<f64>, f64) {
    let queue = Arc::new(Mutex::new(studies.to_vec()));
    let times = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..senders {
            let (queue, times) = (queue.clone(), times.clone());
            s.spawn(move || loop {
                let Some(study) = queue.lock().unwrap().pop() else {
                    return;
                };
                let t0 = Instant::now();
                o.send_study(modality, &study);
                times.lock().unwrap().push(t0.elapsed().as_secs_f64());
            });
        }
    });
    let wall = started.elapsed().as_secs_f64();
    let times = times.lock().unwrap().clone();
    (times, wall)
}

/// DICOM StudyInstanceUID of each Orthanc study ID.
fn study_uids(o: &Orthanc, ids: &[String]) -> HashMap<String, String> {
    ids.iter()
        .map(|id| {
            let uid = o.get(&format!("/studies/{id}"))["MainDicomTags"]["StudyInstanceUID"]
                .as_str()
                .unwrap()
                .to_string();
            (uid, id.clone())
        })
        .collect()
}

fn study_uid_of(file: &Path) -> String {
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
        .open_file(file)
        .unwrap();
    osteoscreen::dicom::text(&obj, dicom_dictionary_std::tags::STUDY_INSTANCE_UID)
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// C-ECHO round trips (ms, association included, by osteoscreen's own SCU in this
/// process) every 200 ms until `stop` is set, or `at_most` of them.
fn echo_while(port: u16, stop: &std::sync::atomic::AtomicBool, at_most: usize) -> Vec<f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peer = osteoscreen::deliver::dimse::Peer {
        tls: None,
        host: "127.0.0.1".into(),
        port,
        called_ae: "OSTEOSCREEN".into(),
        calling_ae: "BENCHECHO".into(),
        max_pdu_length: 65536,
        timeout: Duration::from_secs(30),
    };
    let mut out = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) && out.len() < at_most {
        let t0 = Instant::now();
        if rt
            .block_on(osteoscreen::deliver::dimse::echo(&peer))
            .is_ok_and(|s| s.is_success())
        {
            out.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    out
}

struct RunResult {
    /// (is CT, seconds) per study.
    latency_s: Vec<(bool, f64)>,
    wall_s: f64,
    echo_ms: Vec<f64>,
    idle_echo_ms: Vec<f64>,
    rss_mb: f64,
    /// Per study, seconds: last instance -> queued, analysis, reports, the rest of
    /// queued -> delivered (waiting for a worker, delivery), delivered -> seen.
    stages: Vec<[f64; 5]>,
}

/// One run: a fresh daemon and Orthanc, every study routed over `senders` associations,
/// wait for every SR in Orthanc.
fn run_service(work: &Path, studies: &[PathBuf], cts: &[String], senders: usize) -> RunResult {
    std::fs::create_dir_all(work).unwrap();
    let orthanc = Orthanc::start(work);
    let model = untrained_model(work);
    let config = work.join("osteoscreen.toml");
    let text = std::fs::read_to_string(shipped_config()).unwrap()
        + &format!(
            "\n[[destinations]]\nname = \"pacs\"\nkind = \"dimse\"\nae_title = \"ORTHANC\"\nhost = \"127.0.0.1\"\nport = {}\n",
            orthanc.dicom_port
        );
    std::fs::write(&config, text).unwrap();
    let d = Daemon::start_with_config(
        work,
        &config,
        &[
            ("OSTEOSCREEN__PIPELINE__PAUSED", "false"),
            ("OSTEOSCREEN__LOG__LEVEL", LOG_LEVEL),
            (
                "OSTEOSCREEN__DICOM__STUDY_STABLE_SECONDS",
                &STABLE_SECONDS.to_string(),
            ),
            ("OSTEOSCREEN__MODEL__WEIGHTS", model.to_str().unwrap()),
        ],
    );
    orthanc.add_modality("OSTEO", "OSTEOSCREEN", d.port);
    let ids: Vec<String> = studies.iter().map(|s| orthanc.upload_study(s)).collect();
    let uids = study_uids(&orthanc, &ids);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let idle_echo_ms = echo_while(d.port, &stop, 10);
    let sr_seen: Mutex<HashMap<String, f64>> = Mutex::new(HashMap::new());
    let now_ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as f64
    };
    let mut echo_ms = Vec::new();
    let mut wall_s = 0.0;
    std::thread::scope(|s| {
        let echo = s.spawn(|| echo_while(d.port, &stop, usize::MAX));
        let watcher = s.spawn(|| {
            while sr_seen.lock().unwrap().len() < ids.len() {
                for (uid, id) in &uids {
                    if sr_seen.lock().unwrap().contains_key(uid) {
                        continue;
                    }
                    let has_sr = orthanc
                        .get(&format!("/studies/{id}/series"))
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x["MainDicomTags"]["Modality"] == "SR");
                    if has_sr {
                        sr_seen
                            .lock()
                            .unwrap()
                            .insert(uid.clone(), now_ms(std::time::SystemTime::now()));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        if senders == 0 {
            // Paced: one study at a time, the next once the previous one's SR is back.
            for (uid, id) in &uids {
                orthanc.send_study("OSTEO", id);
                while !sr_seen.lock().unwrap().contains_key(uid) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        } else {
            route(&orthanc, "OSTEO", &ids, senders);
        }
        watcher.join().unwrap();
        wall_s = started.elapsed().as_secs_f64();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        echo_ms = echo.join().unwrap();
    });
    // Last instance received, per study, from the daemon's own record.
    let store = d.store();
    let mut last: HashMap<String, i64> = HashMap::new();
    for i in store.instances().unwrap() {
        let e = last.entry(i.study_uid).or_insert(0);
        *e = (*e).max(i.received_at_ms);
    }
    let seen = sr_seen.lock().unwrap();
    let latency_s = seen
        .iter()
        .filter_map(|(uid, at)| {
            last.get(uid)
                .map(|l| (cts.contains(uid), (at - *l as f64) / 1e3))
        })
        .collect();
    let stages = store
        .jobs()
        .unwrap()
        .iter()
        .filter_map(|j| {
            let last = *last.get(&j.study_uid)? as f64;
            let seen_at = *seen.get(&j.study_uid)?;
            let summary = osteoscreen::pipeline::summary::JobSummary::parse(j.finding.as_deref());
            let analysis = summary.timings.get("total").copied().unwrap_or(0.0) / 1e3;
            let report = summary.timings.get("report").copied().unwrap_or(0.0) / 1e3;
            Some([
                (j.created_ms as f64 - last) / 1e3,
                analysis,
                report,
                (j.updated_ms - j.created_ms) as f64 / 1e3 - analysis - report,
                (seen_at - j.updated_ms as f64) / 1e3,
            ])
        })
        .collect();
    RunResult {
        latency_s,
        wall_s,
        echo_ms,
        idle_echo_ms,
        rss_mb: peak_rss_mb(d.pid()),
        stages,
    }
}

/// The floor: Orthanc routing the same studies to DCMTK storescp.
fn run_floor(work: &Path, studies: &[PathBuf], senders: usize) -> (Vec<f64>, f64) {
    std::fs::create_dir_all(work.join("scp")).unwrap();
    let orthanc = Orthanc::start(work);
    let port = free_port();
    // DCMTK leaves Nagle on unless TCP_NODELAY=1 (REFERENCES.md): without it every
    // response waits ~40 ms and the floor would be no floor.
    let mut scp = Command::new("storescp")
        .env("TCP_NODELAY", "1")
        .args(["--fork", "-od"])
        .arg(work.join("scp"))
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("storescp", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    orthanc.add_modality("SCP", "STORESCP", port);
    let ids: Vec<String> = studies.iter().map(|s| orthanc.upload_study(s)).collect();
    let out = route(&orthanc, "SCP", &ids, senders);
    let _ = Command::new("kill").arg(scp.id().to_string()).status();
    let _ = scp.wait();
    out
}

fn main() {
    let (n_dx, n_ct) = (count("DX", 16), count("CT", 4));
    let temp = tempfile::tempdir().unwrap();
    // BENCH_WORK=DIR keeps the studies and the daemons' logs there (for a closer look).
    let work_dir = std::env::var_os("BENCH_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let work = work_dir.as_path();
    let mut studies = synth(&work.join("dx"), "dx", n_dx, "11", &[]);
    studies.extend(synth(
        &work.join("ct"),
        "ct",
        n_ct,
        "12",
        &["--ct-slice-mm", "3"],
    ));
    let files: usize = studies.iter().map(|s| dicom_files(s).len()).sum();
    let ct_uids: Vec<String> = studies[n_dx..]
        .iter()
        .map(|s| study_uid_of(&dicom_files(s)[0]))
        .collect();
    println!(
        "service benchmark: {n_dx} DX studies (AP + lateral, 2048x2560) + {n_ct} CT (3 mm), {files} instances; stable window {STABLE_SECONDS} s"
    );
    // 0: paced, one study at a time (latency without queueing); then 1 and 8 concurrent
    // sending associations, everything at once (saturation).
    for senders in [0usize, 1, 8] {
        let r = run_service(
            &work.join(format!("svc{senders}")),
            &studies,
            &ct_uids,
            senders,
        );
        let mut echo = r.echo_ms.clone();
        if senders == 0 {
            println!("\npaced, one study at a time (each sent once the previous SR is back):");
        } else {
            println!("\n{senders} sending association(s), all studies at once:");
        }
        for (name, ct) in [("DX", false), ("CT", true)] {
            let mut lat: Vec<f64> = r
                .latency_s
                .iter()
                .filter(|(is_ct, _)| *is_ct == ct)
                .map(|(_, l)| *l)
                .collect();
            let n = lat.len();
            let mut beyond: Vec<f64> = lat.iter().map(|l| l - STABLE_SECONDS as f64).collect();
            println!(
                "  osteoscreen {name}: last instance received -> SR stored in Orthanc: median {:.2} s, p95 {:.2} s ({n} studies); beyond the stable window: median {:.2} s, p95 {:.2} s",
                percentile(&mut lat, 0.5),
                percentile(&mut lat, 0.95),
                percentile(&mut beyond, 0.5),
                percentile(&mut beyond, 0.95),
            );
        }
        let column = |k: usize| {
            let mut v: Vec<f64> = r.stages.iter().map(|s| s[k]).collect();
            percentile(&mut v, 0.5)
        };
        println!(
            "  where the time goes (medians, s): last instance -> queued {:.2} (stable window + assembler tick), analysis {:.2}, SR + SC written {:.2}, waiting for a worker + delivery {:.2}, delivered -> seen by the poller {:.2}",
            column(0),
            column(1),
            column(2),
            column(3),
            column(4)
        );
        println!(
            "  osteoscreen: all {} studies routed, analysed and returned in {:.1} s = {:.0} studies/hour; peak RSS {:.0} MB",
            studies.len(),
            r.wall_s,
            studies.len() as f64 * 3600.0 / r.wall_s,
            r.rss_mb
        );
        println!(
            "  C-ECHO (association + echo + release) while it worked: median {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} echoes); idle, same daemon: median {:.1} ms",
            percentile(&mut echo, 0.5),
            percentile(&mut echo, 0.95),
            echo.last().copied().unwrap_or(f64::NAN),
            echo.len(),
            percentile(&mut r.idle_echo_ms.clone(), 0.5)
        );
        if senders == 0 {
            // Paced has no floor of its own: it waits on osteoscreen by construction.
            continue;
        }
        let (mut floor, floor_wall) =
            run_floor(&work.join(format!("floor{senders}")), &studies, senders);
        println!(
            "  floor, Orthanc -> DCMTK storescp, same studies: {:.1} s = {:.0} studies/hour; per-study send median {:.2} s",
            floor_wall,
            studies.len() as f64 * 3600.0 / floor_wall,
            percentile(&mut floor, 0.5)
        );
        println!(
            "  ratio osteoscreen round trip / Orthanc->storescp routing wall time: {:.2}x",
            r.wall_s / floor_wall
        );
    }
}
