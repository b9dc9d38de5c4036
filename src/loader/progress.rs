//! Progress bars for long loads and long jobs: on stderr, only when wanted and stdout is a
//! terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar (of bytes, or of items with [`LoadProgress::counting`]) that may be invisible.
pub struct LoadProgress {
    bar: ProgressBar,
}

impl LoadProgress {
    /// `show`: the caller's wish (`--quiet` turns it off); also hidden when stdout is not a tty.
    pub fn new(total_bytes: u64, label: &str, show: bool) -> Self {
        Self::styled(
            total_bytes,
            label,
            show,
            "{msg} [{bar:40.cyan/blue}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
    }

    /// The same bar counting items (prompts, files) instead of bytes.
    pub fn counting(total: u64, label: &str, show: bool) -> Self {
        Self::styled(
            total,
            label,
            show,
            "{msg} [{bar:40.cyan/blue}] {pos}/{len} ({eta})",
        )
    }

    fn styled(total: u64, label: &str, show: bool, template: &str) -> Self {
        let visible = show && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let bar = if visible {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(label.to_string());
        Self { bar }
    }

    pub fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
