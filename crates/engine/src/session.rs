//! Building a DataFusion session with the contract's tables registered.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};
use dg_contract::{Diagnostics, IngestError, InputFile, ReadOptions, Table, discover};

use crate::table::ContractTable;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("{0}")]
    Query(String),
}

impl From<DataFusionError> for EngineError {
    /// Unwraps DataFusion's layers so that an ingest error reads as itself.
    fn from(e: DataFusionError) -> Self {
        let root = e.find_root();
        if let DataFusionError::External(inner) = root {
            if let Some(ingest) = inner.downcast_ref::<IngestError>() {
                // IngestError is not Clone; rebuild the one-line message faithfully.
                return EngineError::Query(ingest.to_string());
            }
            return EngineError::Query(one_line(&inner.to_string()));
        }
        EngineError::Query(one_line(&root.to_string()))
    }
}

/// Joins a multi-line message into one line.
fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where each table's files are. Every field may name several files or directories.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub exchanges: Vec<PathBuf>,
    pub accounts: Vec<PathBuf>,
    pub model_releases: Vec<PathBuf>,
    /// Evaluation only: registered for analysts, never read by detection.
    pub labels: Vec<PathBuf>,
}

impl Inputs {
    pub fn paths(&self, table: Table) -> &[PathBuf] {
        match table {
            Table::Exchanges => &self.exchanges,
            Table::Accounts => &self.accounts,
            Table::ModelReleases => &self.model_releases,
            Table::Labels => &self.labels,
        }
    }
}

/// A session with the contract's tables registered, and the bookkeeping of what they read.
pub struct Engine {
    pub ctx: SessionContext,
    pub diag: Arc<Diagnostics>,
    files: Vec<(Table, Vec<InputFile>)>,
}

/// A session configured for distillguard: all cores, information schema on.
pub fn new_context() -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_batch_size(8192);
    SessionContext::new_with_config(config)
}

impl Engine {
    /// Finds every input file (failing early, with the file's name, on anything missing or of
    /// the wrong type) and registers `exchanges`, `accounts` and `model_releases` — empty when
    /// not given — and `labels` when given.
    pub fn open(
        inputs: &Inputs,
        opts: ReadOptions,
        diag: Arc<Diagnostics>,
    ) -> Result<Engine, EngineError> {
        let ctx = new_context();
        let mut files = Vec::new();
        for table in Table::ALL {
            let paths = inputs.paths(table);
            if table == Table::Labels && paths.is_empty() {
                continue;
            }
            let mut found = Vec::new();
            for p in paths {
                found.extend(discover(p)?);
            }
            let provider = ContractTable::new(table, found.clone(), opts.clone(), diag.clone());
            ctx.register_table(table.name(), Arc::new(provider))?;
            files.push((table, found));
        }
        Ok(Engine { ctx, diag, files })
    }

    /// The files registered for `table`.
    pub fn files(&self, table: Table) -> &[InputFile] {
        self.files
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, f)| f.as_slice())
            .unwrap_or(&[])
    }

    /// Total size on disk of every registered file.
    pub fn input_bytes(&self) -> u64 {
        self.files.iter().flat_map(|(_, f)| f).map(|f| f.size).sum()
    }

    /// Runs a query to completion and returns its batches.
    pub async fn query(
        &self,
        sql: &str,
    ) -> Result<Vec<arrow::record_batch::RecordBatch>, EngineError> {
        let df = self.ctx.sql(sql).await?;
        Ok(df.collect().await?)
    }
}
