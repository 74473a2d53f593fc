//! Synthetic lumbar studies with known truth, for tests, demos, benchmarks and the demo
//! weights: `osteoscreen synth`. In: a seed and a count. Out: one folder of DICOM Part 10
//! files per study plus `manifest.csv` with each study's demographics and bone truth.
//! Everything derives from (seed, study index), so the same seed gives the same bytes.

pub mod ct;
pub mod dx;
pub mod hardware;
pub mod look;
pub mod part10;
pub mod preview;
pub mod raster;
pub mod rle;
pub mod subject;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use part10::{code_item, DatasetBuilder, StudyInfo, SynthSyntax};
use subject::{Reference, Subject, LEVELS};

/// Kind of study to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SynthModality {
    Dx,
    Cr,
    Ct,
}

/// Everything `osteoscreen synth` can be asked for.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub out: PathBuf,
    pub studies: usize,
    pub modality: SynthModality,
    pub seed: u64,
    /// Radiograph size (columns, rows).
    pub size: (usize, usize),
    pub syntax: SynthSyntax,
    /// Probabilities of classes normal, osteopenia, osteoporosis.
    pub balance: [f64; 3],
    /// CT BodyPartExamined: ABDOMEN or LSPINE.
    pub ct_body_part: String,
    pub ct_slice_mm: f64,
    pub ct_variant: ct::CtVariant,
    pub threads: usize,
    pub reference: Reference,
    /// Also write PNG previews (radiographs; CT: L3 axial slice and mid-sagittal reformat).
    pub preview: bool,
}

impl SynthOptions {
    pub fn new(out: PathBuf, studies: usize, modality: SynthModality) -> SynthOptions {
        SynthOptions {
            out,
            studies,
            modality,
            seed: 1,
            size: (2048, 2560),
            syntax: SynthSyntax::Explicit,
            balance: [0.36, 0.36, 0.28],
            ct_body_part: "ABDOMEN".into(),
            ct_slice_mm: 2.0,
            ct_variant: ct::CtVariant::default(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            reference: Reference::default(),
            preview: false,
        }
    }
}

/// One row of `manifest.csv`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ManifestRow {
    pub study_uid: String,
    pub folder: String,
    pub modality: String,
    pub sex: char,
    pub age: u32,
    pub weight_kg: f64,
    pub height_m: f64,
    pub bmd_g_cm2: f64,
    pub t_score: f64,
    pub class: u8,
    pub l1_hu: Option<f64>,
    pub l2_hu: Option<f64>,
    pub l3_hu: Option<f64>,
    pub l4_hu: Option<f64>,
    pub l5_hu: Option<f64>,
    pub fracture_level: Option<&'static str>,
    pub fracture_grade: Option<u8>,
}

/// A failure to generate, with the path involved.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing manifest: {0}")]
    Manifest(#[from] csv::Error),
    #[error("invalid option: {0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Generate every study (in parallel over `threads`) and write the manifest.
pub fn generate(opts: &SynthOptions) -> Result<Vec<ManifestRow>, SynthError> {
    let (w, h) = opts.size;
    if !(256..=4096).contains(&w) || !(256..=4096).contains(&h) {
        return Err(SynthError::Invalid(format!(
            "size {w}x{h} outside 256..4096"
        )));
    }
    if (opts.balance.iter().sum::<f64>() - 1.0).abs() > 1e-6
        || opts.balance.iter().any(|p| *p < 0.0)
    {
        return Err(SynthError::Invalid(
            "class balance must be 3 shares summing to 1".into(),
        ));
    }
    std::fs::create_dir_all(&opts.out).map_err(io_err(&opts.out))?;
    let next = AtomicUsize::new(0);
    let mut rows: Vec<Option<Result<ManifestRow, SynthError>>> =
        (0..opts.studies).map(|_| None).collect();
    let slots: Vec<std::sync::Mutex<&mut Option<Result<ManifestRow, SynthError>>>> =
        rows.iter_mut().map(std::sync::Mutex::new).collect();
    std::thread::scope(|scope| {
        for _ in 0..opts.threads.clamp(1, 64) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= opts.studies {
                    break;
                }
                let result = generate_study(opts, i);
                **slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
            });
        }
    });
    drop(slots);
    let rows: Vec<ManifestRow> = rows
        .into_iter()
        .map(|r| r.expect("every study was generated"))
        .collect::<Result<_, _>>()?;
    let manifest = opts.out.join("manifest.csv");
    let mut writer = csv::Writer::from_path(&manifest)?;
    for row in &rows {
        writer.serialize(row)?;
    }
    writer.flush().map_err(io_err(&manifest))?;
    Ok(rows)
}

/// The study's own generator: independent of thread scheduling.
fn study_rng(seed: u64, index: usize, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64 * 16 + stream);
    rng
}

/// The truth of study `index` (what `generate` draws for it).
pub fn subject(opts: &SynthOptions, index: usize) -> Subject {
    Subject::draw(
        &mut study_rng(opts.seed, index, 0),
        opts.balance,
        opts.reference,
    )
}

/// The AP and lateral radiographs of study `index`, as `generate` renders them.
pub fn radiographs(opts: &SynthOptions, index: usize) -> [dx::Radiograph; 2] {
    let subject = subject(opts, index);
    let mut rng = study_rng(opts.seed, index, 1);
    let pose = dx::Pose::draw(&mut rng, &subject);
    // A 35 x 43 cm class detector field: the pixel size follows the requested matrix
    // (0.15-0.18 mm at the default 2048 x 2560).
    let spacing = rng.random_range(380.0..460.0) / opts.size.1.max(opts.size.0) as f64;
    let monochrome1 = rng.random::<f64>() < 0.25;
    [dx::Projection::Ap, dx::Projection::Lateral].map(|view| {
        dx::render(
            &mut rng,
            &subject,
            &pose,
            view,
            opts.size,
            spacing,
            monochrome1,
        )
    })
}

/// The CT geometry of study `index` (body positions, slice positions).
pub fn ct_volume(opts: &SynthOptions, index: usize) -> ct::Phantom {
    let subject = subject(opts, index);
    ct::Phantom::plan(
        &mut study_rng(opts.seed, index, 2),
        &subject,
        opts.ct_slice_mm,
        opts.ct_variant,
    )
}

fn generate_study(opts: &SynthOptions, index: usize) -> Result<ManifestRow, SynthError> {
    let mut rng = study_rng(opts.seed, index, 0);
    let subject = Subject::draw(&mut rng, opts.balance, opts.reference);
    let seed = opts.seed.to_string();
    let idx = index.to_string();
    let study_uid = crate::dicom::uid::derived(&["synth", &seed, &idx, "study"]);
    let folder = format!("study{index:05}");
    let dir = opts.out.join(&folder);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    // Study dates spread over 2025 from the index; times from the generator.
    let date = chrono::NaiveDate::from_ymd_opt(2025, 1, 1)
        .expect("valid date")
        .checked_add_days(chrono::Days::new((index as u64 * 7919 + opts.seed) % 365))
        .expect("in range")
        .format("%Y%m%d")
        .to_string();
    let time = format!(
        "{:02}{:02}00",
        rng.random_range(7..19),
        rng.random_range(0..60)
    );
    let (modality, description) = match opts.modality {
        SynthModality::Dx => ("DX", "XR LUMBAR SPINE 2 VIEWS"),
        SynthModality::Cr => ("CR", "XR LUMBAR SPINE 2 VIEWS"),
        SynthModality::Ct if opts.ct_body_part == "LSPINE" => ("CT", "CT LUMBAR SPINE"),
        SynthModality::Ct => ("CT", "CT ABDOMEN"),
    };
    let study = StudyInfo {
        index,
        subject: &subject,
        study_uid: &study_uid,
        date,
        time: &time,
        description,
    };
    match opts.modality {
        SynthModality::Ct => write_ct(opts, &study, &dir, &seed, &idx)?,
        _ => write_radiographs(opts, &study, &dir, &seed, &idx, modality)?,
    }
    let ct = opts.modality == SynthModality::Ct;
    let hu = |i: usize| ct.then_some(subject.level_hu[i]);
    Ok(ManifestRow {
        study_uid,
        folder,
        modality: modality.into(),
        sex: subject.sex,
        age: subject.age_years,
        weight_kg: subject.weight_kg,
        height_m: subject.height_m,
        bmd_g_cm2: subject.bmd,
        t_score: subject.t_score,
        class: subject.class,
        l1_hu: hu(0),
        l2_hu: hu(1),
        l3_hu: hu(2),
        l4_hu: hu(3),
        // Four lumbar vertebrae: there is no L5 to measure.
        l5_hu: hu(4).filter(|_| opts.ct_variant.lumbar >= 5),
        fracture_level: subject.fracture.map(|f| LEVELS[f.level]),
        fracture_grade: subject.fracture.map(|f| f.grade),
    })
}

/// The DX Image module's attributes for a processed (for presentation) radiograph.
fn dx_for_presentation(h: &mut DatasetBuilder, monochrome1: bool, spacing: &str) {
    h.str(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY")
        .str(tags::PRESENTATION_INTENT_TYPE, VR::CS, "FOR PRESENTATION")
        .str(tags::PIXEL_INTENSITY_RELATIONSHIP, VR::CS, "LOG")
        .int16(tags::PIXEL_INTENSITY_RELATIONSHIP_SIGN, 1)
        .str(tags::POSITIONER_TYPE, VR::CS, "")
        .str(tags::RESCALE_INTERCEPT, VR::DS, "0")
        .str(tags::RESCALE_SLOPE, VR::DS, "1")
        .str(tags::RESCALE_TYPE, VR::LO, "US")
        .str(
            tags::PRESENTATION_LUT_SHAPE,
            VR::CS,
            if monochrome1 { "INVERSE" } else { "IDENTITY" },
        )
        .str(tags::DETECTOR_TYPE, VR::CS, "SCINTILLATOR")
        .str(tags::PIXEL_SPACING, VR::DS, spacing)
        .seq(
            tags::ANATOMIC_REGION_SEQUENCE,
            vec![code_item("122496007", "SCT", "Lumbar spine")],
        )
        .seq(tags::ACQUISITION_CONTEXT_SEQUENCE, vec![]);
}

fn write_radiographs(
    opts: &SynthOptions,
    study: &StudyInfo,
    dir: &Path,
    seed: &str,
    idx: &str,
    modality: &str,
) -> Result<(), SynthError> {
    let views = radiographs(opts, study.index);
    let series_uid = crate::dicom::uid::derived(&["synth", seed, idx, "series", modality]);
    let (sop_class, class_name) = if modality == "DX" {
        (uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION, "dx")
    } else {
        (uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE, "cr")
    };
    let names = [
        (dx::Projection::Ap, "AP", "ap"),
        (dx::Projection::Lateral, "LL", "lat"),
    ];
    for (n, (image, (view, code, name))) in views.into_iter().zip(names).enumerate() {
        let monochrome1 = image.monochrome1;
        let sop_uid = crate::dicom::uid::derived(&["synth", seed, idx, "image", name]);
        let mut h = DatasetBuilder::new();
        part10::common(&mut h, study, sop_class, &sop_uid);
        let photometric = if monochrome1 {
            "MONOCHROME1"
        } else {
            "MONOCHROME2"
        };
        part10::pixels(
            &mut h,
            image.height as u16,
            image.width as u16,
            12,
            photometric,
        );
        let spacing = format!("{:.4}\\{:.4}", image.spacing, image.spacing);
        h.str(tags::MODALITY, VR::CS, modality)
            .str(tags::SERIES_INSTANCE_UID, VR::UI, &series_uid)
            .str(tags::SERIES_NUMBER, VR::IS, "1")
            .str(
                tags::SERIES_DESCRIPTION,
                VR::LO,
                "LUMBAR SPINE AP + LAT (synthetic)",
            )
            .str(tags::INSTANCE_NUMBER, VR::IS, &(n + 1).to_string())
            .str(tags::BODY_PART_EXAMINED, VR::CS, "LSPINE")
            .str(tags::VIEW_POSITION, VR::CS, code)
            .str(tags::IMAGE_LATERALITY, VR::CS, "U")
            .str(
                tags::PATIENT_ORIENTATION,
                VR::CS,
                if view == dx::Projection::Ap {
                    "L\\F"
                } else {
                    "P\\F"
                },
            )
            .str(tags::IMAGER_PIXEL_SPACING, VR::DS, &spacing)
            .str(
                tags::WINDOW_CENTER,
                VR::DS,
                &format!("{:.0}", image.window.0),
            )
            .str(
                tags::WINDOW_WIDTH,
                VR::DS,
                &format!("{:.0}", image.window.1),
            )
            .str(
                tags::KVP,
                VR::DS,
                if view == dx::Projection::Ap {
                    "80"
                } else {
                    "95"
                },
            )
            .str(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00")
            .str(tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
        if modality == "DX" {
            dx_for_presentation(&mut h, monochrome1, &spacing);
        } else {
            h.str(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY");
        }
        if opts.preview {
            let png = dir.join(format!("preview_{name}.png"));
            let window = (
                image.window.0 - image.window.1 / 2.0,
                image.window.0 + image.window.1 / 2.0,
            );
            preview::write_png(
                &png,
                &image.pixels,
                (image.width, image.height),
                window,
                monochrome1,
                1024,
            )
            .map_err(io_err(&png))?;
        }
        let path = dir.join(format!("{class_name}_{name}.dcm"));
        part10::write(&path, h, image.pixels, opts.syntax).map_err(io_err(&path))?;
    }
    Ok(())
}

fn write_ct(
    opts: &SynthOptions,
    study: &StudyInfo,
    dir: &Path,
    seed: &str,
    idx: &str,
) -> Result<(), SynthError> {
    let volume = ct_volume(opts, study.index);
    let series_uid = crate::dicom::uid::derived(&["synth", seed, idx, "series", "CT"]);
    let frame_uid = crate::dicom::uid::derived(&["synth", seed, idx, "frame"]);
    let spacing = format!("{:.4}\\{:.4}", volume.pixel_spacing, volume.pixel_spacing);
    let thickness = format!("{:.2}", opts.ct_slice_mm);
    let l3 = volume.vertebrae[3];
    let (sag_col, _) = volume.pixel(l3.x, l3.y);
    let l3_slice = ((volume.z0 - l3.z_mid()) / volume.slice_spacing).round() as usize;
    let mut sagittal = Vec::new();
    for k in 0..volume.slices {
        let z = volume.slice_z(k);
        let sop_uid = crate::dicom::uid::derived(&["synth", seed, idx, "ct", &k.to_string()]);
        let mut h = DatasetBuilder::new();
        part10::common(&mut h, study, uids::CT_IMAGE_STORAGE, &sop_uid);
        part10::pixels(
            &mut h,
            ct::MATRIX as u16,
            ct::MATRIX as u16,
            12,
            "MONOCHROME2",
        );
        h.str(tags::MODALITY, VR::CS, "CT")
            .str(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL")
            .str(tags::SERIES_INSTANCE_UID, VR::UI, &series_uid)
            .str(tags::SERIES_NUMBER, VR::IS, "2")
            .str(
                tags::SERIES_DESCRIPTION,
                VR::LO,
                "AXIAL SOFT TISSUE (synthetic)",
            )
            .str(tags::INSTANCE_NUMBER, VR::IS, &(k + 1).to_string())
            .str(tags::ACQUISITION_NUMBER, VR::IS, "1")
            .str(tags::BODY_PART_EXAMINED, VR::CS, &opts.ct_body_part)
            .str(tags::PATIENT_POSITION, VR::CS, "FFS")
            .str(tags::FRAME_OF_REFERENCE_UID, VR::UI, &frame_uid)
            .str(tags::POSITION_REFERENCE_INDICATOR, VR::LO, "")
            .str(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0")
            .str(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                &format!("{:.3}\\{:.3}\\{:.3}", volume.origin.0, volume.origin.1, z),
            )
            .str(tags::SLICE_LOCATION, VR::DS, &format!("{z:.3}"))
            .str(tags::PIXEL_SPACING, VR::DS, &spacing)
            .str(tags::SLICE_THICKNESS, VR::DS, &thickness)
            .str(tags::SPACING_BETWEEN_SLICES, VR::DS, &thickness)
            .str(tags::KVP, VR::DS, "120")
            .str(tags::CONVOLUTION_KERNEL, VR::SH, "STANDARD")
            .str(tags::RESCALE_INTERCEPT, VR::DS, "-1024")
            .str(tags::RESCALE_SLOPE, VR::DS, "1")
            .str(tags::RESCALE_TYPE, VR::LO, "HU")
            .str(tags::WINDOW_CENTER, VR::DS, "40\\400")
            .str(tags::WINDOW_WIDTH, VR::DS, "400\\1800")
            .str(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00")
            .str(tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
        let path = dir.join(format!("ct_{:04}.dcm", k + 1));
        let pixels = volume.render_slice(study.subject, k);
        if opts.preview {
            // Soft-tissue-to-bone window: HU -250..1250 as stored values.
            sagittal.extend((0..ct::MATRIX).map(|row| pixels[row * ct::MATRIX + sag_col]));
            if k == l3_slice {
                let png = dir.join("preview_axial_l3.png");
                // Soft-tissue window (W 400, L 40) to show the organs.
                preview::write_png(
                    &png,
                    &pixels,
                    (ct::MATRIX, ct::MATRIX),
                    (864.0, 1264.0),
                    false,
                    512,
                )
                .map_err(io_err(&png))?;
            }
        }
        part10::write(&path, h, pixels, opts.syntax).map_err(io_err(&path))?;
    }
    if opts.preview {
        sagittal_preview(dir, &volume, &sagittal)?;
    }
    Ok(())
}

/// A sagittal preview PNG from the centre column of every slice.
fn sagittal_preview(dir: &Path, volume: &ct::Phantom, sagittal: &[u16]) -> Result<(), SynthError> {
    // Rows = slices (head at top), columns = anterior -> posterior; stretch to mm.
    let stretch = (volume.slice_spacing / volume.pixel_spacing)
        .round()
        .max(1.0) as usize;
    let mut image = Vec::with_capacity(sagittal.len() * stretch);
    for row in sagittal.chunks(ct::MATRIX) {
        for _ in 0..stretch {
            image.extend_from_slice(row);
        }
    }
    let png = dir.join("preview_sagittal.png");
    preview::write_png(
        &png,
        &image,
        (ct::MATRIX, volume.slices * stretch),
        (774.0, 2274.0),
        false,
        1024,
    )
    .map_err(io_err(&png))?;
    Ok(())
}
