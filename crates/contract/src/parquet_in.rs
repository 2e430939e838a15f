//! Parquet reader: maps a file's columns by name onto the table's fixed schema, widens or
//! narrows compatible types (any integer width, any timestamp unit, any string encoding),
//! checks every value with the same rules as JSON Lines, and quarantines bad rows rendered
//! as JSON. A column whose type cannot hold the contract's values stops the file with one
//! clear error.

use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListArray, StringArray, StringViewArray, StructArray,
    UInt16Array, new_null_array,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::{CastOptions, cast, cast_with_options, filter};
use arrow::datatypes::{DataType, Field, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::{FieldLevels, parquet_to_arrow_field_levels};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::diag::{BadReason, Location, Raw};
use crate::error::IngestError;
use crate::pages;
use crate::read::{DirectIo, FileReader, ReadOptions};
use crate::schema::{ColumnSpec, Kind, Presence, ROLES, arrow_type, message_fields};
use crate::source::InputFile;
use crate::values::{self, Problem};

fn is_string(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_string(v),
        _ => false,
    }
}

fn list_item(dt: &DataType) -> Option<&DataType> {
    match dt {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => Some(f.data_type()),
        _ => None,
    }
}

/// Whether a Parquet column of type `dt` can hold values of `kind`.
fn compatible(kind: Kind, dt: &DataType) -> bool {
    match kind {
        Kind::Text | Kind::Ip | Kind::Country | Kind::OneOf(_) => is_string(dt),
        Kind::Timestamp => matches!(dt, DataType::Timestamp(_, _)) || is_string(dt),
        Kind::U32 | Kind::U16 => dt.is_integer(),
        Kind::F32 => dt.is_floating() || dt.is_integer(),
        Kind::Bool => matches!(dt, DataType::Boolean),
        Kind::TextList => list_item(dt).is_some_and(is_string),
        Kind::Messages => match list_item(dt) {
            Some(DataType::Struct(fields)) => ["role", "content"].iter().all(|n| {
                fields
                    .iter()
                    .any(|f| f.name() == n && is_string(f.data_type()))
            }),
            _ => false,
        },
    }
}

/// The file's type of a messages column with `content` read as a string view, when the
/// column is a list of structs with plain string content; `None` leaves the column as it is.
fn content_as_view(dt: &DataType) -> Option<DataType> {
    let (DataType::List(item) | DataType::LargeList(item)) = dt else {
        return None;
    };
    let DataType::Struct(fields) = item.data_type() else {
        return None;
    };
    let fields: arrow::datatypes::Fields = fields
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 if f.name() == "content" => {
                Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View))
            }
            _ => f.clone(),
        })
        .collect();
    let item = Arc::new(
        item.as_ref()
            .clone()
            .with_data_type(DataType::Struct(fields)),
    );
    Some(match dt {
        DataType::List(_) => DataType::List(item),
        _ => DataType::LargeList(item),
    })
}

/// The file's metadata with its messages column read as string views (see
/// [`crate::schema::message_fields`]); the plain metadata if the reader refuses the hint.
fn with_view_hint(meta: ArrowReaderMetadata) -> ArrowReaderMetadata {
    let schema = meta.schema();
    let Ok(i) = schema.index_of("messages") else {
        return meta;
    };
    let Some(dt) = content_as_view(schema.field(i).data_type()) else {
        return meta;
    };
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[i] = fields[i].clone().with_data_type(dt);
    let hinted = Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ));
    ArrowReaderMetadata::try_new(
        meta.metadata().clone(),
        ArrowReaderOptions::new().with_schema(hinted),
    )
    .unwrap_or(meta)
}

fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Text | Kind::Ip | Kind::Country | Kind::OneOf(_) => "a string (utf8)",
        Kind::Timestamp => "a timestamp (or RFC 3339 strings)",
        Kind::U32 => "an integer (uint32)",
        Kind::U16 => "an integer (uint16)",
        Kind::F32 => "a number (float32)",
        Kind::Bool => "a boolean",
        Kind::TextList => "a list of strings",
        Kind::Messages => "a list of struct<role: utf8, content: utf8>",
    }
}

fn corrupt(r: &FileReader<'_>, e: impl std::fmt::Display) -> IngestError {
    IngestError::Corrupt {
        path: r.path().to_path_buf(),
        detail: format!("cannot read Parquet data: {e}"),
    }
}

pub(crate) fn read_parquet(r: &mut FileReader<'_>) -> Result<(), IngestError> {
    let mut cursor = ParquetCursor::open(r)?;
    while cursor.step(r)?.is_continue() {}
    Ok(())
}

/// A Parquet file being read one batch at a time: its checked layout and where the reading
/// stands. Each [`ParquetCursor::step`] decodes one batch and hands its good rows on, so a
/// caller can read on demand (the query engine decodes a batch and computes on it on the same
/// core, while the text is still in cache) or in one loop ([`read_parquet`]).
pub(crate) struct ParquetCursor {
    file: File,
    meta: ArrowReaderMetadata,
    mask: ProjectionMask,
    /// The projected leaf columns.
    leaves: Vec<usize>,
    /// The projected columns' Arrow types and levels, for row groups whose pages
    /// `crate::pages` reads.
    levels: FieldLevels,
    /// The next row group to open.
    next_row_group: usize,
    /// The open row group: its index, its reader and the rows read from it so far.
    current: Option<(usize, ParquetRecordBatchReader, usize)>,
    /// Row groups are read whole past the page cache, the next one while this one is
    /// decoded (see [`DirectIo`]).
    direct: bool,
    path: PathBuf,
    /// A row group's bytes, being read ahead.
    ahead: Option<(usize, Pending)>,
}

/// A row group being read on another thread (`None`: the read failed, and the pages will be
/// read one by one, reporting the failure with its place).
type Pending = std::thread::JoinHandle<Option<pages::Loaded>>;

/// The largest row group read whole: a larger one is read page by page, through the page
/// cache (two row groups per reading core are in memory at once).
const MAX_LOADED: u64 = 512 << 20;

/// The byte range of row group `rg`'s columns `leaves`, if it is read whole (at most
/// [`MAX_LOADED`] bytes).
fn loadable_span(meta: &ParquetMetaData, rg: usize, leaves: &[usize]) -> Option<(u64, u64)> {
    pages::row_group_span(meta, rg, leaves).filter(|(lo, hi)| hi - lo <= MAX_LOADED)
}

/// Starts reading the bytes `lo..hi` of the file at `path` past the page cache.
fn read_ahead(path: PathBuf, span: (u64, u64)) -> Option<Pending> {
    spawn_read(move || load(&path, span))
}

/// The bytes `lo..hi` of the file at `path`, read past the page cache.
fn load(path: &Path, (lo, hi): (u64, u64)) -> Option<pages::Loaded> {
    let bytes = pages::read_direct(path, lo, usize::try_from(hi - lo).ok()?).ok()?;
    Some(pages::Loaded { base: lo, bytes })
}

fn spawn_read(read: impl FnOnce() -> Option<pages::Loaded> + Send + 'static) -> Option<Pending> {
    std::thread::Builder::new()
        .name("dg-read-ahead".into())
        .spawn(read)
        .ok()
}

/// The first row group of a Parquet file, read past the page cache on another thread before
/// the file is opened (see [`DirectIo`]): a table's reader starts it for the file that will
/// be read next, so that no file starts with a wait for its first row group.
pub struct ReadAhead {
    path: PathBuf,
    pending: Option<Pending>,
}

impl ReadAhead {
    /// Starts reading `file`'s first row group (all its column chunks; the footer is read
    /// on the same thread).
    pub fn start(file: &InputFile) -> ReadAhead {
        let path = file.path.clone();
        let pending = spawn_read({
            let path = path.clone();
            move || {
                let meta = ParquetMetaDataReader::new()
                    .parse_and_finish(&File::open(&path).ok()?)
                    .ok()?;
                if meta.num_row_groups() == 0 {
                    return None;
                }
                let leaves: Vec<usize> = (0..meta.row_group(0).num_columns()).collect();
                load(&path, loadable_span(&meta, 0, &leaves)?)
            }
        });
        ReadAhead { path, pending }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ParquetCursor {
    /// Opens the file and checks its columns against the table's contract.
    pub(crate) fn open(r: &FileReader<'_>) -> Result<Self, IngestError> {
        let path = r.path().to_path_buf();
        let file = File::open(&path).map_err(|source| IngestError::Io {
            path: path.clone(),
            source,
        })?;
        let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
            IngestError::Corrupt {
                path: path.clone(),
                detail: format!("not a readable Parquet file: {e}"),
            }
        })?;
        let meta = with_view_hint(meta);
        let spec = r.table.spec();
        let file_schema = meta.schema().clone();
        let mut roots = Vec::new();
        for col in spec.columns {
            match file_schema.index_of(col.name) {
                Ok(i) => {
                    let dt = file_schema.field(i).data_type();
                    if !compatible(col.kind, dt) {
                        return Err(IngestError::ColumnType {
                            path,
                            column: col.name.into(),
                            found: dt.to_string(),
                            expected: expected(col.kind).into(),
                        });
                    }
                    roots.push(i);
                }
                Err(_) if col.presence == Presence::Required => {
                    return Err(IngestError::MissingColumn {
                        path,
                        column: col.name.into(),
                    });
                }
                Err(_) => {}
            }
        }
        roots.sort_unstable();
        let mask = ProjectionMask::roots(meta.parquet_schema(), roots);
        let leaves: Vec<usize> = (0..meta.parquet_schema().num_columns())
            .filter(|&i| mask.leaf_included(i))
            .collect();
        let levels = parquet_to_arrow_field_levels(
            meta.parquet_schema(),
            mask.clone(),
            Some(meta.schema().fields()),
        )
        .map_err(|e| corrupt(r, e))?;
        Ok(ParquetCursor {
            file,
            meta,
            mask,
            leaves,
            levels,
            next_row_group: 0,
            current: None,
            direct: r.opts.direct_io == DirectIo::On,
            path: r.path().to_path_buf(),
            ahead: None,
        })
    }

    /// Reads the next batch and hands its good rows to the reader's `emit` (none, when every
    /// row of the batch is bad or a duplicate). `Break` once the file is done or `emit`
    /// asked to stop.
    pub(crate) fn step(&mut self, r: &mut FileReader<'_>) -> Result<ControlFlow<()>, IngestError> {
        loop {
            let current = match self.current.take() {
                Some(current) => current,
                None => {
                    let rg = self.next_row_group;
                    if rg >= self.meta.metadata().num_row_groups() {
                        return Ok(ControlFlow::Break(()));
                    }
                    self.next_row_group += 1;
                    (rg, self.row_group_reader(r, rg)?, 0)
                }
            };
            let (rg, reader, base) = self.current.insert(current);
            let rg = *rg;
            // The `parquet` crate's value decoders can panic on damaged pages that decompress
            // without error (Zstandard and Snappy carry no checksum): a damaged file is an
            // error naming it, never a crash.
            let batch = match guarded_decode(|| reader.next()) {
                Ok(None) => {
                    self.current = None;
                    r.diag.add_bytes_read(
                        self.meta.metadata().row_group(rg).compressed_size().max(0) as u64,
                    );
                    continue;
                }
                Ok(Some(batch)) => batch.map_err(|e| corrupt(r, e))?,
                Err(panic) => {
                    return Err(corrupt(
                        r,
                        format!("damaged data in row group {rg}: the decoder failed ({panic})"),
                    ));
                }
            };
            let at = *base;
            *base += batch.num_rows();
            return convert_batch(r, &batch, rg, at);
        }
    }

    /// Rows per batch in row group `rg`: at most `batch_size`, and few enough that a batch
    /// holds about `batch_bytes` of decoded data, judged by the projected columns'
    /// uncompressed size in the file's metadata. A batch that fits in a core's cache is
    /// still there when the query computes on it.
    fn batch_rows(&self, rg: usize, opts: &ReadOptions) -> usize {
        let group = self.meta.metadata().row_group(rg);
        let rows = group.num_rows().max(1) as u128;
        let bytes: u128 = self
            .leaves
            .iter()
            .map(|&i| group.column(i).uncompressed_size().max(0) as u128)
            .sum();
        let by_bytes = (opts.batch_bytes as u128 * rows / bytes.max(1)).min(rows);
        opts.batch_size.min(by_bytes as usize).max(1)
    }

    /// Uses `ahead` (started for this file) for its first row group.
    pub(crate) fn with_read_ahead(mut self, ahead: Option<ReadAhead>) -> Self {
        if self.direct
            && let Some(pending) = ahead.and_then(|a| a.pending)
        {
            self.ahead = Some((0, pending));
        }
        self
    }

    /// Row group `rg`'s bytes when reading past the page cache (read ahead, or read now),
    /// with the next row group's read started; `None` (pages read one by one) otherwise.
    fn loaded(&mut self, rg: usize) -> Option<pages::Loaded> {
        if !self.direct {
            return None;
        }
        let meta = self.meta.metadata();
        let span = loadable_span(meta, rg, &self.leaves);
        let this = match self.ahead.take() {
            Some((at, pending)) if at == rg => Some(pending),
            _ => span.and_then(|s| read_ahead(self.path.clone(), s)),
        };
        if rg + 1 < meta.num_row_groups() {
            self.ahead = loadable_span(meta, rg + 1, &self.leaves)
                .and_then(|s| read_ahead(self.path.clone(), s))
                .map(|p| (rg + 1, p));
        }
        let loaded = this?.join().ok()??;
        // A read-ahead of the whole row group covers the projected columns' span.
        let (lo, hi) = span?;
        (loaded.base <= lo && loaded.base + loaded.bytes.len() as u64 >= hi).then_some(loaded)
    }

    fn row_group_reader(
        &mut self,
        r: &FileReader<'_>,
        rg: usize,
    ) -> Result<ParquetRecordBatchReader, IngestError> {
        let handle = self.file.try_clone().map_err(|source| IngestError::Io {
            path: r.path().to_path_buf(),
            source,
        })?;
        let batch_rows = self.batch_rows(rg, r.opts);
        if pages::supported(self.meta.metadata(), rg, &self.leaves) {
            let loaded = self.loaded(rg);
            let meta = &self.meta;
            ParquetRecordBatchReader::try_new_with_row_groups(
                &self.levels,
                &pages::RowGroupPages::new(handle, meta.metadata().clone(), rg).with_loaded(loaded),
                batch_rows,
                None,
            )
        } else {
            ParquetRecordBatchReaderBuilder::new_with_metadata(handle, self.meta.clone())
                .with_row_groups(vec![rg])
                .with_projection(self.mask.clone())
                .with_batch_size(batch_rows)
                .build()
        }
        .map_err(|e| corrupt(r, e))
    }
}

thread_local! {
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is inside a Parquet decode whose panics become errors (a damaged page
/// that the `parquet` crate's decoders trip over). A program's panic hook can stay quiet for
/// these: the error that follows names the file and carries the panic's message.
pub fn in_guarded_decode() -> bool {
    GUARDED.get()
}

/// Runs `f`; a panic becomes `Err` with its message.
fn guarded_decode<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    GUARDED.set(true);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.set(false);
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic without a message".into())
    })
}

/// Converts one Parquet batch to the table schema, quarantines bad rows, delivers the rest.
fn convert_batch(
    r: &mut FileReader<'_>,
    batch: &RecordBatch,
    row_group: usize,
    base: usize,
) -> Result<ControlFlow<()>, IngestError> {
    let n = batch.num_rows();
    let spec = r.table.spec();
    let mut problems: Vec<Option<Problem>> = vec![None; n];
    let mut columns = Vec::with_capacity(spec.columns.len());
    for col in spec.columns {
        let array = convert_column(col, batch.column_by_name(col.name), n, &mut problems)
            .map_err(|e| corrupt(r, e))?;
        columns.push(array);
    }
    let at = |i: usize| Location::Row {
        row_group,
        row: base + i,
    };
    if problems.iter().all(Option::is_none) {
        let out = RecordBatch::try_new(r.table.schema(), columns).map_err(|e| corrupt(r, e))?;
        return Ok(r.deliver(out, at));
    }
    for (i, p) in problems.iter().enumerate() {
        if let Some(p) = p {
            let raw = row_as_json(batch, i);
            r.bad(at(i), p, Raw::Json(&raw))?;
        }
    }
    // Bad rows leave before the batch is built: they may hold nulls in required columns.
    let keep: BooleanArray = problems.iter().map(|p| Some(p.is_none())).collect();
    let kept: Vec<usize> = (0..n).filter(|&i| problems[i].is_none()).collect();
    let columns = columns
        .iter()
        .map(|c| filter(c, &keep))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(r, e))?;
    let out = RecordBatch::try_new(r.table.schema(), columns).map_err(|e| corrupt(r, e))?;
    Ok(r.deliver(out, |i| at(kept[i])))
}

/// Renders one row of the file's batch as a JSON object, for the quarantine.
fn row_as_json(batch: &RecordBatch, row: usize) -> String {
    let mut buf = Vec::new();
    let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
    let ok = w.write(&batch.slice(row, 1)).is_ok() && w.finish().is_ok();
    drop(w);
    if ok {
        String::from_utf8_lossy(&buf).trim_end().to_owned()
    } else {
        format!("{:?}", batch.slice(row, 1))
    }
}

fn note(problems: &mut [Option<Problem>], row: usize, p: Problem) {
    if problems[row].is_none() {
        problems[row] = Some(p);
    }
}

fn missing(name: &str) -> Problem {
    Problem::new(
        name,
        BadReason::MissingField,
        format!("required field `{name}` is missing, null or empty"),
    )
}

fn to_strings(a: &ArrayRef) -> Result<StringArray, arrow::error::ArrowError> {
    Ok(cast(a, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// Converts a file column to the contract type of `col`, noting per-row problems.
fn convert_column(
    col: &ColumnSpec,
    source: Option<&ArrayRef>,
    n: usize,
    problems: &mut [Option<Problem>],
) -> Result<ArrayRef, arrow::error::ArrowError> {
    let target = arrow_type(col.kind);
    let name = col.name;
    let Some(a) = source else {
        return Ok(match col.presence {
            Presence::Default(v) => Arc::new(UInt16Array::from(vec![v as u16; n])),
            _ => new_null_array(&target, n),
        });
    };
    let required = col.presence == Presence::Required;
    // Nulls: missing if required, the default if there is one.
    let fill_default = |a: ArrayRef| -> ArrayRef {
        match col.presence {
            Presence::Default(v) if a.null_count() > 0 => {
                let a = a.as_primitive::<arrow::datatypes::UInt16Type>();
                Arc::new(UInt16Array::from_iter_values(
                    a.iter().map(|x| x.unwrap_or(v as u16)),
                ))
            }
            _ => a,
        }
    };
    if required && let Some(nulls) = a.nulls().filter(|m| m.null_count() > 0) {
        for i in nulls
            .iter()
            .enumerate()
            .filter_map(|(i, valid)| (!valid).then_some(i))
        {
            note(problems, i, missing(name));
        }
    }
    let out: ArrayRef = match col.kind {
        Kind::Text => {
            let s = to_strings(a)?;
            let has_empty = s
                .value_offsets()
                .windows(2)
                .enumerate()
                .any(|(i, w)| w[0] == w[1] && s.is_valid(i));
            if !has_empty {
                return Ok(Arc::new(s));
            }
            Arc::new(
                s.iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Some("") => {
                            if required {
                                note(problems, i, missing(name));
                            }
                            None
                        }
                        other => other,
                    })
                    .collect::<StringArray>(),
            )
        }
        Kind::Ip | Kind::Country | Kind::OneOf(_) => {
            let s = to_strings(a)?;
            let unchanged = |v: &str| match col.kind {
                Kind::Ip => matches!(
                    values::canonical_ip(name, v),
                    Ok(std::borrow::Cow::Borrowed(_))
                ),
                Kind::Country => {
                    matches!(values::country(name, v), Ok(std::borrow::Cow::Borrowed(_)))
                }
                Kind::OneOf(allowed) => allowed.contains(&v),
                _ => false,
            };
            // Most files are already canonical: keep the column as it is.
            if s.iter()
                .all(|v| v.is_none_or(|v| !v.is_empty() && unchanged(v)))
            {
                return Ok(Arc::new(s));
            }
            Arc::new(
                s.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let v = v.filter(|v| !v.is_empty())?;
                        let checked = match col.kind {
                            Kind::Ip => values::canonical_ip(name, v).map(|c| c.into_owned()),
                            Kind::Country => values::country(name, v).map(|c| c.into_owned()),
                            Kind::OneOf(allowed) => {
                                values::one_of(name, v, allowed).map(str::to_owned)
                            }
                            _ => unreachable!(),
                        };
                        match checked {
                            Ok(c) => Some(c),
                            Err(p) => {
                                note(problems, i, p);
                                None
                            }
                        }
                    })
                    .collect::<StringArray>(),
            )
        }
        Kind::Timestamp if is_string(a.data_type()) => {
            let s = to_strings(a)?;
            let ts: arrow::array::TimestampMicrosecondArray = s
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let v = v.filter(|v| !v.is_empty())?;
                    match values::parse_timestamp(name, v) {
                        Ok(t) => Some(t),
                        Err(p) => {
                            note(problems, i, p);
                            None
                        }
                    }
                })
                .collect();
            Arc::new(ts.with_timezone("UTC"))
        }
        Kind::Timestamp if a.data_type() == &target => a.clone(),
        Kind::Timestamp => {
            // Any unit; a timestamp without time zone is taken as UTC.
            let naive = cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            let a = naive.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            Arc::new(a.clone().with_timezone("UTC"))
        }
        Kind::U32 | Kind::U16 | Kind::F32 => {
            let cast_a = cast_with_options(
                a,
                &target,
                &CastOptions {
                    safe: true,
                    ..Default::default()
                },
            )?;
            // A cast never makes a null valid: as many nulls as before means none is new, and
            // no row needs looking at.
            if cast_a.null_count() > a.null_count() {
                for i in 0..n {
                    if a.is_valid(i) && cast_a.is_null(i) {
                        note(
                            problems,
                            i,
                            Problem::new(
                                name,
                                BadReason::BadValue,
                                format!("value is outside the range of {target}"),
                            ),
                        );
                    }
                }
            }
            fill_default(cast_a)
        }
        Kind::Bool => a.clone(),
        Kind::TextList => {
            let list = cast(a, &target)?;
            let l = list.as_list::<i32>();
            // A list with a null item: looked for only when the items hold a null at all.
            if let Some(m) = l.values().nulls().filter(|m| m.null_count() > 0) {
                for (i, w) in l.value_offsets().windows(2).enumerate() {
                    let (lo, hi) = (w[0] as usize, w[1] as usize);
                    if l.is_valid(i) && m.slice(lo, hi - lo).null_count() > 0 {
                        note(
                            problems,
                            i,
                            Problem::new(
                                name,
                                BadReason::WrongType,
                                "list holds a null instead of a string",
                            ),
                        );
                    }
                }
            }
            list
        }
        Kind::Messages => convert_messages(name, a, problems)?,
    };
    Ok(out)
}

/// Rebuilds a list of `{role, content}` structs in the contract's exact type, checking roles.
fn convert_messages(
    name: &str,
    a: &ArrayRef,
    problems: &mut [Option<Problem>],
) -> Result<ArrayRef, arrow::error::ArrowError> {
    let DataType::Struct(fields) = list_item(a.data_type()).expect("checked list") else {
        unreachable!("checked struct")
    };
    let item = Arc::new(Field::new("item", DataType::Struct(fields.clone()), true));
    let list = cast(a, &DataType::List(item))?;
    let list = list.as_list::<i32>();
    let structs = list.values().as_struct();
    let roles = to_strings(structs.column_by_name("role").expect("checked"))?;
    let contents = cast(
        structs.column_by_name("content").expect("checked"),
        &DataType::Utf8View,
    )?;
    let contents = contents.as_string_view();
    let field = Arc::new(Field::new("item", DataType::Struct(message_fields()), true));
    // Fast path: canonical roles, no null role or content, no null message: reuse the arrays.
    if structs.null_count() == 0
        && contents.null_count() == 0
        && roles.null_count() == 0
        && roles.iter().all(|r| r.is_some_and(|r| ROLES.contains(&r)))
    {
        let structs = StructArray::new(
            message_fields(),
            vec![Arc::new(roles) as ArrayRef, Arc::new(contents.clone())],
            None,
        );
        return Ok(Arc::new(ListArray::new(
            field,
            OffsetBuffer::new(list.offsets().inner().clone()),
            Arc::new(structs),
            list.nulls().cloned(),
        )));
    }
    let mut role_problem: Vec<Option<Problem>> = vec![None; roles.len()];
    let roles: StringArray = roles
        .iter()
        .enumerate()
        .map(|(j, v)| {
            let field = format!("{name}[].role");
            match v {
                Some(r) => match values::one_of(&field, r, ROLES) {
                    Ok(c) => Some(c),
                    Err(p) => {
                        role_problem[j] = Some(p);
                        Some(r)
                    }
                },
                None => {
                    role_problem[j] = Some(Problem::new(
                        field,
                        BadReason::MissingField,
                        "message has no role",
                    ));
                    Some("")
                }
            }
        })
        .collect();
    let contents: StringViewArray = contents.iter().map(|v| Some(v.unwrap_or(""))).collect();
    let offsets = list.value_offsets();
    for (row, w) in offsets.windows(2).enumerate() {
        if list.is_null(row) {
            continue;
        }
        for (k, j) in (w[0] as usize..w[1] as usize).enumerate() {
            if let Some(p) = &role_problem[j] {
                let mut p = p.clone();
                p.field = format!("{name}[{k}].role");
                note(problems, row, p);
            }
        }
    }
    let structs = StructArray::new(
        message_fields(),
        vec![Arc::new(roles) as ArrayRef, Arc::new(contents)],
        None,
    );
    Ok(Arc::new(ListArray::new(
        field,
        OffsetBuffer::new(list.offsets().inner().clone()),
        Arc::new(structs),
        list.nulls().cloned(),
    )))
}

/// A bad row of a checked batch: its index, why, and the row as JSON (for the quarantine).
pub type BadRow = (usize, Problem, String);

/// Checks a batch from any Arrow source (an IPC stream from a gateway, say) exactly as rows
/// of a Parquet file are checked: columns matched by name and widened, every value checked.
/// Returns the good rows as a batch of the table's schema and the bad rows; an incompatible
/// or missing column is an error for the whole batch.
pub fn check_batch(
    table: crate::Table,
    batch: &RecordBatch,
) -> Result<(RecordBatch, Vec<BadRow>), String> {
    let spec = table.spec();
    let schema = batch.schema();
    for col in spec.columns {
        match schema.index_of(col.name) {
            Ok(i) => {
                let dt = schema.field(i).data_type();
                if !compatible(col.kind, dt) {
                    return Err(format!(
                        "column `{}` has type {dt}, expected {}",
                        col.name,
                        expected(col.kind)
                    ));
                }
            }
            Err(_) if col.presence == Presence::Required => {
                return Err(format!("required column `{}` is missing", col.name));
            }
            Err(_) => {}
        }
    }
    let n = batch.num_rows();
    let mut problems: Vec<Option<Problem>> = vec![None; n];
    let mut columns = Vec::with_capacity(spec.columns.len());
    for col in spec.columns {
        columns.push(
            convert_column(col, batch.column_by_name(col.name), n, &mut problems)
                .map_err(|e| e.to_string())?,
        );
    }
    let bad: Vec<BadRow> = problems
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.clone().map(|p| (i, p, row_as_json(batch, i))))
        .collect();
    let columns = if bad.is_empty() {
        columns
    } else {
        let keep: BooleanArray = problems.iter().map(|p| Some(p.is_none())).collect();
        columns
            .iter()
            .map(|c| filter(c, &keep))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?
    };
    let good = RecordBatch::try_new(table.schema(), columns).map_err(|e| e.to_string())?;
    Ok((good, bad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Diagnostics;
    use crate::read::Dedup;
    use crate::schema::Table;
    use crate::source::discover;

    /// A cursor reading past the page cache loads each row group whole (the first one from a
    /// read-ahead when there is one, each next one while the current is decoded); through the
    /// page cache it loads none.
    #[test]
    fn row_groups_are_loaded_whole_and_ahead_when_reading_past_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("x.jsonl");
        let lines: String = (0..1_500)
            .map(|i| {
                format!(
                    r#"{{"ts":"2026-02-03T14:05:09Z","request_id":"r{i}","account_id":"a{}","model":"m","client_ip":"203.0.113.{}","messages":[{{"role":"user","content":"question {i} {}"}}],"input_tokens":{i},"output_tokens":7}}"#,
                    i % 17,
                    i % 250,
                    "text ".repeat(i % 40)
                ) + "\n"
            })
            .collect();
        std::fs::write(&jsonl, lines).unwrap();
        let diag = Diagnostics::new(dir.path().join("q.jsonl"));
        let batches = crate::read::read_table(
            Table::Exchanges,
            &discover(&jsonl).unwrap(),
            &ReadOptions::default(),
            &diag,
        )
        .unwrap();
        let batch = arrow::compute::concat_batches(&Table::Exchanges.schema(), &batches).unwrap();
        assert_eq!(batch.num_rows(), 1_500);
        let path = dir.path().join("x.parquet");
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(500))
            .set_compression(parquet::basic::Compression::LZ4_RAW)
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            File::create(&path).unwrap(),
            batch.schema(),
            Some(props),
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let file = discover(&path).unwrap().remove(0);
        let dedup = Dedup::default();
        let mut emit = |_| ControlFlow::Continue(());
        for (direct_io, ahead) in [
            (DirectIo::On, false),
            (DirectIo::On, true),
            (DirectIo::Off, true),
        ] {
            let opts = ReadOptions {
                direct_io,
                ..ReadOptions::default()
            };
            let r = FileReader {
                table: Table::Exchanges,
                file: &file,
                opts: &opts,
                diag: &diag,
                dedup: &dedup,
                record: false,
                emit: &mut emit,
            };
            let mut c = ParquetCursor::open(&r)
                .unwrap()
                .with_read_ahead(ahead.then(|| ReadAhead::start(&file)));
            assert_eq!(c.meta.metadata().num_row_groups(), 3);
            for rg in 0..3 {
                let loaded = c.loaded(rg);
                if direct_io == DirectIo::Off {
                    assert!(loaded.is_none());
                    continue;
                }
                let (lo, hi) = pages::row_group_span(c.meta.metadata(), rg, &c.leaves).unwrap();
                let l = loaded.expect("row group loaded");
                assert!(l.base <= lo && l.base + l.bytes.len() as u64 >= hi);
                assert_eq!(c.ahead.as_ref().map(|a| a.0), (rg < 2).then_some(rg + 1));
            }
        }
    }
}
