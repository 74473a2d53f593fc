//! CT attenuation on synthetic volumes (levels and HU against the manifest) and on real
//! slices nobody here generated (TotalSegmentator's abdomen, WG04 CT1).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use osteoscreen::analysis::ct::{find_body, measure, Volume};
use osteoscreen::synth::{self, SynthModality, SynthOptions};

fn dcm_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    v.sort();
    v
}

#[test]
fn synthetic_ct_levels_and_trabecular_hu_match_the_manifest() {
    let work = tempfile::tempdir().unwrap();
    let mut opts = SynthOptions::new(work.path().to_path_buf(), 3, SynthModality::Ct);
    opts.seed = 51;
    let rows = synth::generate(&opts).unwrap();
    for row in &rows {
        let volume = Volume::from_files(&dcm_files(&work.path().join(&row.folder))).unwrap();
        let result = measure(&volume);
        let truth = [row.l1_hu, row.l2_hu, row.l3_hu, row.l4_hu, row.l5_hu].map(|h| h.unwrap());
        for (i, expected) in truth.iter().enumerate() {
            let name = format!("L{}", i + 1);
            let found = result
                .vertebrae
                .iter()
                .find(|v| v.level.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("{name} not labelled: {result:#?}"));
            let fractured =
                row.fracture_level == Some(name.as_str()) && row.fracture_grade >= Some(2);
            if fractured {
                continue; // partial-volumed endplates; flagged instead of trusted
            }
            assert!(
                (found.mean_hu - expected).abs() <= 10.0,
                "{name}: measured {:.1} HU, manifest {expected}",
                found.mean_hu
            );
            assert!(found.roi_mm2 > 100.0, "{name}: ROI {} mm²", found.roi_mm2);
        }
        assert!(result.labelling.contains("T12"), "{}", result.labelling);
    }
}

#[test]
fn real_abdominal_slices_show_a_body_in_every_slice_with_plausible_hu() {
    let dir = real("ct-abdomen-20slices");
    let volume = Volume::from_files(&dcm_files(&dir)).unwrap();
    assert_eq!(volume.slices.len(), 20);
    let look = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ct-roi");
    std::fs::create_dir_all(&look).unwrap();
    for (k, frame) in volume.slices.iter().enumerate() {
        let body = find_body(frame, volume.spacing, k)
            .unwrap_or_else(|| panic!("no vertebral body found in slice {k}"));
        let values: Vec<f32> = body.roi.iter().map(|&i| frame.values[i]).collect();
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        assert!(
            (50.0..=350.0).contains(&mean),
            "slice {k}: trabecular mean {mean} HU"
        );
        // The ROI holds trabecular bone: no cortex (≥ 600 HU), no fat or air.
        let (lo, hi) = values
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        assert!(
            lo > -50.0 && hi < 600.0,
            "slice {k}: ROI spans {lo}..{hi} HU"
        );
        // Near the midline, in the posterior half.
        let (cx, cy) = body.centre;
        assert!(
            (cx - 256.0).abs() < 80.0 && cy > 256.0,
            "slice {k}: centre {cx},{cy}"
        );
        if k % 6 == 0 {
            // A picture with the ROI drawn, to look at.
            let mut pixels: Vec<u16> = frame
                .values
                .iter()
                .map(|v| ((v + 1024.0).clamp(0.0, 4095.0)) as u16)
                .collect();
            for &i in &body.roi {
                if (i / frame.columns + i % frame.columns) % 3 == 0 {
                    pixels[i] = 4095;
                }
            }
            synth::preview::write_png(
                &look.join(format!("slice{k:02}.png")),
                &pixels,
                (frame.columns, frame.rows),
                (864.0, 1624.0),
                false,
                512,
            )
            .unwrap();
        }
    }
}

#[test]
fn thoracic_slice_of_wg04_ct1_has_its_body_found() {
    let volume = Volume::from_files(&[real("wg04/CT1_UNC.dcm")]).unwrap();
    let body = find_body(&volume.slices[0], volume.spacing, 0).expect("body in CT1");
    assert!(body.area_mm2 > 250.0 && !body.roi.is_empty());
}
