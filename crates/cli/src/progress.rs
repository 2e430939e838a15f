//! A progress bar on stderr for long reads, shown only when stderr is a terminal.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use dg_contract::Diagnostics;
use indicatif::{ProgressBar, ProgressStyle};

/// Shows bytes read against the total while alive.
pub struct ReadProgress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl ReadProgress {
    pub fn start(diag: Arc<Diagnostics>, total_bytes: u64) -> Self {
        if !std::io::stderr().is_terminal() || total_bytes == 0 {
            return ReadProgress {
                bar: None,
                ticker: None,
            };
        }
        let bar = ProgressBar::new(total_bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} reading {bytes}/{total_bytes} [{wide_bar}] {bytes_per_sec}, {eta} left",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                b.set_position(diag.bytes_read().min(total_bytes));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        ReadProgress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }
}

impl Drop for ReadProgress {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// One line per finished stage with its time, and a spinner for the running one, on a
/// terminal only (long runs spend minutes in a stage without other output).
pub struct StageProgress {
    bar: Option<ProgressBar>,
    current: Option<(String, std::time::Instant)>,
}

impl StageProgress {
    pub fn new() -> Self {
        StageProgress {
            bar: None,
            current: None,
        }
    }

    /// Ends the running stage (if any) and starts `name`; `spinner` false leaves the terminal
    /// to another bar (the read progress of the first stage).
    pub fn stage(&mut self, name: &str, spinner: bool) {
        self.finish();
        if !std::io::stderr().is_terminal() {
            return;
        }
        if spinner {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("valid template"),
            );
            bar.set_message(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bar = Some(bar);
        }
        self.current = Some((name.to_string(), std::time::Instant::now()));
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if let Some((name, t)) = self.current.take() {
            eprintln!("done: {name} in {:.1} s", t.elapsed().as_secs_f64());
        }
    }
}

impl Drop for StageProgress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
