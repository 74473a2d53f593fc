//! Test files and their comparison: fresh copies of real instances, `dcmdump` and
//! byte-level data set comparison, and the set of real files the daemon must accept.

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

use super::{real, run, text};

/// Copies of `src` with fresh SOP Instance UIDs (and the given study / series), written to
/// `out`; UIDs are `<root>.<i>`.
pub fn make_instances(
    src: &Path,
    out: &Path,
    n: usize,
    study_uid: &str,
    series_uid: &str,
    root: &str,
) -> Vec<(PathBuf, String)> {
    std::fs::create_dir_all(out).unwrap();
    let mut obj = dicom_object::open_file(src).unwrap();
    obj.put(DataElement::new(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(study_uid),
    ));
    obj.put(DataElement::new(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(series_uid),
    ));
    (1..=n)
        .map(|i| {
            let uid = format!("{root}.{i}");
            obj.put(DataElement::new(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(uid.as_str()),
            ));
            obj.update_meta(|m| m.media_storage_sop_instance_uid = uid.clone());
            let path = out.join(format!("{i:05}.dcm"));
            obj.write_to_file(&path).unwrap();
            (path, uid)
        })
        .collect()
}

/// The data set part of `dcmdump`'s output (meta header, transfer syntax line and the
/// trailing padding that DCMTK drops when sending removed; long values abbreviated).
pub fn dump_data_set(path: &Path) -> Vec<String> {
    let out = run(Command::new("dcmdump").arg(path));
    assert!(
        out.status.success(),
        "dcmdump {}: {}",
        path.display(),
        text(&out)
    );
    let all = String::from_utf8_lossy(&out.stdout).to_string();
    let body = all
        .split_once("# Dicom-Data-Set")
        .map(|(_, b)| b.to_string())
        .unwrap_or(all);
    body.lines()
        .filter(|l| !l.starts_with("# Used TransferSyntax") && !l.starts_with("(fffc,fffc)"))
        .map(normalise_dump_line)
        .collect()
}

/// Drop what only reflects length encoding (explicit vs undefined lengths of sequences and
/// items), which a sender may legitimately change.
fn normalise_dump_line(line: &str) -> String {
    let value = line.rfind(" # ").map_or(line, |i| &line[..i]);
    value
        .replace(" with explicit length", "")
        .replace(" with undefined length", "")
        .replace(" for re-encod.", "")
        .replace(" for re-encoding", "")
        .trim_end()
        .to_string()
}

/// Assert that two files hold the same data set: same `dcmdump` lines and the same pixel
/// data bytes (native or encapsulated fragments).
pub fn assert_same_data_set(stored: &Path, sent: &Path) {
    let (a, b) = (dump_data_set(stored), dump_data_set(sent));
    if let Some((x, y)) = a.iter().zip(&b).find(|(x, y)| x != y) {
        panic!(
            "{} differs from {}:\n  stored: {x}\n  sent:   {y}",
            stored.display(),
            sent.display()
        );
    }
    assert_eq!(
        a.len(),
        b.len(),
        "{} element count differs",
        stored.display()
    );
    let pixels = |p: &Path| {
        dicom_object::open_file(p)
            .unwrap()
            .get(tags::PIXEL_DATA)
            .map(|e| e.value().clone())
    };
    assert!(
        pixels(stored) == pixels(sent),
        "pixel data of {} differs",
        stored.display()
    );
}

/// The data set bytes of a DICOM Part 10 file exactly as stored: everything after the
/// preamble, "DICM" and the (explicit VR little endian) group 0002 elements. Parsed here,
/// independently of the crate's reader.
pub fn data_set_bytes(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() > 132 && &bytes[128..132] == b"DICM",
        "{} is not DICOM Part 10",
        path.display()
    );
    let mut at = 132;
    while at + 8 <= bytes.len() && bytes[at..at + 2] == [0x02, 0x00] {
        let vr = &bytes[at + 4..at + 6];
        let (header, len) =
            if [&b"OB"[..], b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR"].contains(&vr) {
                let l = &bytes[at + 8..at + 12];
                (12, u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
            } else {
                (
                    8,
                    u16::from_le_bytes([bytes[at + 6], bytes[at + 7]]) as usize,
                )
            };
        at += header + len;
    }
    bytes[at..].to_vec()
}

/// Assert that two byte strings are equal, naming the first difference (not dumping both).
pub fn assert_same_bytes(stored: &[u8], sent: &[u8], what: &str) {
    if let Some(i) = stored.iter().zip(sent).position(|(a, b)| a != b) {
        panic!(
            "{what}: data set bytes differ at offset {i} (stored {:02x?}, sent {:02x?})",
            &stored[i..(i + 16).min(stored.len())],
            &sent[i..(i + 16).min(sent.len())]
        );
    }
    assert_eq!(
        stored.len(),
        sent.len(),
        "{what}: data set lengths differ (stored {}, sent {})",
        stored.len(),
        sent.len()
    );
}

/// The real files whose SOP class the daemon accepts (with OT and NM added to the
/// modalities), plus DCMTK-made implicit, big-endian and (`deflated`) deflated copies of
/// CT_small, so that every transfer syntax is covered.
pub fn acceptable_files(work: &Path, deflated: bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for n in 1..=20 {
        files.push(real(&format!("ct-abdomen-20slices/slice{n:02}.dcm")));
    }
    for image in ["CT1", "CT2", "RG2", "RG3"] {
        for enc in ["UNC", "J2KR", "J2KI", "JLSL", "JLSN", "JPLL", "RLE"] {
            files.push(real(&format!("wg04/{image}_{enc}.dcm")));
        }
    }
    files.push(real("wg04/RG2_JPLY.dcm"));
    files.push(real("wg04/RG3_JPLY.dcm"));
    for f in [
        "CT_small.dcm",
        "eCT_Supplemental.dcm",
        "JPEG-LL.dcm",
        "JPEG-lossy.dcm",
        "JPEG2000.dcm",
        "SC_rgb.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "image_dfl.dcm",
    ] {
        files.push(real(&format!("pydicom/{f}")));
    }
    let copies = [
        ("+ti", "implicit"),
        ("+tb", "bigendian"),
        ("+td", "deflated"),
    ];
    for (i, (flag, name)) in copies.into_iter().enumerate() {
        if flag == "+td" && !deflated {
            continue;
        }
        let out = work.join(format!("CT_small_{name}.dcm"));
        let res = run(Command::new("dcmconv")
            .arg(flag)
            .arg(real("pydicom/CT_small.dcm"))
            .arg(&out));
        assert!(res.status.success(), "dcmconv {flag}: {}", text(&res));
        // Distinct SOP Instance UIDs, or the copies would overwrite each other.
        let res = run(Command::new("dcmodify")
            .arg("-nb")
            .arg("-m")
            .arg(format!("(0008,0018)=1.2.826.0.1.3680043.9.7777.1.{i}"))
            .arg(&out));
        assert!(res.status.success(), "dcmodify: {}", text(&res));
        files.push(out);
    }
    files
}

/// The instance at `path` with the first fragment of its encapsulated pixel data edited
/// by `edit` (a hostile or damaged codestream).
pub fn with_first_fragment(
    path: &Path,
    edit: impl Fn(&mut Vec<u8>),
) -> dicom_object::DefaultDicomObject {
    let mut obj = dicom_object::open_file(path).unwrap();
    let mut fragments = match obj.get(tags::PIXEL_DATA).unwrap().value() {
        dicom_core::DicomValue::PixelSequence(seq) => seq.fragments().to_vec(),
        _ => panic!("{}: pixel data not encapsulated", path.display()),
    };
    edit(&mut fragments[0]);
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        dicom_core::DicomValue::PixelSequence(dicom_core::value::PixelFragmentSequence::new(
            Vec::<u32>::new(),
            fragments,
        )),
    ));
    obj
}
