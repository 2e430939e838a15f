//! `distillguard simulate`: write a seeded scenario with ground truth.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dg_sim::{OutFormat, Scenario};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{SimFormat, SimulateArgs};
use crate::fmt::count;

/// Files and folders the simulator writes, removed first with --force.
const OUTPUTS: &[&str] = &[
    "exchanges",
    "accounts.parquet",
    "accounts.jsonl",
    "model_releases.parquet",
    "model_releases.jsonl",
    "labels.parquet",
    "labels.jsonl",
    "truth.csv",
];

fn prepare(dir: &Path, force: bool) -> anyhow::Result<()> {
    let non_empty = std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if non_empty && !force {
        bail!(
            "{}: directory is not empty; use --force to replace the simulator's files in it",
            dir.display()
        );
    }
    for name in OUTPUTS {
        let p = dir.join(name);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
        } else if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

pub async fn run(a: SimulateArgs) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&a.scenario)?;
    if !(a.scale > 0.0 && a.scale.is_finite()) {
        bail!("--scale must be a positive number, got {}", a.scale);
    }
    prepare(&a.out, a.force)?;
    let seed = a.seed.unwrap_or(scenario.seed);
    let planned: u64 = dg_sim::planned(&scenario, a.scale, seed)
        .values()
        .map(|v| v.1)
        .sum();
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let format = match a.format {
        SimFormat::Parquet => OutFormat::Parquet,
        SimFormat::Jsonl => OutFormat::Jsonl,
    };
    let progress = Arc::new(AtomicU64::new(0));
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(planned);
        b.set_style(
            ProgressStyle::with_template("{spinner} simulating {human_pos}/{human_len} exchanges [{wide_bar}] {per_sec}, {eta} left")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b
    });
    let started = Instant::now();
    let (out, p) = (a.out.clone(), progress.clone());
    let worker = tokio::task::spawn_blocking(move || {
        dg_sim::simulate(scenario, a.scale, seed, &out, format, threads, &p)
    });
    let report = loop {
        if worker.is_finished() {
            break worker.await.context("simulator thread")??;
        }
        if let Some(b) = &bar {
            b.set_position(progress.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let secs = started.elapsed().as_secs_f64();
    crate::say!(
        "simulated {} (seed {seed}, scale {}) into {} in {secs:.1} s: {} accounts, {} exchanges in {} parts ({:.0} exchanges/s)",
        report.scenario,
        report.scale,
        a.out.display(),
        count(report.accounts),
        count(report.exchanges),
        report.parts,
        report.exchanges as f64 / secs.max(1e-9)
    );
    crate::say!("{:<16} {:>10} {:>12}", "class", "accounts", "exchanges");
    for (class, (accts, ex)) in &report.classes {
        crate::say!("{class:<16} {:>10} {:>12}", count(*accts), count(*ex));
    }
    for (id, (accts, ex)) in &report.campaigns {
        crate::say!(
            "campaign {id:<24} {:>8} accounts {:>12} exchanges",
            count(*accts),
            count(*ex)
        );
    }
    Ok(ExitCode::SUCCESS)
}
