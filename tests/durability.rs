//! The acknowledgement order, as the kernel sees it. A kill -9 test cannot tell whether
//! an fsync is missing (the page cache survives a process crash), so these tests watch
//! the daemon's system calls with strace during one C-STORE. Through the journal (the
//! default): the data set and then its record header are written to the segment, and its
//! fdatasync completes, before the C-STORE-RSP goes out on the socket; the mover then
//! renames a copy into the spool tree and commits its row. Without the journal: the data
//! file's fdatasync, its rename into place, the fsync of its directory and the database
//! commit all complete before the response.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// One strace line: thread id and the rest.
struct Line {
    tid: String,
    text: String,
}

fn parse(trace: &str) -> Vec<Line> {
    trace
        .lines()
        .filter_map(|l| {
            let (tid, text) = l.split_once(' ')?;
            Some(Line {
                tid: tid.to_string(),
                text: text.trim_start().to_string(),
            })
        })
        .collect()
}

/// Where the call that starts at `start` completed (its own line, or the "resumed" line
/// of the same thread when strace split it).
fn completed(lines: &[Line], start: usize) -> usize {
    if !lines[start].text.contains("<unfinished ...>") {
        return start;
    }
    let name = lines[start].text.split('(').next().unwrap_or_default();
    let resumed = format!("<... {name} resumed>");
    (start + 1..lines.len())
        .find(|&i| lines[i].tid == lines[start].tid && lines[i].text.starts_with(&resumed))
        .expect("a resumed line")
}

/// The first line at or after `from` satisfying `pred`.
fn find(lines: &[Line], from: usize, what: &str, pred: impl Fn(&str) -> bool) -> usize {
    (from..lines.len())
        .find(|&i| pred(&lines[i].text))
        .unwrap_or_else(|| {
            let tail: Vec<&str> = lines[from..].iter().map(|l| l.text.as_str()).collect();
            panic!("no {what} after line {from}:\n{}", tail.join("\n"))
        })
}

/// The file descriptor a call returned (`... = 19<TCP:[...]>` with -y).
fn returned_fd(text: &str) -> String {
    let value = text.rsplit("= ").next().unwrap_or_default().trim();
    value.split('<').next().unwrap_or_default().to_string()
}

/// The path strace -y shows for a call's first argument (`fsync(7</a/b>)`).
fn fd_path(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once('(')?;
    let (fd, rest) = rest.split_once('<')?;
    if !fd.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.split_once('>').map(|(path, _)| path)
}

/// The first quoted string of a call.
fn first_path(text: &str) -> String {
    text.split('"').nth(1).unwrap_or_default().to_string()
}

struct Strace(Child);

impl Drop for Strace {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The daemon's traced system calls while `storescu` sends one CT slice.
fn trace_one_store(daemon: &Daemon, work: &std::path::Path) -> Vec<Line> {
    let trace_path = work.join("trace.txt");
    let strace = Strace(
        Command::new("strace")
            .args(["-f", "-qq", "-y", "-o"])
            .arg(&trace_path)
            .args([
                "-e",
                "trace=openat,fdatasync,fsync,rename,renameat,renameat2,pwrite64,write,writev,sendto,sendmsg,accept4",
                "-p",
            ])
            .arg(daemon.pid().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("strace"),
    );
    // strace writes a line as soon as any thread makes a traced call (the runtime's
    // wake-ups do so all the time): then it is attached.
    wait_until("strace attached", Duration::from_secs(20), || {
        std::fs::metadata(&trace_path)
            .map(|m| m.len() > 0)
            .unwrap_or(false)
    });
    let out = run(daemon.storescu("SYNCSCU").arg(real("pydicom/CT_small.dcm")));
    assert!(out.status.success(), "{}", text(&out));
    drop(strace);
    let trace = std::fs::read_to_string(&trace_path).unwrap();
    if let Some(keep) = std::env::var_os("OSTEOSCREEN_KEEP_TRACE") {
        std::fs::write(keep, &trace).unwrap();
    }
    parse(&trace)
}

#[test]
fn without_the_journal_a_c_store_is_answered_only_after_fdatasync_rename_directory_fsync_and_commit(
) {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", "0")],
    );
    let lines = trace_one_store(&daemon, work.path());

    let accepted = find(&lines, 0, "accept4", |t| {
        t.starts_with("accept4(") && !t.contains("EAGAIN")
    });
    let socket = returned_fd(&lines[accepted].text);
    // The temp file may have been created before the association (a spare file, see
    // `ingest::spare`): it is known by its rename into place.
    let renamed = find(&lines, accepted, "rename into place", |t| {
        t.starts_with("rename") && first_path(t).contains("/spool/.tmp/")
    });
    let part = first_path(&lines[renamed].text);
    let target = lines[renamed]
        .text
        .split('"')
        .nth(3)
        .unwrap_or_default()
        .to_string();
    // With -y strace names the file behind each descriptor as of the call: a sync that
    // names the temp file reached it while it was still that file.
    let synced = completed(
        &lines,
        find(&lines, 0, "fdatasync of the temp file", |t| {
            (t.starts_with("fdatasync(") || t.starts_with("fsync("))
                && fd_path(t) == Some(part.as_str())
        }),
    );
    let dir = std::path::Path::new(&target)
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let dir_synced = completed(
        &lines,
        find(&lines, renamed, "fsync of the series directory", |t| {
            t.starts_with("fsync(") && fd_path(t) == Some(dir.as_str())
        }),
    );
    let committed = completed(
        &lines,
        find(&lines, dir_synced, "database commit", |t| {
            (t.starts_with("pwrite64(") || t.starts_with("write("))
                && fd_path(t).is_some_and(|p| p.ends_with("osteoscreen.sqlite-wal"))
        }),
    );
    // The response: the first P-DATA-TF (PDU type 4) on the association's socket after
    // the connection was accepted.
    let answered = find(&lines, accepted, "C-STORE-RSP on the socket", |t| {
        (t.starts_with(&format!("sendto({socket}<")) || t.starts_with(&format!("write({socket}<")))
            && t.contains(r#""\4\0"#)
    });
    let order = [
        ("fdatasync", synced),
        ("rename", renamed),
        ("directory fsync", dir_synced),
        ("commit", committed),
        ("response", answered),
    ];
    for pair in order.windows(2) {
        assert!(
            pair[0].1 < pair[1].1,
            "{} (line {}) must complete before {} (line {})",
            pair[0].0,
            pair[0].1,
            pair[1].0,
            pair[1].1
        );
    }
}

#[test]
fn through_the_journal_a_c_store_is_answered_only_after_its_record_is_flushed() {
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        work.path(),
        &[("OSTEOSCREEN__DICOM__JOURNAL_SEGMENT_MB", "64")],
    );
    // Both spare segments zero-filled and named (the preparer is then idle): the store
    // goes to the journal.
    let journal = daemon.storage_dir().join("spool/.journal");
    wait_until("journal segments ready", Duration::from_secs(60), || {
        std::fs::read_dir(&journal).is_ok_and(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
                .count()
                >= 2
        })
    });
    let lines = trace_one_store(&daemon, work.path());
    let accepted = find(&lines, 0, "accept4", |t| {
        t.starts_with("accept4(") && !t.contains("EAGAIN")
    });
    let socket = returned_fd(&lines[accepted].text);
    let in_segment = |t: &str| fd_path(t).is_some_and(|p| p.contains("/spool/.journal/seg-"));
    let data = find(&lines, accepted, "data set written to a segment", |t| {
        t.starts_with("pwrite64(") && in_segment(t)
    });
    let header = find(&lines, data, "record header written", |t| {
        t.starts_with("pwrite64(") && in_segment(t) && t.contains("OSJRNL01")
    });
    let segment = fd_path(&lines[header].text).unwrap().to_string();
    let flushed = completed(
        &lines,
        find(&lines, header, "fdatasync of the segment", |t| {
            t.starts_with("fdatasync(") && fd_path(t) == Some(segment.as_str())
        }),
    );
    let answered = find(&lines, accepted, "C-STORE-RSP on the socket", |t| {
        (t.starts_with(&format!("sendto({socket}<")) || t.starts_with(&format!("write({socket}<")))
            && t.contains(r#""\4\0"#)
    });
    for (a, b) in [
        (("data", data), ("header", header)),
        (("header", header), ("fdatasync", flushed)),
        (("fdatasync", flushed), ("response", answered)),
    ] {
        assert!(
            a.1 < b.1,
            "{} (line {}) must complete before {} (line {})",
            a.0,
            a.1,
            b.0,
            b.1
        );
    }
    // Then the mover puts a copy in the spool tree and records it.
    let store = daemon.store();
    wait_until("instance recorded", Duration::from_secs(20), || {
        store.instances().is_ok_and(|rows| rows.len() == 1)
    });
    let row = &store.instances().unwrap()[0];
    assert!(row.path.starts_with(daemon.storage_dir().join("spool")));
    dicom_object::open_file(&row.path).expect("the spool copy parses");
}
