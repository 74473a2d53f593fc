//! The spool and the database agree across restarts: paths relative to the storage dir,
//! an instance re-sent under another series replaces the old copy durably, and recovery
//! does not move rows back and forth.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn store_file(daemon: &Daemon, file: &std::path::Path) {
    let out = run(daemon.storescu("INTEGRITY").arg(file));
    assert!(out.status.success(), "{}\n{}", text(&out), daemon.logs());
    daemon.settled();
}

#[test]
fn a_moved_storage_dir_is_found_again_without_re_recording() {
    let first = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(first.path(), &[]);
    store_file(&daemon, &real("pydicom/CT_small.dcm"));
    assert!(daemon.terminate().success());
    // The row holds a path relative to the storage dir.
    let out = run(Command::new("sqlite3")
        .arg(daemon.storage.join("osteoscreen.sqlite"))
        .arg("SELECT path FROM instances"));
    let stored = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(stored.starts_with("spool/"), "{stored:?}");
    // Moved elsewhere, the daemon finds its files: nothing is recovered again.
    let second = tempfile::tempdir().unwrap();
    std::fs::rename(&daemon.storage, second.path().join("var")).unwrap();
    let moved = Daemon::start(second.path(), &[]);
    let rows = moved.store().instances().unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].path.starts_with(second.path()),
        "{:?}",
        rows[0].path
    );
    assert!(rows[0].path.exists());
    assert!(
        !moved.logs().contains("database had lost"),
        "{}",
        moved.logs()
    );
}

#[test]
fn an_instance_re_sent_under_another_series_replaces_the_old_copy_for_good() {
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(work.path(), &[]);
    let original = work.path().join("a.dcm");
    std::fs::copy(real("pydicom/CT_small.dcm"), &original).unwrap();
    store_file(&daemon, &original);
    let old_path = daemon.store().instances().unwrap()[0].path.clone();
    // Same SOP Instance UID, another series.
    let moved = work.path().join("b.dcm");
    std::fs::copy(&original, &moved).unwrap();
    let out = run(Command::new("dcmodify")
        .args(["-nb", "-m", "(0020,000E)=1.2.826.0.1.3680043.2.99"])
        .arg(&moved));
    assert!(out.status.success(), "{}", text(&out));
    store_file(&daemon, &moved);
    let check = |daemon: &Daemon| {
        let rows = daemon.store().instances().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].series_uid, "1.2.826.0.1.3680043.2.99");
        assert!(rows[0].path.exists());
        assert!(
            !old_path.exists(),
            "old copy {} still there",
            old_path.display()
        );
        rows[0].path.clone()
    };
    let new_path = check(&daemon);
    // Restarts leave it alone: no recovery, the row stays on the new copy.
    for _ in 0..2 {
        assert!(daemon.terminate().success());
        daemon.restart();
        assert_eq!(check(&daemon), new_path);
    }
    assert!(
        !daemon.logs().contains("database had lost"),
        "{}",
        daemon.logs()
    );
    // A crash between the commit and the removal leaves the old copy: the next start
    // removes the older file instead of moving the row back.
    assert!(daemon.terminate().success());
    std::fs::create_dir_all(old_path.parent().unwrap()).unwrap();
    std::fs::copy(&new_path, &old_path).unwrap();
    let past = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&old_path)
        .unwrap()
        .set_modified(past)
        .unwrap();
    daemon.restart();
    assert_eq!(check(&daemon), new_path);
    daemon.wait_for_log("removed older copies", Duration::from_secs(10));
}
