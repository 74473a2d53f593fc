//! Which labelled studies a model command runs on (`eval`, `calibrate`): a dataset in any
//! layout `train` reads, all of it or one part of the card's seeded split.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use osteoscreen::model::framing::Framing;
use osteoscreen::model::XrayModel;
use osteoscreen::train::data::{self, ColumnOverrides, Dataset};
use osteoscreen::train::split::split;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Every labelled image of the dataset.
    All,
    /// The held-out test patients of `train`'s split (same --seed and fractions).
    Test,
    /// The validation patients of that split.
    Val,
}

/// Which labelled studies to run on: `eval` and `calibrate` share these.
#[derive(Args)]
pub struct DataArgs {
    /// Dataset (any layout `train` reads).
    #[arg(long)]
    pub data: PathBuf,
    /// Which images: all, or the test / validation part of the seeded split.
    #[arg(long, value_enum, default_value = "all")]
    pub split: Part,
    /// Split seed (default: the card's).
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value_t = 0.15)]
    pub val_fraction: f64,
    #[arg(long, default_value_t = 0.15)]
    pub test_fraction: f64,
    #[arg(long = "column", value_name = "ROLE=HEADER")]
    pub columns: Vec<String>,
}

impl DataArgs {
    pub fn split_name(&self) -> &'static str {
        match self.split {
            Part::All => "all",
            Part::Test => "test",
            Part::Val => "validation",
        }
    }

    /// The dataset and the indices of the chosen part.
    pub fn pick(&self, model: &XrayModel) -> anyhow::Result<(Dataset, Vec<usize>)> {
        let mut dataset = data::open(&self.data, &ColumnOverrides::parse(&self.columns)?)?;
        eprintln!("{}", dataset.summary());
        frontal_only(&mut dataset, model.input().framing, "");
        let idx: Vec<usize> = match self.split {
            Part::All => (0..dataset.samples.len()).collect(),
            Part::Test | Part::Val => {
                let seed = self.seed.or_else(|| card_seed(model)).unwrap_or(1);
                let s = split(
                    &dataset.samples,
                    self.val_fraction,
                    self.test_fraction,
                    seed,
                );
                if self.split == Part::Test {
                    s.test
                } else {
                    s.val
                }
            }
        };
        if idx.is_empty() {
            anyhow::bail!("no labelled images to evaluate");
        }
        Ok((dataset, idx))
    }
}

/// Leave out the images a model of `framing` does not read, before any split is drawn
/// (as `train` did), and say how many; `what` names the set in the message.
pub fn frontal_only(dataset: &mut Dataset, framing: Framing, what: &str) {
    let dropped = dataset.keep_framed(framing);
    if dropped > 0 {
        eprintln!(
            "{what}{dropped} lateral images left out: the model reads frontal views ({framing:?} framing)"
        );
    }
}

fn card_seed(model: &XrayModel) -> Option<u64> {
    model.card.training.as_ref()?.get("split_seed")?.as_u64()
}
