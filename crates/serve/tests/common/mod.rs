//! Helpers shared by the service's tests and its benchmark (`examples/bench.rs`).
#![allow(dead_code)] // each test binary uses a subset

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::record_batch::RecordBatch;
use dg_contract::{Diagnostics, ReadOptions, Table, discover, read_table};
use dg_serve::{ServeFile, Service};

/// A simulated dataset in a temporary directory (removed on drop).
pub struct Data {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

/// Simulates a built-in scenario as Parquet; `seed` defaults to the scenario's own.
pub fn simulate(scenario: &str, scale: f64, seed: Option<u64>) -> Data {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let sc = dg_sim::Scenario::load(scenario).unwrap();
    let seed = seed.unwrap_or(sc.seed);
    dg_sim::simulate(
        sc,
        scale,
        seed,
        &root,
        dg_sim::OutFormat::Parquet,
        2,
        &AtomicU64::new(0),
    )
    .unwrap();
    Data { _dir: dir, root }
}

/// Opens a service on `state` with the dataset's accounts and releases.
pub fn open(root: &Path, state: &Path, file: &ServeFile) -> Arc<Service> {
    let (facts, releases) = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(dg_serve::service::load_tables(
            &[root.join("accounts.parquet")],
            &[root.join("model_releases.parquet")],
            &state.join("tables-quarantine.jsonl"),
        ))
        .unwrap();
    Service::open(state, file, facts, releases, Default::default()).unwrap()
}

/// The dataset's exchanges as batches of at most `rows` rows, in file order.
pub fn exchange_batches(root: &Path, rows: usize) -> Vec<RecordBatch> {
    let files = discover(&root.join("exchanges")).unwrap();
    let opts = ReadOptions {
        batch_size: rows,
        ..ReadOptions::default()
    };
    read_table(
        Table::Exchanges,
        &files,
        &opts,
        &Diagnostics::new("/dev/null"),
    )
    .unwrap()
}

/// A batch as an Arrow IPC stream (the events' fast-path body).
pub fn ipc(batch: &RecordBatch) -> Vec<u8> {
    let batch = &dg_contract::schema::compact_for_sending(batch);
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}
