//! A DataFusion table over the files of one contract table.
//!
//! Each scan streams the files again: each partition takes the scan's files one at a time from
//! a shared queue (largest first), so that no partition idles while another still has a share
//! of files to read. A Parquet file is decoded a batch at a time as the query pulls
//! (`dg_contract::ParquetBatches`), so the next operators work on the batch while it is in the
//! cache of the core that decoded it; a JSON Lines file is parsed by `dg_contract::read_file`
//! on a thread of its own into a small bounded channel. Every scan has its own de-duplication
//! state, so a self-join sees each record once per side; only the first scan of each file
//! records bad records and figures (see `Diagnostics::claim`).

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::Mutex;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
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
use dg_contract::{
    Dedup, Diagnostics, DirectIo, Format, InputFile, ParquetBatches, ReadAhead, ReadOptions, Table,
    read_file,
};

/// Batches in flight between a JSON Lines reading thread and the query.
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
        let mut opts = opts;
        opts.direct_io = opts.direct_io.resolve(files.iter().map(|f| f.size).sum());
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
/// handed out are the smallest, so the partitions finish close together. When Parquet is read
/// past the page cache, handing out a file starts reading the first row group of the file
/// handed out next (whichever partition takes it), so that no file starts with a wait.
struct FileQueue {
    files: Vec<InputFile>,
    /// The next file to hand out, and the read-ahead started for it.
    next: Mutex<(usize, Option<ReadAhead>)>,
    read_ahead: bool,
}

impl FileQueue {
    fn new(files: &[InputFile], opts: &ReadOptions) -> Self {
        let mut files = files.to_vec();
        files.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
        FileQueue {
            files,
            next: Mutex::new((0, None)),
            read_ahead: opts.direct_io == DirectIo::On,
        }
    }

    fn take(&self) -> Option<(&InputFile, Option<ReadAhead>)> {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let file = self.files.get(next.0)?;
        let ahead = next.1.take();
        next.0 += 1;
        next.1 = (self.files.get(next.0))
            .filter(|f| self.read_ahead && f.format == Format::Parquet)
            .map(ReadAhead::start);
        Some((file, ahead))
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
        let queue = Arc::new(FileQueue::new(&self.files, &self.opts));
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

/// Where a partition's batches come from while it reads one file.
enum Source {
    /// A Parquet file, decoded a batch at a time on the thread that polls the stream: the
    /// query's next operators (the features, the profile) then work on text that the decoder
    /// has just brought into this core's cache.
    Pull(Box<ParquetBatches>),
    /// A JSON Lines file, parsed on a thread of its own into a small bounded channel.
    Thread(tokio::sync::mpsc::Receiver<Result<RecordBatch>>),
}

/// The reading state of one partition: files taken from the scan's queue one at a time.
struct PartitionReader {
    table: Table,
    queue: Arc<FileQueue>,
    opts: ReadOptions,
    diag: Arc<Diagnostics>,
    dedup: Arc<Dedup>,
    source: Option<Source>,
    /// Set after an error: the partition reads nothing more.
    stopped: bool,
}

impl PartitionReader {
    async fn next(&mut self) -> Option<Result<RecordBatch>> {
        while !self.stopped {
            let Some(source) = self.source.as_mut() else {
                let (file, ahead) = self.queue.take()?;
                let file = file.clone();
                self.source = Some(self.open(file, ahead));
                continue;
            };
            let item = match source {
                Source::Pull(batches) => batches
                    .next()
                    .map(|r| r.map_err(|e| DataFusionError::External(Box::new(e)))),
                Source::Thread(rx) => rx.recv().await,
            };
            match item {
                Some(Ok(batch)) => return Some(Ok(batch)),
                Some(Err(e)) => {
                    self.stopped = true;
                    self.source = None;
                    return Some(Err(e));
                }
                None => self.source = None,
            }
        }
        None
    }

    fn open(&self, file: InputFile, ahead: Option<ReadAhead>) -> Source {
        let (table, opts, diag, dedup) = (
            self.table,
            self.opts.clone(),
            self.diag.clone(),
            self.dedup.clone(),
        );
        if let Some(batches) = ParquetBatches::new(table, &file, &opts, diag.clone(), dedup.clone())
        {
            return Source::Pull(Box::new(batches.with_read_ahead(ahead)));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(CHANNEL_DEPTH);
        let err_tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("dg-read-{table}"))
            .spawn(move || {
                let result = read_file(table, &file, &opts, &diag, &dedup, &mut |batch| {
                    if tx.blocking_send(Ok(batch)).is_err() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                if let Err(e) = result {
                    let _ = tx.blocking_send(Err(DataFusionError::External(Box::new(e))));
                }
            });
        if let Err(e) = spawned {
            let _ = err_tx.try_send(Err(DataFusionError::Execution(format!(
                "cannot start a reader thread: {e}"
            ))));
        }
        Source::Thread(rx)
    }
}

impl PartitionStream for FileGroup {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let reader = PartitionReader {
            table: self.table,
            queue: self.queue.clone(),
            opts: self.opts.clone(),
            diag: self.diag.clone(),
            dedup: self.dedup.clone(),
            source: None,
            stopped: false,
        };
        let stream = futures::stream::unfold(reader, |mut reader| async move {
            let item = reader.next().await?;
            Some((item, reader))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}
