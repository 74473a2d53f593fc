//! CT screening on what breaks a one-look method, through the CLI as a user runs it:
//! a real low-density crop against its published body mask (no anchor in view: a class
//! from the unlabelled body, flagged), phantoms without ribs (labelled from the pelvis,
//! flagged), low-dose noise, 3 mm slices whose discs must not count as vertebrae, discs of
//! other densities, opacified colon beside the spine (not ribs), an off-centre scoliotic
//! spine, six or four lumbar vertebrae (flagged, never silently labelled), pedicle
//! screws (their levels left out of the class, flagged), and two real CTs: one at 3 mm
//! with vertebra masks, one with contrast whose lowest ribs slope far down (whole, and cut
//! to T11-L4).

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// `osteoscreen analyze --json DIR` with the shipped settings.
fn analyze(dir: &Path) -> Value {
    let out = run(std::process::Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .args(["analyze", "--json"])
        .arg(dir));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// (level, median HU, height mm) of every vertebra the CT method reported.
fn levels(finding: &Value) -> Vec<(Option<String>, f64, f64)> {
    finding["ct"]["levels"]
        .as_array()
        .unwrap_or_else(|| panic!("no CT levels: {finding:#}"))
        .iter()
        .map(|l| {
            (
                l["level"].as_str().map(String::from),
                l["median_hu"].as_f64().unwrap(),
                l["height_mm"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The median HU of the vertebra labelled `level`; panics, listing all, when there is none.
fn hu_of(found: &[(Option<String>, f64, f64)], level: &str) -> f64 {
    found
        .iter()
        .find(|(l, _, _)| l.as_deref() == Some(level))
        .unwrap_or_else(|| panic!("no {level}: {found:?}"))
        .1
}

/// The first six vertebrae are labelled T12, L1 ... L5, in order.
fn assert_t12_to_l5(found: &[(Option<String>, f64, f64)]) {
    let names: Vec<Option<&str>> = found.iter().map(|(l, _, _)| l.as_deref()).collect();
    assert_eq!(
        names.get(..6),
        Some(
            &[
                Some("T12"),
                Some("L1"),
                Some("L2"),
                Some("L3"),
                Some("L4"),
                Some("L5")
            ][..]
        ),
        "{found:?}"
    );
}

fn flags(finding: &Value) -> String {
    finding["flags"].to_string()
}

/// One synthetic CT with `args`; its folder and manifest row (L1..L5 truth HU, NaN for a
/// level the phantom lacks).
fn phantom(work: &Path, args: &[&str]) -> (std::path::PathBuf, [f64; 5]) {
    let mut all = vec!["--modality", "ct"];
    all.extend_from_slice(args);
    let study = synth_study(work, &all);
    let manifest = std::fs::read_to_string(work.join("manifest.csv")).unwrap();
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    // Empty where the phantom has no such level (L5 with four lumbar vertebrae).
    let hu = |name: &str| -> f64 {
        let i = header.iter().position(|h| *h == name).unwrap();
        row[i].parse().unwrap_or(f64::NAN)
    };
    (
        study,
        [
            hu("l1_hu"),
            hu("l2_hu"),
            hu("l3_hu"),
            hu("l4_hu"),
            hu("l5_hu"),
        ],
    )
}

/// No piece between the first and the last vertebra is disc-short (under 12 mm).
fn assert_no_disc_pieces(found: &[(Option<String>, f64, f64)]) {
    let inner = &found[1..found.len().saturating_sub(1)];
    assert!(
        inner.iter().all(|(_, _, h)| *h >= 12.0),
        "a disc counted as a vertebra: {found:?}"
    );
}

#[test]
fn the_real_low_density_crop_measures_l3_within_15_hu_of_its_mask() {
    let dir = real("ct-lumbar-l3-crop");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let l3 = reference["levels"]["L3"]["median_hu"].as_f64().unwrap();
    let finding = analyze(&dir);
    let found = levels(&finding);
    // L3 is the crop's only complete body: the tallest one measured.
    let (_, hu, _) = found
        .iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .cloned()
        .unwrap();
    assert!(
        (hu - l3).abs() <= 15.0,
        "L3 median {hu} HU, mask {l3} HU: {found:?}"
    );
    // No level can be labelled in a 70 mm crop: the class still comes, flagged.
    assert_eq!(finding["ct"]["class"], "osteoporosis_likely", "{finding:#}");
    assert_eq!(finding["ct"]["level_confidence"], "unlabelled");
    assert!(
        flags(&finding).contains("CT levels not identified"),
        "{}",
        flags(&finding)
    );
}

#[test]
fn a_ct_without_ribs_is_labelled_from_the_pelvis_and_its_transverse_processes() {
    let work = tempfile::tempdir().unwrap();
    let (study, truth) = phantom(
        work.path(),
        &["--seed", "78", "--ct-slice-mm", "3", "--ct-no-ribs"],
    );
    let finding = analyze(&study);
    let found = levels(&finding);
    assert_no_disc_pieces(&found);
    // The generator draws T12 first: with L5 found beside the ilium, the count up from it
    // must land on the same bodies.
    assert_t12_to_l5(&found);
    assert!(
        (found[1].1 - truth[0]).abs() <= 10.0,
        "L1 {found:?} vs {truth:?}"
    );
    // The pelvis, and L1 as the first of the vertebrae with transverse processes below a
    // T12 without ribs: two anchors that agree, so the labels are sure, and say how.
    assert!(finding["ct"]["class"].is_string(), "{finding:#}");
    assert_eq!(finding["ct"]["level_confidence"], "labelled", "{finding:#}");
    let how = finding["ct"]["labelling"].to_string();
    assert!(
        how.contains("ilium") && how.contains("transverse processes agrees"),
        "{how}"
    );
    assert!(!flags(&finding).contains("CT level"), "{}", flags(&finding));
}

/// Opacified colon beside every lumbar vertebra looks like "ribs" on both sides at every
/// level. Counting from the lowest such vertebra as T12 would put T1-T9 where no lung is:
/// the lungs overrule it, the pelvis labels the levels, and the reader is told.
#[test]
fn contrast_in_the_colon_is_not_taken_for_ribs() {
    let work = tempfile::tempdir().unwrap();
    let (study, truth) = phantom(
        work.path(),
        &["--seed", "81", "--ct-slice-mm", "2", "--ct-bowel-contrast"],
    );
    let finding = analyze(&study);
    let found = levels(&finding);
    assert_t12_to_l5(&found);
    assert!(
        (hu_of(&found, "L1") - truth[0]).abs() <= 10.0,
        "L1 {found:?} vs {truth:?}"
    );
    assert_eq!(finding["ct"]["level_confidence"], "low");
    assert!(flags(&finding).contains("not ribs"), "{}", flags(&finding));
}

/// A patient lying 80 mm to the side of the scanner's centre, with a 30 mm lumbar curve:
/// the spine is looked for beside the patient's midline, not the image's, and followed
/// level by level. (Before, a body-sized piece of other bone near the image's centre was
/// taken for the spine, and an osteoporotic phantom was called normal.)
#[test]
fn an_off_centre_scoliotic_spine_is_followed() {
    let work = tempfile::tempdir().unwrap();
    let (study, truth) = phantom(
        work.path(),
        &[
            "--seed",
            "83",
            "--ct-slice-mm",
            "2",
            "--ct-shift-mm",
            "-80",
            "--ct-scoliosis-mm",
            "-30",
        ],
    );
    let finding = analyze(&study);
    let found = levels(&finding);
    assert_t12_to_l5(&found);
    for (k, level) in ["L1", "L2", "L3", "L4"].iter().enumerate() {
        assert!(
            (hu_of(&found, level) - truth[k]).abs() <= 10.0,
            "{level}: {found:?} vs {truth:?}"
        );
    }
    assert_eq!(finding["ct"]["level_confidence"], "labelled", "{finding:#}");
}

#[test]
fn a_low_dose_ct_is_measured_through_its_noise() {
    let work = tempfile::tempdir().unwrap();
    let (study, truth) = phantom(
        work.path(),
        &[
            "--seed",
            "79",
            "--ct-slice-mm",
            "1.5",
            "--ct-noise-hu",
            "90",
        ],
    );
    let finding = analyze(&study);
    let found = levels(&finding);
    let l1 = hu_of(&found, "L1");
    assert!((l1 - truth[0]).abs() <= 10.0, "L1 {l1} vs {}", truth[0]);
    assert_eq!(finding["ct"]["level_confidence"], "labelled");
}

#[test]
fn discs_of_a_noisy_3_mm_ct_are_not_counted_as_vertebrae() {
    let work = tempfile::tempdir().unwrap();
    let (study, truth) = phantom(
        work.path(),
        &[
            "--seed",
            "81",
            "--ct-slice-mm",
            "3",
            "--ct-noise-hu",
            "70",
            "--ct-no-ribs",
        ],
    );
    let finding = analyze(&study);
    let found = levels(&finding);
    assert_no_disc_pieces(&found);
    let (lo, hi) = truth
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    for (_, hu, _) in &found {
        assert!(
            (lo - 15.0..=hi + 15.0).contains(hu),
            "{hu} HU outside the truth's {lo}..{hi}: {found:?}"
        );
    }
}

#[test]
fn the_real_3_mm_ct_is_labelled_as_its_masks_say_and_measured_within_15_hu() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ct-totalseg-example");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let bodies = reference["levels"].as_object().unwrap();
    let files = osteoscreen::dicom::files::collect_files(std::slice::from_ref(&dir)).unwrap();
    let dicom: Vec<_> = files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    let volume = osteoscreen::analysis::ct::Volume::from_files(&dicom).unwrap();
    let finding = analyze(&dir);
    let mut right = Vec::new();
    for l in finding["ct"]["levels"].as_array().unwrap() {
        let slices = l["slices"].as_array().unwrap();
        let z = volume.z[slices[slices.len() / 2].as_u64().unwrap() as usize];
        // The mask's body whose z range holds the vertebra's middle slice.
        let truth = bodies.iter().find(|(_, b)| {
            let r = b["z_mm"].as_array().unwrap();
            (r[0].as_f64().unwrap()..=r[1].as_f64().unwrap()).contains(&z)
        });
        let label = l["level"].as_str();
        match truth {
            Some((name, b)) => {
                assert_eq!(label, Some(name.as_str()), "at z {z}: {l:#}");
                let (hu, want) = (
                    l["median_hu"].as_f64().unwrap(),
                    b["median_hu"].as_f64().unwrap(),
                );
                assert!((hu - want).abs() <= 15.0, "{name}: {hu} HU, mask {want} HU");
                right.push(name.clone());
            }
            None => assert!(label.is_none(), "a {label:?} outside every body at z {z}"),
        }
    }
    for level in ["T12", "L1", "L2", "L3", "L4"] {
        assert!(
            right.iter().any(|r| r == level),
            "{level} not found: {right:?}"
        );
    }
    assert!(finding["ct"]["class"].is_string(), "{finding:#}");
    // L1 holds a dense focal lesion (a bone island) in its upper half, and the body's ring
    // does not close at 3 mm on two slices: it is still measured as one body, over most of
    // its height, and not taken for a compression fracture.
    let levels = finding["ct"]["levels"].as_array().unwrap();
    assert!(
        levels.iter().all(|l| l["compressed"] == false),
        "a fracture flag on an intact spine: {finding:#}"
    );
    let l1 = levels.iter().find(|l| l["level"] == "L1").unwrap();
    assert!(l1["height_mm"].as_f64().unwrap() >= 18.0, "{l1:#}");
    assert!(
        finding["ct"]["class_basis"]
            .as_str()
            .is_some_and(|b| b.starts_with("L1") && !b.contains("measured over only")),
        "{finding:#}"
    );
}

/// A real CC BY 4.0 contrast CT from the heart to the sacrum (tests/data/ct-pancreas-contrast).
/// Its 11th and 12th ribs slope down so steeply that at their vertebrae's middle slices they
/// lie 140-150 mm out and far behind: in one slice, ribs show beside T9 and T10 only, which
/// would make T10 "T12". Followed in 3D to their heads, the ribs name T12, and the ilium
/// beside L5, five vertebrae below, agrees: sure labels, the class from L1.
#[test]
fn a_real_contrast_ct_whose_lowest_ribs_slope_far_down_is_labelled_from_their_heads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ct-pancreas-contrast");
    let finding = analyze(&dir);
    let found = levels(&finding);
    assert_pancreas_ct(
        &finding,
        &["T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"],
    );
    let last = &finding["ct"]["levels"].as_array().unwrap()[found.len() - 1];
    assert_eq!(last["pelvis"], true, "{last:#}");
    assert_eq!(finding["ct"]["level_confidence"], "labelled", "{finding:#}");
    assert!(
        finding["ct"]["labelling"]
            .as_str()
            .is_some_and(|l| l.contains("ilium beside L5 agrees")),
        "{finding:#}"
    );
}

/// The same real CT cut to what a hidden contrast CT once covered, about T11 to L4 (no
/// pelvis, no lung, the lowest ribs only): labelled T11-L4 from the ribs' heads, where
/// counting from lateral bone in one slice once named such a scan five levels too high.
#[test]
fn a_real_contrast_ct_cut_to_t11_l4_is_labelled_from_the_lowest_ribs() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ct-pancreas-contrast");
    let work = tempfile::tempdir().unwrap();
    // slice001 is the lowest: 28-94 run from the L4/L5 disc up to the T10/T11 disc.
    for n in 28..=94 {
        let name = format!("slice{n:03}.dcm");
        std::fs::copy(src.join(&name), work.path().join(&name)).unwrap();
    }
    let finding = analyze(work.path());
    assert_pancreas_ct(&finding, &["T11", "T12", "L1", "L2", "L3", "L4"]);
}

/// The pancreas CT's levels are `want`, its contrast-enhanced bodies all alike (255-285
/// HU), and its class normal from L1.
fn assert_pancreas_ct(finding: &Value, want: &[&str]) {
    let found = levels(finding);
    let names: Vec<Option<&str>> = found.iter().map(|(l, _, _)| l.as_deref()).collect();
    let want: Vec<Option<&str>> = want.iter().copied().map(Some).collect();
    assert_eq!(names, want, "{found:?}");
    for (level, hu, _) in &found {
        assert!((230.0..=310.0).contains(hu), "{level:?} {hu} HU: {found:?}");
    }
    assert_eq!(finding["ct"]["class"], "normal_likely", "{finding:#}");
    assert!(
        finding["ct"]["class_basis"]
            .as_str()
            .is_some_and(|b| b.starts_with("L1 median")),
        "{finding:#}"
    );
}

#[test]
fn six_or_four_lumbar_vertebrae_are_flagged_and_l1_still_counts_from_t12() {
    for (lumbar, seed) in [("6", "83"), ("4", "85")] {
        let work = tempfile::tempdir().unwrap();
        let (study, truth) = phantom(work.path(), &["--seed", seed, "--ct-lumbar", lumbar]);
        let finding = analyze(&study);
        let found = levels(&finding);
        let l1 = hu_of(&found, "L1");
        assert!(
            (l1 - truth[0]).abs() <= 10.0,
            "{lumbar} lumbar: L1 {l1} vs {}: {found:?}",
            truth[0]
        );
        // The anchors disagree (T12 to the ilium is not 5): said, not silently labelled.
        assert_eq!(
            finding["ct"]["level_confidence"], "low",
            "{lumbar} lumbar: {finding:#}"
        );
        assert!(
            flags(&finding).contains("transitional"),
            "{lumbar} lumbar: {}",
            flags(&finding)
        );
    }
}

#[test]
fn discs_near_water_or_calcified_are_not_vertebrae() {
    // 12 HU: the independent phantoms' discs; 250 HU: denser than every body here.
    for (disc, seed, mm) in [("12", "87", "3"), ("250", "89", "2")] {
        let work = tempfile::tempdir().unwrap();
        let (study, truth) = phantom(
            work.path(),
            &["--seed", seed, "--ct-slice-mm", mm, "--ct-disc-hu", disc],
        );
        let finding = analyze(&study);
        let found = levels(&finding);
        assert_no_disc_pieces(&found);
        let named: Vec<_> = found.iter().filter_map(|(l, _, _)| l.clone()).collect();
        for level in ["T12", "L1", "L2", "L3", "L4", "L5"] {
            assert!(
                named.iter().any(|n| n == level),
                "{disc} HU discs: {level} missing: {found:?}"
            );
        }
        for (i, level) in ["L1", "L2", "L3", "L4"].iter().enumerate() {
            let hu = hu_of(&found, level);
            assert!(
                (hu - truth[i]).abs() <= 15.0,
                "{disc} HU discs: {level} {hu} vs {}: {found:?}",
                truth[i]
            );
        }
        assert_eq!(finding["ct"]["level_confidence"], "labelled", "{finding:#}");
    }
}

/// The metal flags of every reported vertebra, by level.
fn metal_levels(finding: &Value) -> Vec<(Option<String>, bool)> {
    finding["ct"]["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["level"].as_str().map(String::from),
                l["metal"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Pedicle screws (metal at the top of the scale, with dark bands and bright and dark
/// rays around them) in L1 of a 5 mm CT, and in L3 and L4 of a noisy 3 mm one: the levels
/// are still counted from T12, the instrumented ones are marked and not used (on the 3 mm
/// CT their ROI reads ~30 HU low), the class comes from the next level, and the Finding
/// says why. The levels beside the screws are not marked.
#[test]
fn levels_with_pedicle_screws_are_marked_and_left_out_of_the_class() {
    for (seed, mm, noise, metal, basis) in [
        ("86", "5", None, ["L1"].as_slice(), "L2"),
        ("88", "3", Some("90"), ["L3", "L4"].as_slice(), "L1"),
    ] {
        let work = tempfile::tempdir().unwrap();
        let joined = metal.join(",");
        let mut args = vec!["--seed", seed, "--ct-slice-mm", mm, "--ct-metal", &joined];
        if let Some(sd) = noise {
            args.extend(["--ct-noise-hu", sd]);
        }
        let (study, truth) = phantom(work.path(), &args);
        let finding = analyze(&study);
        let found = levels(&finding);
        assert_t12_to_l5(&found);
        for (level, marked) in metal_levels(&finding).iter().take(6) {
            let level = level.as_deref().unwrap();
            assert_eq!(
                *marked,
                metal.contains(&level),
                "{level} metal {marked}: {finding:#}"
            );
        }
        let basis_hu = hu_of(&found, basis);
        let k: usize = basis[1..].parse::<usize>().unwrap() - 1;
        assert!(
            (basis_hu - truth[k]).abs() <= 10.0,
            "{basis} {basis_hu} vs {}",
            truth[k]
        );
        let class_basis = finding["ct"]["class_basis"].as_str().unwrap();
        assert!(class_basis.starts_with(basis), "{class_basis}");
        assert_eq!(finding["ct"]["level_confidence"], "labelled");
        let flags = flags(&finding);
        assert!(
            flags.contains(&format!("metal (spinal hardware) at {}", metal.join(", "))),
            "{flags}"
        );
    }
}
