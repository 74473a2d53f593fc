//! Progress bars (indicatif) on standard error; hidden when it is not a terminal, where
//! the per-epoch lines are what a log keeps.

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix.to_string());
    bar
}
