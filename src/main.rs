//! The `osteoscreen` command line: parse arguments, load settings, call into the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use osteoscreen::config::Settings;
use osteoscreen::dimse::scu::{self, Peer};

/// Screens lumbar X-ray and CT studies for osteoporosis, as a DICOM node beside the PACS.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Settings file (TOML). Default: config/osteoscreen.toml if present, else built-in
    /// defaults. Any setting can be overridden by OSTEOSCREEN__<SECTION>__<KEY>.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: DICOM C-ECHO / C-STORE SCP, durable queue, study assembly.
    Serve,
    /// Send a C-ECHO to a DICOM node and report its status.
    Echo(PeerArgs),
    /// C-STORE files or directories (recursively) to a DICOM node, each in its own
    /// transfer syntax; prints a status per file and a summary.
    Send {
        #[command(flatten)]
        peer: PeerArgs,
        /// DICOM Part 10 files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Validate the settings and print the effective values (secrets masked).
    CheckConfig,
    /// List jobs (studies queued for analysis) and instance counts from `[storage] dir`.
    Queue,
    /// Analyse the files of one study (files or folders) and print the Finding; exits 1
    /// with the reason when nothing is analysable. CT: trabecular attenuation per level;
    /// lumbar radiographs: the X-ray model named in `[model] weights`.
    Analyze {
        /// DICOM files or folders (recursive) of one study.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the Finding as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the DICOM objects it would send (the SR, per `[output]`) into DIR.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Generate synthetic lumbar studies with known truth (DICOM files + manifest.csv).
    Synth(SynthArgs),
}

#[derive(Args)]
struct SynthArgs {
    /// Output folder: one sub-folder per study, plus manifest.csv.
    #[arg(long)]
    out: PathBuf,
    /// Number of studies.
    #[arg(long, default_value_t = 10)]
    studies: usize,
    /// dx / cr: AP + lateral radiographs; ct: an axial abdominal volume.
    #[arg(long, value_enum)]
    modality: osteoscreen::synth::SynthModality,
    /// Same seed, same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Radiograph size in pixels, WIDTHxHEIGHT.
    #[arg(long, default_value = "2048x2560", value_parser = parse_size)]
    size: (usize, usize),
    /// Transfer syntax of the files written.
    #[arg(long, value_enum, default_value = "explicit")]
    transfer_syntax: osteoscreen::synth::dicom::SynthSyntax,
    /// Class shares normal,osteopenia,osteoporosis (default LUMOS-like 0.36,0.36,0.28).
    #[arg(long, default_value = "0.36,0.36,0.28", value_parser = parse_balance)]
    balance: [f64; 3],
    /// CT BodyPartExamined: ABDOMEN or LSPINE.
    #[arg(long, default_value = "ABDOMEN", value_parser = ["ABDOMEN", "LSPINE"])]
    ct_body_part: String,
    /// CT slice thickness and spacing in mm (1 to 3).
    #[arg(long, default_value_t = 2.0)]
    ct_slice_mm: f64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Also write PNG previews into each study folder.
    #[arg(long)]
    preview: bool,
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

#[derive(Args)]
struct PeerArgs {
    /// Host name or IP address of the remote node.
    #[arg(long)]
    host: String,
    /// TCP port of the remote node.
    #[arg(long)]
    port: u16,
    /// The remote node's AE title.
    #[arg(long, value_name = "AE")]
    called_ae: String,
    /// Our AE title (default: [dicom] ae_title).
    #[arg(long, value_name = "AE")]
    calling_ae: Option<String>,
    /// Seconds to wait for connection and each response.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

impl PeerArgs {
    fn peer(&self, settings: &Settings) -> Peer {
        Peer {
            host: self.host.clone(),
            port: self.port,
            called_ae: self.called_ae.clone(),
            calling_ae: self
                .calling_ae
                .clone()
                .unwrap_or_else(|| settings.dicom.ae_title.clone()),
            max_pdu_length: settings.dicom.max_pdu_length,
            timeout: Duration::from_secs(self.timeout),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("osteoscreen: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig = cli.command {
        print!("{}", settings.to_masked_toml());
        eprintln!("settings are valid");
        return ExitCode::SUCCESS;
    }
    osteoscreen::ops::logging::init(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("osteoscreen: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("osteoscreen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => {
            osteoscreen::daemon::serve(settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Echo(args) => {
            let status = scu::echo(&args.peer(&settings)).await?;
            println!(
                "C-ECHO {}:{} {}: {status}",
                args.host, args.port, args.called_ae
            );
            Ok(if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Send { peer, paths } => {
            let files = scu::collect_files(&paths).context("cannot list input files")?;
            let outcomes = scu::send_files(&peer.peer(&settings), &files).await?;
            let mut failed = 0;
            for o in &outcomes {
                match &o.result {
                    Ok((status, comment)) if o.stored() => {
                        let note = comment.as_deref().unwrap_or("");
                        println!("OK      {} {status} {note}", o.path.display());
                    }
                    Ok((status, comment)) => {
                        failed += 1;
                        let note = comment.as_deref().unwrap_or("");
                        println!("FAILED  {} {status} {note}", o.path.display());
                    }
                    Err(reason) => {
                        failed += 1;
                        println!("FAILED  {}: {reason}", o.path.display());
                    }
                }
            }
            println!(
                "sent {} of {} files, {failed} failed",
                outcomes.len() - failed,
                outcomes.len()
            );
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Queue => {
            let path = osteoscreen::store::Store::path_in(&settings.storage.dir);
            anyhow::ensure!(
                path.exists(),
                "no database at {} (has the daemon run with this [storage] dir?)",
                path.display()
            );
            let store = osteoscreen::store::Store::open(&path)?;
            let jobs = store.jobs()?;
            println!(
                "{:>6}  {:<10}  {:>7}  {:>9}  {:<19}  study",
                "job", "state", "version", "instances", "queued at (UTC)"
            );
            for j in &jobs {
                println!(
                    "{:>6}  {:<10}  {:>7}  {:>9}  {:<19}  {}",
                    j.id,
                    j.state,
                    j.version,
                    j.instance_count,
                    format_utc(j.created_ms),
                    j.study_uid
                );
            }
            println!("{} jobs", jobs.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Analyze { paths, json, out } => {
            let files = scu::collect_files(&paths).context("cannot list input files")?;
            let engine = osteoscreen::analysis::Engine::load(
                settings.analysis.thresholds(),
                settings.selection.clone(),
                &settings.model,
            )
            .context("cannot load the X-ray model ([model] settings)")?;
            let finding =
                tokio::task::block_in_place(|| osteoscreen::analysis::analyze(&files, &engine));
            let analysed = finding.status == osteoscreen::analysis::finding::Status::Analysed;
            let written = match &out {
                Some(dir) if analysed || settings.output.report_not_analysed => {
                    let source =
                        osteoscreen::report::Source::read(&files, &finding.instances_used)?;
                    osteoscreen::report::write_reports(&finding, &source, &settings.output, dir)?
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
            Ok(
                if finding.status == osteoscreen::analysis::finding::Status::Analysed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                },
            )
        }
        Command::Synth(a) => {
            use osteoscreen::synth::{generate, SynthOptions};
            anyhow::ensure!(
                (1.0..=3.0).contains(&a.ct_slice_mm),
                "--ct-slice-mm must be between 1 and 3"
            );
            let mut opts = SynthOptions::new(a.out, a.studies, a.modality);
            opts.seed = a.seed;
            opts.size = a.size;
            opts.syntax = a.transfer_syntax;
            opts.balance = a.balance;
            opts.ct_body_part = a.ct_body_part;
            opts.ct_slice_mm = a.ct_slice_mm;
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
        Command::CheckConfig => unreachable!("handled before the runtime starts"),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for a Unix time in milliseconds.
fn format_utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}
