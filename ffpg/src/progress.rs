//! Progress for long runs: a bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A task's progress towards a known total.
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    next_line_at: u64,
}

impl Progress {
    /// Start reporting `label` towards `total` units.
    pub fn new(label: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} ({per_sec}, {eta})")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(label.to_owned());
            bar
        });
        if bar.is_none() {
            eprintln!("{label}: 0/{total}");
        }
        Self {
            bar,
            label: label.to_owned(),
            total,
            next_line_at: total / 4,
        }
    }

    /// Set the units done so far.
    pub fn set(&mut self, done: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None if done >= self.next_line_at && done < self.total => {
                eprintln!("{}: {done}/{}", self.label, self.total);
                self.next_line_at = done + self.total / 4;
            }
            None => {}
        }
    }

    /// Done.
    pub fn finish(self) {
        match self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => eprintln!("{}: {}/{} done", self.label, self.total, self.total),
        }
    }
}
