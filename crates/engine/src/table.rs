//! A DataFusion table over the files of one contract table.
//!
//! Each scan streams the files again through `dg_contract::read_file`, one partition per
//! group of files, each partition read on its own thread into a small bounded channel. Every
//! scan has its own de-duplication state, so a self-join sees each record once per side; only
//! the first scan of each file records bad records and figures (see `Diagnostics::claim`).

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use dg_contract::{Dedup, Diagnostics, InputFile, ReadOptions, Table, read_file};

/// Batches in flight per partition between the reading thread and the query.
const CHANNEL_DEPTH: usize = 2;

/// A contract table backed by files.
pub struct ContractTable {
    table: Table,
    files: Vec<InputFile>,
    opts: ReadOptions,
    diag: Arc<Diagnostics>,
}

impl fmt::Debug for ContractTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContractTable")
            .field("table", &self.table)
            .field("files", &self.files.len())
            .finish()
    }
}

impl ContractTable {
    pub fn new(
        table: Table,
        files: Vec<InputFile>,
        opts: ReadOptions,
        diag: Arc<Diagnostics>,
    ) -> Self {
        ContractTable {
            table,
            files,
            opts,
            diag,
        }
    }

    pub fn files(&self) -> &[InputFile] {
        &self.files
    }

    /// Splits the files into at most `n` groups of similar total size.
    fn groups(&self, n: usize) -> Vec<Vec<InputFile>> {
        let n = n.clamp(1, self.files.len().max(1));
        let mut groups: Vec<(u64, Vec<InputFile>)> = vec![(0, Vec::new()); n];
        let mut by_size: Vec<&InputFile> = self.files.iter().collect();
        by_size.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
        for f in by_size {
            let g = groups
                .iter_mut()
                .min_by_key(|(bytes, _)| *bytes)
                .expect("n >= 1");
            g.0 += f.size;
            g.1.push(f.clone());
        }
        groups
            .into_iter()
            .map(|(_, mut files)| {
                files.sort_by(|a, b| a.path.cmp(&b.path));
                files
            })
            .collect()
    }
}

#[async_trait]
impl TableProvider for ContractTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let dedup = Arc::new(Dedup::default());
        let partitions: Vec<Arc<dyn PartitionStream>> = self
            .groups(state.config().target_partitions())
            .into_iter()
            .map(|files| {
                Arc::new(FileGroup {
                    table: self.table,
                    schema: self.table.schema(),
                    files,
                    opts: self.opts.clone(),
                    diag: self.diag.clone(),
                    dedup: dedup.clone(),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(
            self.table.schema(),
            partitions,
            projection,
            Vec::new(),
            false,
            limit,
        )?))
    }
}

/// One partition of a scan: files read in order on a dedicated thread.
struct FileGroup {
    table: Table,
    schema: SchemaRef,
    files: Vec<InputFile>,
    opts: ReadOptions,
    diag: Arc<Diagnostics>,
    dedup: Arc<Dedup>,
}

impl fmt::Debug for FileGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileGroup")
            .field("table", &self.table)
            .field(
                "files",
                &self.files.iter().map(|f| &f.path).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl PartitionStream for FileGroup {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<arrow::record_batch::RecordBatch>>(CHANNEL_DEPTH);
        let (table, files, opts, diag, dedup) = (
            self.table,
            self.files.clone(),
            self.opts.clone(),
            self.diag.clone(),
            self.dedup.clone(),
        );
        let err_tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("dg-read-{table}"))
            .spawn(move || {
                for f in &files {
                    let result = read_file(table, f, &opts, &diag, &dedup, &mut |batch| {
                        if tx.blocking_send(Ok(batch)).is_err() {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    });
                    if let Err(e) = result {
                        let _ = tx.blocking_send(Err(DataFusionError::External(Box::new(e))));
                        return;
                    }
                    if tx.is_closed() {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            let _ = err_tx.try_send(Err(DataFusionError::Execution(format!(
                "cannot start a reader thread: {e}"
            ))));
        }
        drop(err_tx);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}
