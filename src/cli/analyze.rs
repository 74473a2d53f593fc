//! `osteoscreen analyze`: the files of one or more studies through the engine, one study at
//! a time; each Finding printed and, with `--out`, each study's SR and key image written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use osteoscreen::analysis::finding::{Finding, Status};
use osteoscreen::analysis::header::read_headers;
use osteoscreen::analysis::{analyze, Engine};
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
    let engine = Engine::load(
        settings.analysis.clone(),
        settings.selection.clone(),
        &settings.model,
    )
    .context("cannot load the X-ray model ([model] settings)")?;
    let studies = by_study(&files);
    let mut findings: Vec<Finding> = Vec::new();
    for files in &studies {
        let finding = tokio::task::block_in_place(|| analyze(files, &engine));
        let analysed = finding.status == Status::Analysed;
        if let Some(dir) = out.filter(|_| analysed || settings.output.report_not_analysed) {
            let source = Source::read(files, &finding.instances_used)?;
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

/// The files grouped by StudyInstanceUID, studies in the order their first file came.
/// Files without a readable header go with the first study, whose Finding counts them;
/// with no readable study at all, every file is one group (and its Finding says why).
fn by_study(files: &[PathBuf]) -> Vec<Vec<PathBuf>> {
    let (headers, _) = read_headers(files);
    let study_of: BTreeMap<&Path, &str> = headers
        .iter()
        .map(|h| (h.path.as_path(), h.study_uid.as_str()))
        .collect();
    let mut order: Vec<&str> = Vec::new();
    let mut groups: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    let mut unread = Vec::new();
    for f in files {
        match study_of.get(f.as_path()) {
            Some(uid) => {
                if !groups.contains_key(uid) {
                    order.push(uid);
                }
                groups.entry(uid).or_default().push(f.clone());
            }
            None => unread.push(f.clone()),
        }
    }
    let mut out: Vec<Vec<PathBuf>> = order
        .iter()
        .map(|uid| groups.remove(uid).unwrap_or_default())
        .collect();
    match out.first_mut() {
        Some(first) => first.extend(unread),
        None => out.push(unread),
    }
    out
}
