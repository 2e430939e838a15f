//! The distillguard traffic simulator: a seeded world of benign customers (hard negatives
//! included) and distillation campaigns, written in the data contract with ground truth.
//!
//! No public data set of distillation attacks exists; this is the benchmark the detector
//! is measured on. Same scenario, scale and seed give byte-identical output.
//!
//! **Architecture invariant:** the simulator only *writes* the contract; detection crates
//! never depend on it (tests and benchmarks do), so nothing it knows can leak into a
//! verdict.

pub mod infra;
pub mod rng;
pub mod scenario;
pub mod text;
pub mod traffic;
mod vocab;
pub mod world;
pub mod wrappers;
pub mod write;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;

pub use scenario::{Scenario, ScenarioError};
pub use world::{Class, World};
pub use write::{OutFormat, WriteError};

/// What a simulation produced.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SimReport {
    pub scenario: String,
    pub seed: u64,
    pub scale: f64,
    /// Accounts and exchanges per truth class (benign class or archetype).
    pub classes: BTreeMap<String, (u64, u64)>,
    /// Accounts and exchanges per campaign id.
    pub campaigns: BTreeMap<String, (u64, u64)>,
    pub accounts: u64,
    pub exchanges: u64,
    pub parts: usize,
}

/// Simulates `scenario` at `scale` with `seed` into `dir`.
pub fn simulate(
    scenario: Scenario,
    scale: f64,
    seed: u64,
    dir: &Path,
    format: OutFormat,
    threads: usize,
    progress: &AtomicU64,
) -> Result<SimReport, WriteError> {
    std::fs::create_dir_all(dir).map_err(|source| WriteError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let world = World::build(scenario, scale, seed);
    let counts = write::write_exchanges(&world, dir, format, threads, progress)?;
    write::write_tables(&world, dir, format)?;
    let mut report = SimReport {
        scenario: world.scenario.name.clone(),
        seed,
        scale,
        parts: write::parts(&world).len(),
        ..SimReport::default()
    };
    for (a, n) in world.accounts.iter().zip(&counts) {
        let e = report
            .classes
            .entry(a.class.name(&world.scenario).to_string())
            .or_default();
        e.0 += 1;
        e.1 += n;
        if let Some(c) = world.campaign(a.class) {
            let e = report.campaigns.entry(c.spec.id.clone()).or_default();
            e.0 += 1;
            e.1 += n;
        }
        report.accounts += 1;
        report.exchanges += n;
    }
    Ok(report)
}

/// Expected accounts and exchanges per class of a scenario at a scale (before generation
/// effects such as daily caps), for checking proportions.
pub fn planned(scenario: &Scenario, scale: f64, seed: u64) -> BTreeMap<String, (u64, u64)> {
    let world = World::build(scenario.clone(), scale, seed);
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for a in &world.accounts {
        let e = out
            .entry(a.class.name(&world.scenario).to_string())
            .or_default();
        e.0 += 1;
        e.1 += a.exchanges;
    }
    out
}
