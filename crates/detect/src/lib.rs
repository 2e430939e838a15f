//! Batch detection of distillation campaigns.
//!
//! Per-exchange features are a DataFusion scalar UDF ([`features`]); per-account state is a
//! DataFusion aggregate with mergeable, serialisable partial states ([`profile`]). Everything
//! after that works on account-level state only: traits per account ([`traits`]), links
//! between accounts weighed by how rare the shared value is ([`link`]), and verdicts scored at
//! cluster level with the evidence for each ([`verdict`]). [`analyze`] runs the pipeline;
//! [`eval`] scores a result against ground truth.
//!
//! **Architecture invariant:** detection never reads the `labels` table; all weights and
//! thresholds live in [`config::Config`].

pub mod analyze;
pub mod config;
pub mod eval;
pub mod features;
pub mod hash;
pub mod link;
pub mod profile;
pub mod sharing;
pub mod sketch;
pub mod tee;
pub mod traits;
pub mod verdict;

pub use analyze::{Analysis, AnalyzeError, RunStats, Stage, analyze};
pub use config::Config;
