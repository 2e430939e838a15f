//! A DataFusion table over the files of one contract table.
//!
//! Each scan streams the files again through `dg_contract::read_file`: each partition reads on
//! its own thread into a small bounded channel, taking the scan's files one at a time from a
//! shared queue (largest first), so that no partition idles while another still has a share
//! of files to read. Every scan has its own de-duplication state, so a self-join sees each
//! record once per side; only the first scan of each file records bad records and figures
//! (see `Diagnostics::claim`).

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
}

/// The files of one scan, handed out largest first to whichever partition asks next. A
/// partition that is done takes the next file instead of idling while another works through a
/// fixed share (the time a file takes varies with its text, not only its size); the last files
/// handed out are the smallest, so the partitions finish close together.
struct FileQueue {
    files: Vec<InputFile>,
    next: AtomicUsize,
}

impl FileQueue {
    fn new(files: &[InputFile]) -> Self {
        let mut files = files.to_vec();
        files.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
        FileQueue {
            files,
            next: AtomicUsize::new(0),
        }
    }

    fn take(&self) -> Option<&InputFile> {
        self.files.get(self.next.fetch_add(1, Ordering::Relaxed))
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
        let queue = Arc::new(FileQueue::new(&self.files));
        let n = state
            .config()
            .target_partitions()
            .clamp(1, self.files.len().max(1));
        let partitions: Vec<Arc<dyn PartitionStream>> = (0..n)
            .map(|_| {
                Arc::new(FileGroup {
                    table: self.table,
                    schema: self.table.schema(),
                    queue: queue.clone(),
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

/// One partition of a scan: files taken from the scan's queue and read on a dedicated thread.
struct FileGroup {
    table: Table,
    schema: SchemaRef,
    queue: Arc<FileQueue>,
    opts: ReadOptions,
    diag: Arc<Diagnostics>,
    dedup: Arc<Dedup>,
}

impl fmt::Debug for FileGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileGroup")
            .field("table", &self.table)
            .field("files", &self.queue.files.len())
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
        let (table, queue, opts, diag, dedup) = (
            self.table,
            self.queue.clone(),
            self.opts.clone(),
            self.diag.clone(),
            self.dedup.clone(),
        );
        let err_tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("dg-read-{table}"))
            .spawn(move || {
                while let Some(f) = queue.take() {
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
