//! The `osteoscreen` command line: parse arguments, load settings, hand each subcommand
//! to its function in `cli/`.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use osteoscreen::config::Settings;

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
    /// Run the daemon: DICOM C-ECHO / C-STORE SCP and STOW-RS in, durable queue, study
    /// assembly, analysis, delivery; /healthz, /readyz and /metrics on the HTTP listener.
    Serve,
    /// Send a C-ECHO to a DICOM node and report its status.
    Echo(cli::link::PeerArgs),
    /// C-STORE files or directories (recursively) to a DICOM node, each in its own
    /// transfer syntax; prints a status per file and a summary.
    Send {
        #[command(flatten)]
        peer: cli::link::PeerArgs,
        /// DICOM Part 10 files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Validate the settings and print the effective values (secrets masked).
    CheckConfig,
    /// The work queue in `[storage] dir`: list (default), show STUDY, retry, purge.
    Queue {
        #[command(subcommand)]
        action: Option<cli::queue::QueueAction>,
    },
    /// Analyse the files of one or more studies (files or folders), study by study, and
    /// print each Finding (`--json`: one object, or an array for several studies); exits 1
    /// when a study could not be analysed, each saying why. CT: trabecular attenuation per
    /// level; lumbar radiographs: the X-ray model named in `[model] weights`.
    Analyze {
        /// DICOM files or folders (recursive); their studies are told apart by
        /// StudyInstanceUID.
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
    Synth(cli::synth::SynthArgs),
    /// Train the X-ray model on a dataset (LUMOS, tabular DXA with images, manifest CSV,
    /// synth output): patient-level split, augmentation, AdamW, early stopping,
    /// checkpoints and --resume; writes .safetensors + model card.
    Train(Box<cli::train::TrainArgs>),
    /// Measure an X-ray model on a dataset, per study: accuracy, macro-F1, sensitivity and
    /// specificity, one-vs-rest AUCs, T-score MAE and r, confusion matrix; JSON and plots.
    Eval(cli::eval::EvalArgs),
    /// Fit the card's covariate model on labelled studies: the radiographs' class
    /// probabilities and T-score combined with the patient's age (from the header, else the
    /// dataset's clinical record); cross-validated against the radiographs alone; written
    /// into the model card when the age helps (`[model] covariates` uses it).
    Calibrate(cli::calibrate::CalibrateArgs),
    /// Fit the card's read-out on labelled studies of a look the weights did not learn:
    /// the network's T-score mapped onto the reported T-score and class probabilities
    /// (proportional odds at the WHO cut-offs); cross-validated against the network's own
    /// classes; written into the model card.
    Readout(cli::readout::ReadoutArgs),
    /// Fit the card's polarity probe: each radiograph read as its header says and with its
    /// grey levels inverted, so that a study whose pixels were inverted without its
    /// Photometric Interpretation (a converter's bug) is read the right way round; held
    /// out set by set; written into the model card.
    Polarity(cli::polarity::PolarityArgs),
    /// Adapt an X-ray model to a site: its batch-norm statistics re-estimated on the
    /// site's own unlabelled radiographs (AdaBN); weights and heads as trained. Writes a
    /// new model (weights + card) for `[model] weights`.
    Adapt(cli::adapt::AdaptArgs),
    /// Average networks fine-tuned from one start (`train --init`) into one network (a
    /// "model soup"), at one network's cost; measured beside each member on held-out
    /// studies. Writes weights + card.
    Average(cli::average::AverageArgs),
    /// Fit a clinical risk model (sex, age, weight, height, BMI, menopause) on a tabular
    /// DXA dataset, compare it with OST on held-out rows; `[analysis] risk_model` uses it.
    TrainRisk(cli::train_risk::TrainRiskArgs),
}

fn main() -> ExitCode {
    let Cli { config, command } = Cli::parse();
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("osteoscreen: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig = command {
        return cli::check_config(&settings);
    }
    osteoscreen::ops::logging::init(&settings.log);
    if let Command::Serve = command {
        osteoscreen::ops::limit_malloc_arenas();
    }
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
    match runtime.block_on(run(command, settings, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("osteoscreen: {}", osteoscreen::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// One subcommand, inside the runtime.
async fn run(
    command: Command,
    settings: Settings,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => cli::serve(settings, config).await,
        Command::Echo(peer) => cli::link::echo(&peer, &settings).await,
        Command::Send { peer, paths } => cli::link::send(&peer, &paths, &settings).await,
        Command::CheckConfig => Ok(cli::check_config(&settings)),
        Command::Queue { action } => cli::queue::run(action, &settings),
        Command::Analyze { paths, json, out } => {
            cli::analyze::run(&paths, json, out.as_deref(), &settings)
        }
        Command::Synth(args) => cli::synth::run(args),
        Command::Train(args) => tokio::task::block_in_place(|| cli::train::run(*args)),
        Command::Eval(args) => tokio::task::block_in_place(|| cli::eval::run(args)),
        Command::Calibrate(args) => tokio::task::block_in_place(|| cli::calibrate::run(args)),
        Command::Readout(args) => tokio::task::block_in_place(|| cli::readout::run(args)),
        Command::Polarity(args) => tokio::task::block_in_place(|| cli::polarity::run(args)),
        Command::Adapt(args) => tokio::task::block_in_place(|| cli::adapt::run(args)),
        Command::Average(args) => tokio::task::block_in_place(|| cli::average::run(args)),
        Command::TrainRisk(args) => cli::train_risk::run(args),
    }
}
