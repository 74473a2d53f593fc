//! Hostile patient and study attributes in a source study: `osteoscreen analyze --out`
//! writes cleaned copies that dciodvfy finds valid, and refuses a study whose instances
//! name two patients.

mod common;

use std::process::Command;

use common::report::*;
use common::*;

/// A source whose patient and study attributes break their VRs (undecodable bytes under
/// its declared character set, a date in another form, an age without its unit, values
/// too long, a procedure code without its scheme): our objects carry cleaned copies and
/// stay valid. A study whose instances name two patients gets no report at all.
#[test]
fn hostile_patient_and_study_attributes_are_cleaned_or_refused() {
    use std::os::unix::ffi::OsStrExt;
    let work = tempfile::tempdir().unwrap();
    let series = real("ct-abdomen-20slices");
    let copy_to = |name: &str| {
        let dir = work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = Vec::new();
        for e in std::fs::read_dir(&series).unwrap() {
            let p = e.unwrap().path();
            let to = dir.join(p.file_name().unwrap());
            std::fs::copy(&p, &to).unwrap();
            files.push(to);
        }
        files.sort();
        (dir, files)
    };
    let (hostile, files) = copy_to("hostile");
    let latin1_name: &[u8] = b"(0010,0010)=M\xfcller^Eva";
    for file in &files {
        let o = run(Command::new("dcmodify")
            .args(["-nb", "-i", "(0008,0005)=ISO_IR 192", "-i"])
            .arg(std::ffi::OsStr::from_bytes(latin1_name))
            .args([
                "-i",
                "(0008,0020)=2024-01-31",
                "-i",
                "(0010,1010)=45",
                "-i",
                "(0008,0050)=ACCESSION-NUMBER-FAR-TOO-LONG",
                "-i",
                "(0008,1032)[0].(0008,0100)=X1",
                "-i",
                "(0008,1032)[0].(0008,0104)=a code without its scheme",
                "-e",
                "(0008,1032)[0].(0008,0102)",
            ])
            .arg(file));
        assert!(o.status.success(), "{}", text(&o));
    }
    let (_, written) = analyze_out(&hostile, &work.path().join("out"), None);
    assert_eq!(written.len(), 2, "{written:?}");
    for file in &written {
        dciodvfy_clean(file);
        assert_eq!(tag(file, "PatientName"), "M?ller^Eva");
        // Present and empty: dcmdump says "(no value available)".
        for key in ["StudyDate", "PatientAge"] {
            let value = tag(file, key);
            assert!(value.is_empty() || value == "(no", "{key} {value}");
        }
        assert_eq!(tag(file, "AccessionNumber"), "ACCESSION-NUMBER");
    }
    let sr = pick(&written, "sr");
    assert!(
        !dsrdump(sr).contains("a code without its scheme"),
        "the incomplete procedure code is replaced by a generic one"
    );

    let (mixed, files) = copy_to("mixed");
    let o = run(Command::new("dcmodify")
        .args(["-nb", "-i", "(0010,0020)=SOMEONE-ELSE"])
        .arg(&files[files.len() / 2]));
    assert!(o.status.success(), "{}", text(&o));
    let o = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .args(["analyze", "--out"])
        .arg(work.path().join("mixed-out"))
        .arg(&mixed));
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("different Patient IDs"), "{}", text(&o));
}
