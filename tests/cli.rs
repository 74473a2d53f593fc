//! The command line as an administrator uses it: `send` and `echo` against DCMTK's
//! storescp, and `check-config` on good and bad settings.

mod common;

use std::process::Command;

use common::*;

#[test]
fn send_round_trips_to_dcmtk_storescp_in_the_files_own_transfer_syntax() {
    let work = tempfile::tempdir().unwrap();
    let received = work.path().join("received");
    std::fs::create_dir_all(&received).unwrap();
    let scp = Storescp::start(&received, &[]);

    let echo = run(Command::new(bin())
        .args([
            "echo",
            "--host",
            "127.0.0.1",
            "--called-ae",
            "PACS",
            "--port",
        ])
        .arg(scp.port.to_string()));
    assert!(echo.status.success(), "{}", text(&echo));
    assert!(text(&echo).contains("Success"));

    // A directory (recursive) plus single files, in several transfer syntaxes.
    let input = work.path().join("input");
    std::fs::create_dir_all(input.join("nested")).unwrap();
    let sources = [
        "wg04/CT1_J2KR.dcm",
        "wg04/RG2_JLSL.dcm",
        "wg04/RG3_RLE.dcm",
        "pydicom/CT_small.dcm",
    ];
    for (i, s) in sources.iter().enumerate() {
        let sub = if i % 2 == 0 { "nested" } else { "" };
        std::fs::copy(real(s), input.join(sub).join(format!("{i}.dcm"))).unwrap();
    }
    let out = run(Command::new(bin())
        .args(["send", "--host", "127.0.0.1", "--called-ae", "PACS"])
        .args(["--calling-ae", "OSTEOTEST", "--port"])
        .arg(scp.port.to_string())
        .arg(&input)
        .arg(real("wg04/CT2_JPLL.dcm")));
    let stdout = text(&out);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("sent 5 of 5 files, 0 failed"), "{stdout}");

    let stored: Vec<_> = std::fs::read_dir(&received)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(stored.len(), 5);
    for source in sources.iter().chain(["wg04/CT2_JPLL.dcm"].iter()) {
        let src = real(source);
        let src_obj = dicom_object::open_file(&src).unwrap();
        let uid = src_obj.meta().media_storage_sop_instance_uid().to_string();
        let copy = stored
            .iter()
            .find(|p| {
                dicom_object::open_file(p)
                    .map(|o| o.meta().media_storage_sop_instance_uid() == uid)
                    .unwrap_or(false)
            })
            .unwrap_or_else(|| panic!("{source} not received"));
        let copy_obj = dicom_object::open_file(copy).unwrap();
        assert_eq!(
            copy_obj.meta().transfer_syntax(),
            src_obj.meta().transfer_syntax(),
            "{source} was transcoded"
        );
        assert_same_data_set(copy, &src);
    }

    // A file that is not DICOM gets a per-file failure, the others still go.
    let junk = work.path().join("junk.dcm");
    std::fs::write(&junk, b"not dicom").unwrap();
    let out = run(Command::new(bin())
        .args([
            "send",
            "--host",
            "127.0.0.1",
            "--called-ae",
            "PACS",
            "--port",
        ])
        .arg(scp.port.to_string())
        .arg(&junk)
        .arg(real("pydicom/CT_small.dcm")));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("sent 1 of 2 files, 1 failed"),
        "{}",
        text(&out)
    );
}

#[test]
fn echo_to_a_closed_port_fails_with_a_reason() {
    let out = run(Command::new(bin())
        .args([
            "echo",
            "--host",
            "127.0.0.1",
            "--called-ae",
            "NOBODY",
            "--timeout",
            "3",
        ])
        .args(["--port", &free_port().to_string()]));
    assert!(!out.status.success());
    assert!(text(&out).contains("NOBODY"), "{}", text(&out));
}

#[test]
fn check_config_prints_effective_settings_and_names_bad_keys() {
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .arg("check-config")
        .env("OSTEOSCREEN__DICOM__AE_TITLE", "SCREEN1"));
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("ae_title = \"SCREEN1\""), "{printed}");
    assert!(printed.contains("study_stable_seconds = 10"), "{printed}");

    let work = tempfile::tempdir().unwrap();
    let bad = work.path().join("bad.toml");
    std::fs::write(&bad, "[dicom]\nmax_associations = 0\n").unwrap();
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(&bad)
        .arg("check-config"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("dicom.max_associations"),
        "{}",
        text(&out)
    );

    std::fs::write(&bad, "[dicom]\nae_titel = \"TYPO\"\n").unwrap();
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(&bad)
        .arg("check-config"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("ae_titel"), "{}", text(&out));

    let out = run(Command::new(bin()).args([
        "--config",
        "/nonexistent/osteoscreen.toml",
        "check-config",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));

    let out = run(Command::new(bin()).arg("--help"));
    for cmd in ["serve", "echo", "send", "check-config"] {
        assert!(text(&out).contains(cmd), "--help lacks {cmd}");
    }
}

/// `osteoscreen check-config` run in `cwd`, with no OSTEOSCREEN__ variable set; stdout.
fn check_config_in(cwd: &std::path::Path, args: &[&str]) -> String {
    let mut cmd = Command::new(bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OSTEOSCREEN__") {
            cmd.env_remove(key);
        }
    }
    let out = run(cmd.args(args).arg("check-config").current_dir(cwd));
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn without_config_the_file_in_config_of_the_working_directory_applies() {
    let work = tempfile::tempdir().unwrap();
    // A site's config/osteoscreen.toml: the shipped file with two values changed.
    let site = work.path().join("site");
    std::fs::create_dir_all(site.join("config")).unwrap();
    let shipped = std::fs::read_to_string(shipped_config()).unwrap();
    assert!(
        shipped.contains("ae_title = \"OSTEOSCREEN\"")
            && shipped.contains("study_stable_seconds = 10")
    );
    let edited = shipped
        .replace("ae_title = \"OSTEOSCREEN\"", "ae_title = \"SITEFILE\"")
        .replace("study_stable_seconds = 10", "study_stable_seconds = 77");
    std::fs::write(site.join("config/osteoscreen.toml"), edited).unwrap();

    // No --config: the working directory's config/osteoscreen.toml is read.
    let printed = check_config_in(&site, &[]);
    assert!(printed.contains("ae_title = \"SITEFILE\""), "{printed}");
    assert!(printed.contains("study_stable_seconds = 77"), "{printed}");

    // Elsewhere, without such a file: the built-in defaults.
    let empty = work.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let printed = check_config_in(&empty, &[]);
    assert!(printed.contains("ae_title = \"OSTEOSCREEN\""), "{printed}");
    assert!(printed.contains("study_stable_seconds = 10"), "{printed}");

    // --config wins over the working directory's file.
    let shipped_path = shipped_config();
    let printed = check_config_in(&site, &["--config", shipped_path.to_str().unwrap()]);
    assert!(printed.contains("ae_title = \"OSTEOSCREEN\""), "{printed}");
}
