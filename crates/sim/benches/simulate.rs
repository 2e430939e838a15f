//! Simulator throughput: a program, run by `scripts/bench-simulate.sh`.
//!
//! ```text
//! simulate SCENARIO SCALE DIR [THREADS]   simulate as Parquet into DIR, print figures
//! ```

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_bytes(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() < 3 {
        eprintln!("usage: simulate SCENARIO SCALE DIR [THREADS] (see scripts/bench-simulate.sh)");
        return;
    }
    let scenario = dg_sim::Scenario::load(&args[0]).expect("scenario");
    let scale: f64 = args[1].parse().expect("SCALE");
    let dir = Path::new(&args[2]);
    let threads = args
        .get(3)
        .map(|t| t.parse().expect("THREADS"))
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        });
    let _ = std::fs::remove_dir_all(dir);
    let seed = scenario.seed;
    let start = Instant::now();
    let report = dg_sim::simulate(
        scenario,
        scale,
        seed,
        dir,
        dg_sim::OutFormat::Parquet,
        threads,
        &AtomicU64::new(0),
    )
    .expect("simulation");
    let secs = start.elapsed().as_secs_f64();
    let bytes = dir_bytes(dir);
    println!(
        "{} x{scale}: {} accounts, {} exchanges in {secs:.1} s on {threads} threads = {:.0} exchanges/s, {:.1} MB/s of Parquet ({:.2} GB), peak RSS {} MiB",
        report.scenario,
        report.accounts,
        report.exchanges,
        report.exchanges as f64 / secs,
        bytes as f64 / 1e6 / secs,
        bytes as f64 / 1e9,
        peak_rss_mib()
    );
}
