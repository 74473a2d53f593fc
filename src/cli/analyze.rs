//! `osteoscreen analyze`: the files of one or more studies through the engine, one study at
//! a time; each Finding printed and, with `--out`, each study's SR and key image written.
//! Many studies are read as the daemon reads a site's: adapted to them after the first
//! `[model] site_adaptation_images` radiographs (`analysis::site_adapt`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use osteoscreen::analysis::finding::{Finding, Status};
use osteoscreen::analysis::header::{read_headers, InstanceInfo};
use osteoscreen::analysis::site_adapt::SiteAdaptation;
use osteoscreen::analysis::{analyze_instances, Engine};
use osteoscreen::config::Settings;
use osteoscreen::dicom::files::collect_files;
use osteoscreen::report::{write_reports, Source};

pub fn run(
    paths: &[PathBuf],
    json: bool,
    out: Option<&Path>,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let files = collect_files(paths).context("cannot list input files")?;
    let mut engine = Engine::load(
        settings.analysis.clone(),
        settings.selection.clone(),
        &settings.model,
    )
    .context("cannot load the X-ray model ([model] settings)")?;
    // Several studies are read as the daemon would read them arriving in this order: with
    // `[model] site_adaptation`, adapted after the first radiographs (in a scratch folder,
    // not kept: the daemon's own adaptation is its storage dir's).
    let scratch = tempfile::tempdir().context("cannot make a scratch folder")?;
    engine.adaptation = SiteAdaptation::configured(&settings.model, &engine.xray, scratch.path())?;
    let (headers, skipped) = read_headers(&files);
    let mut findings: Vec<Finding> = Vec::new();
    // Files that are not DICOM are counted in the first study's Finding.
    for (k, study) in by_study(headers).into_iter().enumerate() {
        let files: Vec<PathBuf> = study.iter().map(|i| i.path.clone()).collect();
        let skipped = if k == 0 { skipped } else { 0 };
        let started = Instant::now();
        let reading = model_sha(&engine);
        let finding =
            tokio::task::block_in_place(|| analyze_instances(study, skipped, started, &engine));
        if model_sha(&engine) != reading {
            eprintln!(
                "the X-ray model was adapted to the radiographs read so far ([model] site_adaptation); the studies after this one are read with it"
            );
        }
        let analysed = finding.status == Status::Analysed;
        if let Some(dir) = out.filter(|_| analysed || settings.output.report_not_analysed) {
            let source = Source::read(&files, &finding.instances_used)?;
            for path in write_reports(&finding, &source, &settings.output, dir)? {
                eprintln!("wrote {}", path.display());
            }
        }
        if !json {
            println!("{}", finding.summary());
        }
        findings.push(finding);
    }
    if json {
        // One study keeps its plain object; several make an array, in input order.
        let text = match findings.as_slice() {
            [one] => serde_json::to_string_pretty(one)?,
            many => serde_json::to_string_pretty(many)?,
        };
        println!("{text}");
    }
    let all = findings.iter().all(|f| f.status == Status::Analysed);
    Ok(super::exit_code(all))
}

/// The sha256 of the weights studies are read with now.
fn model_sha(engine: &Engine) -> Option<String> {
    engine.xray.get().map(|m| m.card.weights_sha256.clone())
}

/// The headers grouped by StudyInstanceUID, studies in the order their first file came;
/// one empty group when no file is DICOM (its Finding then says why).
fn by_study(headers: Vec<InstanceInfo>) -> Vec<Vec<InstanceInfo>> {
    let mut groups: Vec<Vec<InstanceInfo>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for h in headers {
        let k = *index.entry(h.study_uid.clone()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[k].push(h);
    }
    if groups.is_empty() {
        groups.push(Vec::new());
    }
    groups
}
