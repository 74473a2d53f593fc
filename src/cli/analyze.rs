//! `osteoscreen analyze`: one study's files through the engine; the Finding printed and,
//! with `--out`, the SR and key image written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use osteoscreen::analysis::finding::Status;
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
    let finding = tokio::task::block_in_place(|| analyze(&files, &engine));
    let analysed = finding.status == Status::Analysed;
    let written = match out {
        Some(dir) if analysed || settings.output.report_not_analysed => {
            let source = Source::read(&files, &finding.instances_used)?;
            write_reports(&finding, &source, &settings.output, dir)?
        }
        _ => Vec::new(),
    };
    for path in &written {
        eprintln!("wrote {}", path.display());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&finding)?);
    } else {
        println!("{}", finding.summary());
    }
    Ok(super::exit_code(analysed))
}
