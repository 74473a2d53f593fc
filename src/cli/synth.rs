//! `osteoscreen synth`: synthetic lumbar studies with known truth.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use osteoscreen::synth::part10::SynthSyntax;
use osteoscreen::synth::{generate, SynthModality, SynthOptions};

#[derive(Args)]
pub struct SynthArgs {
    /// Output folder: one sub-folder per study, plus manifest.csv.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of studies.
    #[arg(long, default_value_t = 10)]
    pub studies: usize,
    /// dx / cr: AP + lateral radiographs; ct: an axial abdominal volume.
    #[arg(long, value_enum)]
    pub modality: SynthModality,
    /// Same seed, same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Radiograph size in pixels, WIDTHxHEIGHT.
    #[arg(long, default_value = "2048x2560", value_parser = parse_size)]
    pub size: (usize, usize),
    /// Transfer syntax of the files written.
    #[arg(long, value_enum, default_value = "explicit")]
    pub transfer_syntax: SynthSyntax,
    /// Class shares normal,osteopenia,osteoporosis (default LUMOS-like 0.36,0.36,0.28).
    #[arg(long, default_value = "0.36,0.36,0.28", value_parser = parse_balance)]
    pub balance: [f64; 3],
    /// CT BodyPartExamined: ABDOMEN or LSPINE.
    #[arg(long, default_value = "ABDOMEN", value_parser = ["ABDOMEN", "LSPINE"])]
    pub ct_body_part: String,
    /// CT slice thickness and spacing in mm (0.5 to 5).
    #[arg(long, default_value_t = 2.0)]
    pub ct_slice_mm: f64,
    /// CT without ribs: no rib-bearing T12 to label levels from.
    #[arg(long)]
    pub ct_no_ribs: bool,
    /// CT quantum noise SD in HU, at least (a low-dose scan: 60-100).
    #[arg(long)]
    pub ct_noise_hu: Option<f64>,
    /// CT lumbar vertebrae: 5, or 4 / 6 (lumbosacral transitional anatomy).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(4..=6))]
    pub ct_lumbar: u8,
    /// CT disc attenuation in HU (nucleus; default 75, annulus 25 more): e.g. 10 for
    /// desiccated discs, 250 for calcified ones.
    #[arg(long, allow_hyphen_values = true)]
    pub ct_disc_hu: Option<f64>,
    /// CT with positive oral contrast in the colon beside the lumbar spine (dense lateral
    /// pieces that are not ribs).
    #[arg(long)]
    pub ct_bowel_contrast: bool,
    /// CT scoliosis: the lumbar bodies' sideways offset peaks at this many mm.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub ct_scoliosis_mm: f64,
    /// CT patient this many mm to the side of the field of view's centre.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub ct_shift_mm: f64,
    /// CT with pedicle screws (and their streak artefacts) in these vertebrae, e.g. L2,L3
    /// (T12 and L1-L6).
    #[arg(long, value_delimiter = ',', value_parser = ["T12", "L1", "L2", "L3", "L4", "L5", "L6"])]
    pub ct_metal: Vec<String>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also write PNG previews into each study folder.
    #[arg(long)]
    pub preview: bool,
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT"))?;
    let n = |v: &str| v.trim().parse::<usize>().map_err(|e| format!("{v:?}: {e}"));
    Ok((n(w)?, n(h)?))
}

fn parse_balance(s: &str) -> Result<[f64; 3], String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>().map_err(|e| format!("{p:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let sum: f64 = v.iter().sum();
    if v.len() != 3 || v.iter().any(|p| *p < 0.0) || sum <= 0.0 {
        return Err("three non-negative shares, e.g. 0.36,0.36,0.28".into());
    }
    Ok([v[0] / sum, v[1] / sum, v[2] / sum])
}

/// Write the studies and report the rate.
pub fn run(a: SynthArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (0.5..=5.0).contains(&a.ct_slice_mm),
        "--ct-slice-mm must be between 0.5 and 5"
    );
    let mut opts = SynthOptions::new(a.out, a.studies, a.modality);
    opts.seed = a.seed;
    opts.size = a.size;
    opts.syntax = a.transfer_syntax;
    opts.balance = a.balance;
    opts.ct_body_part = a.ct_body_part;
    opts.ct_slice_mm = a.ct_slice_mm;
    opts.ct_variant = osteoscreen::synth::ct::CtVariant {
        ribs: !a.ct_no_ribs,
        noise_hu: a.ct_noise_hu,
        lumbar: a.ct_lumbar as usize,
        disc_hu: a.ct_disc_hu,
        bowel_contrast: a.ct_bowel_contrast,
        scoliosis_mm: a.ct_scoliosis_mm,
        shift_mm: a.ct_shift_mm,
        metal: a
            .ct_metal
            .iter()
            .fold(0u8, |bits, level| bits | 1 << vertebra_index(level)),
    };
    opts.preview = a.preview;
    if let Some(t) = a.threads {
        opts.threads = t.max(1);
    }
    let started = std::time::Instant::now();
    let rows = tokio::task::block_in_place(|| generate(&opts))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
            "wrote {} synthetic {:?} studies to {} in {secs:.1} s ({:.2} studies/s); truth in manifest.csv",
            rows.len(),
            opts.modality,
            opts.out.display(),
            rows.len() as f64 / secs
        );
    Ok(ExitCode::SUCCESS)
}

/// The phantom's index of a level clap has already checked: T12 is 0, Ln is n.
fn vertebra_index(level: &str) -> u8 {
    level
        .strip_prefix('L')
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
