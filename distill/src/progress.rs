//! What a run prints while it trains: a progress bar per epoch on a terminal (samples/s,
//! loss, ETA), plain lines otherwise, or nothing.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// What a run prints while it trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines when it is not.
    Auto,
    /// Plain lines on stderr, about ten an epoch, even on a terminal.
    Plain,
    /// No bar, no progress lines, no [`say`] messages.
    Quiet,
}

/// One epoch's display.
pub struct EpochProgress {
    bar: Option<ProgressBar>,
    plain: bool,
    label: String,
    total: usize,
    done: usize,
    next_line: usize,
    start: Instant,
}

impl EpochProgress {
    /// The display of an epoch of `total_samples` examples, each line or bar prefixed `label`.
    pub fn new(mode: ProgressMode, label: String, total_samples: usize) -> EpochProgress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (mode == ProgressMode::Auto && terminal).then(|| {
            let bar = ProgressBar::new(total_samples as u64);
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {per_sec} loss {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.clone());
            bar
        });
        let plain = mode == ProgressMode::Plain || (mode == ProgressMode::Auto && !terminal);
        EpochProgress {
            bar,
            plain,
            label,
            total: total_samples,
            done: 0,
            next_line: 0,
            start: Instant::now(),
        }
    }

    /// `samples` more done; `loss` is the mean over the samples since the last call.
    pub fn advance(&mut self, samples: usize, loss: f64) {
        self.done += samples;
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{loss:.4}"));
            bar.set_position(self.done as u64);
        } else if self.plain && self.done >= self.next_line {
            // Ten lines an epoch, so that a log stays readable.
            self.next_line = self.done + self.total.div_ceil(10).max(1);
            let secs = self.start.elapsed().as_secs_f64();
            let rate = self.done as f64 / secs.max(1e-9);
            let eta = (self.total - self.done.min(self.total)) as f64 / rate.max(1e-9);
            eprintln!(
                "{} {:>6}/{} {:>8.0} samples/s  loss {:.4}  ETA {:.0}s",
                self.label, self.done, self.total, rate, loss, eta
            );
        }
    }

    /// Ends the epoch's display; a bar is cleared, since the epoch's line follows.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A line for the user (skipped when quiet).
pub fn say(mode: ProgressMode, line: &str) {
    if mode != ProgressMode::Quiet {
        eprintln!("{line}");
    }
}
