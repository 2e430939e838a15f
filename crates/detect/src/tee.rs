//! A table that is a query's output, written to Parquet as it streams past.
//!
//! The analysis computes every exchange's features, then folds them into account profiles.
//! Writing the features to `exchange_features/` and reading them back for the profiles cost a
//! second decode of the whole table; [`TeeTable`] lets one DataFusion plan do both:
//! the aggregate scans this table, and each partition of the inner query writes its batches to
//! `DIR/part-N.parquet` on the way to the aggregate. The aggregate still only holds
//! account-level state, and the written table is the same one analysts query afterwards.

use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

/// The output of `plan`, each partition also written to `dir/part-<partition>.parquet`
/// (all of its columns, or those chosen with [`TeeTable::writing`]).
///
/// Meant to be scanned once: every scan executes `plan` again and rewrites the files.
pub struct TeeTable {
    plan: Arc<dyn ExecutionPlan>,
    dir: PathBuf,
    props: WriterProperties,
    /// The columns written, as indices into the plan's schema.
    written: Vec<usize>,
}

impl fmt::Debug for TeeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeeTable")
            .field("dir", &self.dir)
            .field("partitions", &self.partitions())
            .finish()
    }
}

impl TeeTable {
    pub fn new(plan: Arc<dyn ExecutionPlan>, dir: PathBuf, props: WriterProperties) -> Self {
        let written = (0..plan.schema().fields().len()).collect();
        TeeTable {
            plan,
            dir,
            props,
            written,
        }
    }

    /// Writes only `columns` (in this order); the scan still passes every column on.
    pub fn writing(mut self, columns: &[&str]) -> Result<Self> {
        let schema = self.plan.schema();
        self.written = columns
            .iter()
            .map(|c| schema.index_of(c))
            .collect::<std::result::Result<_, _>>()?;
        Ok(self)
    }

    /// Partitions of the inner plan: one written file each.
    fn partitions(&self) -> usize {
        self.plan
            .properties()
            .output_partitioning()
            .partition_count()
    }

    /// The files a scan writes, one per partition of the inner plan.
    pub fn files(&self) -> Vec<PathBuf> {
        (0..self.partitions()).map(|i| self.file(i)).collect()
    }

    fn file(&self, partition: usize) -> PathBuf {
        self.dir.join(format!("part-{partition}.parquet"))
    }
}

#[async_trait]
impl TableProvider for TeeTable {
    fn schema(&self) -> SchemaRef {
        self.plan.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if limit.is_some() {
            // A limit would stop the inner query early and leave the files incomplete.
            return Err(DataFusionError::Plan(
                "a tee table is written whole; LIMIT is not supported".into(),
            ));
        }
        let partitions: Vec<Arc<dyn PartitionStream>> = (0..self.partitions())
            .map(|partition| {
                Arc::new(TeePartition {
                    plan: self.plan.clone(),
                    schema: self.plan.schema(),
                    partition,
                    path: self.file(partition),
                    props: self.props.clone(),
                    written: self.written.clone(),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(
            self.plan.schema(),
            partitions,
            projection,
            Vec::new(),
            false,
            None,
        )?))
    }
}

/// One partition of the inner plan and the file it is written to.
struct TeePartition {
    plan: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    partition: usize,
    path: PathBuf,
    props: WriterProperties,
    written: Vec<usize>,
}

impl fmt::Debug for TeePartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeePartition")
            .field("partition", &self.partition)
            .field("path", &self.path)
            .finish()
    }
}

impl TeePartition {
    fn open(
        &self,
        ctx: Arc<TaskContext>,
    ) -> Result<(SendableRecordBatchStream, ArrowWriter<File>)> {
        let input = self.plan.execute(self.partition, ctx)?;
        let file = File::create(&self.path).map_err(|e| {
            DataFusionError::Execution(format!("cannot create {}: {e}", self.path.display()))
        })?;
        let schema = Arc::new(self.schema.project(&self.written)?);
        let writer = ArrowWriter::try_new(file, schema, Some(self.props.clone()))?;
        Ok((input, writer))
    }
}

/// A partition's stream while it passes batches on.
struct Running {
    input: SendableRecordBatchStream,
    writer: Box<ArrowWriter<File>>,
    path: PathBuf,
    /// The columns written, as indices into the batches.
    written: Vec<usize>,
}

/// Where a partition's stream is: passing batches on, or finished (after the file is closed
/// or an error was reported).
enum State {
    Running(Running),
    Done,
}

impl PartitionStream for TeePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = self.schema.clone();
        let start = match self.open(ctx) {
            Ok((input, writer)) => State::Running(Running {
                input,
                writer: Box::new(writer),
                path: self.path.clone(),
                written: self.written.clone(),
            }),
            Err(e) => {
                let failed = futures::stream::once(async move { Err(e) });
                return Box::pin(RecordBatchStreamAdapter::new(schema, failed));
            }
        };
        let stream = futures::stream::unfold(start, |state| async move {
            let State::Running(mut run) = state else {
                return None;
            };
            let failed = |e: parquet::errors::ParquetError| {
                DataFusionError::Execution(format!("{}: {e}", run.path.display()))
            };
            match run.input.next().await {
                Some(Ok(batch)) => {
                    let write = batch
                        .project(&run.written)
                        .map_err(|e| failed(e.into()))
                        .and_then(|part| run.writer.write(&part).map_err(failed));
                    match write {
                        Ok(()) => Some((Ok(batch), State::Running(run))),
                        Err(e) => Some((Err(e), State::Done)),
                    }
                }
                Some(Err(e)) => Some((Err(e), State::Done)),
                None => match run.writer.close().map_err(failed) {
                    Ok(_) => None,
                    Err(e) => Some((Err(e), State::Done)),
                },
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// A session with `numbers(account, x)` in three partitions.
    async fn session() -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("account", DataType::Int64, false),
            Field::new("x", DataType::Int64, false),
        ]));
        let part = |lo: i64, hi: i64| {
            let xs: Vec<i64> = (lo..hi).collect();
            let accounts: Vec<i64> = xs.iter().map(|x| x % 7).collect();
            vec![
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(accounts)),
                        Arc::new(Int64Array::from(xs)),
                    ],
                )
                .unwrap(),
            ]
        };
        let table = MemTable::try_new(
            schema.clone(),
            vec![part(0, 1000), part(1000, 1500), part(1500, 4000)],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_table("numbers", Arc::new(table)).unwrap();
        ctx
    }

    /// The sum of an Int64 column over all batches.
    fn column_total(batches: &[RecordBatch], column: usize) -> i64 {
        batches
            .iter()
            .flat_map(|b| {
                b.column(column)
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .sum()
    }

    fn read_back(files: &[PathBuf]) -> Vec<i64> {
        let mut xs = Vec::new();
        for f in files {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(f).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for b in reader {
                xs.extend(b.unwrap().column(1).as_primitive::<Int64Type>().values());
            }
        }
        xs.sort_unstable();
        xs
    }

    async fn plan_of(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
        ctx.sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
    }

    /// A tee of `plan` into `dir`, with the writer's default properties.
    fn tee_into(plan: Arc<dyn ExecutionPlan>, dir: &std::path::Path) -> TeeTable {
        TeeTable::new(plan, dir.to_path_buf(), WriterProperties::builder().build())
    }

    #[tokio::test]
    async fn an_aggregate_over_the_tee_sees_every_row_and_the_files_hold_them_all() {
        let ctx = session().await;
        let dir = tempfile::tempdir().unwrap();
        let plan = plan_of(&ctx, "SELECT account, x * 2 AS x FROM numbers").await;
        let tee = tee_into(plan, dir.path());
        let files = tee.files();
        assert_eq!(files.len(), 3, "one file per partition of the inner plan");
        ctx.register_table("tee", Arc::new(tee)).unwrap();
        let batches = ctx
            .sql("SELECT account, count(*) AS n, sum(x) AS s FROM tee GROUP BY account ORDER BY account")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let n = column_total(&batches, 1);
        let s = column_total(&batches, 2);
        assert_eq!(n, 4000);
        assert_eq!(s, 2 * (0..4000).sum::<i64>());
        let written = read_back(&files);
        assert_eq!(written, (0..4000).map(|x| 2 * x).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn only_the_chosen_columns_are_written_and_every_column_passes_on() {
        let ctx = session().await;
        let dir = tempfile::tempdir().unwrap();
        let plan = plan_of(&ctx, "SELECT account, x, x + 1 AS y FROM numbers").await;
        let tee = tee_into(plan.clone(), dir.path())
            .writing(&["y", "x"])
            .unwrap();
        let files = tee.files();
        ctx.register_table("tee", Arc::new(tee)).unwrap();
        let batches = ctx
            .sql("SELECT sum(account) AS a, sum(y) AS s FROM tee")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(
            column_total(&batches, 0),
            (0..4000).map(|x| x % 7).sum::<i64>()
        );
        assert_eq!(column_total(&batches, 1), (1..4001).sum::<i64>());
        for f in &files {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(f).unwrap()).unwrap();
            let names: Vec<&str> = reader
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            assert_eq!(names, ["y", "x"], "{}", f.display());
        }
        // Column 1 of the written files is `x`.
        assert_eq!(read_back(&files), (0..4000).collect::<Vec<_>>());

        let unknown = tee_into(plan, dir.path()).writing(&["x", "nope"]);
        assert!(unknown.unwrap_err().to_string().contains("nope"));
    }

    #[tokio::test]
    async fn a_limit_is_refused_and_an_unwritable_directory_is_an_error() {
        let ctx = session().await;
        let plan = plan_of(&ctx, "SELECT * FROM numbers").await;
        let dir = tempfile::tempdir().unwrap();
        let tee = tee_into(plan.clone(), dir.path());
        ctx.register_table("tee", Arc::new(tee)).unwrap();
        let limited = ctx
            .sql("SELECT * FROM tee LIMIT 3")
            .await
            .unwrap()
            .collect()
            .await;
        assert!(limited.unwrap_err().to_string().contains("LIMIT"));

        let missing = dir.path().join("no/such/dir");
        let tee = tee_into(plan, &missing);
        ctx.register_table("broken", Arc::new(tee)).unwrap();
        let err = ctx
            .sql("SELECT count(*) FROM broken")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot create"), "{err}");
    }
}
