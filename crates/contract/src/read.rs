//! Reading one table's files into batches of its fixed schema, with quarantine and
//! de-duplication. The entry point is [`read_file`]; [`read_table`] collects a whole (small)
//! table for tests and lookups.

use std::collections::HashSet;
use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io::{self, BufReader, Read};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;

use crate::diag::{BadReason, Diagnostics, Location, Raw};
use crate::error::IngestError;
use crate::jsonl::{LineReader, Next, RowBuilder};
use crate::parquet_in::{ParquetCursor, ReadAhead};
use crate::schema::Table;
use crate::source::{Compression, Format, InputFile};
use crate::values::Problem;

/// How to read.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Rows per record batch.
    pub batch_size: usize,
    /// A batch is also cut once its records reach about this many bytes (of input for JSON
    /// Lines, of decoded columns for Parquet), so that a batch of long records stays small
    /// enough to stay in a core's cache between decoding and the query's first look at it.
    pub batch_bytes: usize,
    /// Longest accepted JSON Lines line, in bytes (SCHEMA.md default: 8 MiB).
    pub max_line_bytes: usize,
    /// Stop at the first bad record instead of quarantining it.
    pub strict: bool,
    /// Whether Parquet row groups are read past the page cache.
    pub direct_io: DirectIo,
}

/// Whether Parquet row groups are read past the page cache (`O_DIRECT`, Linux): each row
/// group whole, the next one on another thread while this one is decoded. The device then
/// writes into the reader's memory and the kernel neither copies the bytes nor keeps them —
/// an eighth to a sixth of a whole `analyze` run's CPU over the full `seed` data (35.7 GB on a
/// 24 GiB machine), where caching is futile. Input that the page cache can hold is better read through it (a
/// second run finds it there).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DirectIo {
    /// [`DirectIo::On`] for a table whose files together are larger than the memory the
    /// system has available (`MemAvailable`), else [`DirectIo::Off`]: decided by
    /// [`DirectIo::resolve`] where a table's files are known; a file read alone (without
    /// resolving) is read through the page cache.
    #[default]
    Auto,
    On,
    Off,
}

impl DirectIo {
    /// `Auto` decided for a table of `bytes` bytes; `On` and `Off` stay.
    pub fn resolve(self, bytes: u64) -> DirectIo {
        match self {
            DirectIo::Auto => match memory_available() {
                Some(free) if bytes > free => DirectIo::On,
                _ => DirectIo::Off,
            },
            fixed => fixed,
        }
    }
}

/// The memory the system can give without swapping (`MemAvailable` of `/proc/meminfo`), in
/// bytes; `None` where it is not known.
fn memory_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            batch_size: 8192,
            batch_bytes: 4 << 20,
            max_line_bytes: 8 << 20,
            strict: false,
            direct_io: DirectIo::Auto,
        }
    }
}

#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The keys seen so far in one scan of a table, as 64-bit hashes (8 bytes per distinct
/// key; the chance that two of 100 million distinct keys share a hash is below 0.03%).
pub struct Dedup {
    seen: Mutex<HashSet<u64, BuildHasherDefault<IdentityHasher>>>,
    hasher: foldhash::quality::FixedState,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            seen: Mutex::new(HashSet::default()),
            hasher: foldhash::quality::FixedState::with_seed(0x6469_7374_696c_6c67),
        }
    }
}

impl Dedup {
    /// Marks the keys as seen; returns for each whether it is new.
    fn insert_all(&self, keys: &StringArray) -> Vec<bool> {
        let hashes: Vec<u64> = keys
            .iter()
            .map(|k| self.hasher.hash_one(k.unwrap_or("")))
            .collect();
        let mut seen = self.seen.lock().unwrap();
        hashes.into_iter().map(|h| seen.insert(h)).collect()
    }
}

/// Per-file reading context shared by the format readers.
pub(crate) struct FileReader<'a> {
    pub(crate) table: Table,
    pub(crate) file: &'a InputFile,
    pub(crate) opts: &'a ReadOptions,
    pub(crate) diag: &'a Diagnostics,
    pub(crate) dedup: &'a Dedup,
    /// Whether this reader records figures and bad records (first scan of the file).
    pub(crate) record: bool,
    pub(crate) emit: &'a mut dyn FnMut(RecordBatch) -> ControlFlow<()>,
}

impl FileReader<'_> {
    pub(crate) fn path(&self) -> &Path {
        &self.file.path
    }

    /// Handles a bad record: an error in strict mode, otherwise counted and quarantined.
    pub(crate) fn bad(
        &self,
        at: Location,
        problem: &Problem,
        raw: Raw<'_>,
    ) -> Result<(), IngestError> {
        if self.opts.strict {
            return Err(IngestError::Strict {
                path: self.file.path.clone(),
                location: at,
                field: if problem.field.is_empty() {
                    "-".into()
                } else {
                    problem.field.clone()
                },
                reason: problem.reason,
                detail: problem.detail.clone(),
            });
        }
        if self.record {
            let field = (!problem.field.is_empty()).then_some(problem.field.as_str());
            self.diag.add_bad(
                self.table,
                &self.file.path,
                at,
                problem.reason,
                field,
                &problem.detail,
                raw,
            )?;
        }
        Ok(())
    }

    /// De-duplicates a batch of good rows and hands it on.
    pub(crate) fn deliver(
        &mut self,
        batch: RecordBatch,
        location: impl Fn(usize) -> Location,
    ) -> ControlFlow<()> {
        if batch.num_rows() == 0 {
            return ControlFlow::Continue(());
        }
        let key = batch
            .column(self.table.spec().key)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("keys are strings");
        let fresh = self.dedup.insert_all(key);
        let batch = if fresh.iter().all(|&f| f) {
            batch
        } else {
            if self.record {
                for (i, _) in fresh.iter().enumerate().filter(|(_, f)| !**f) {
                    self.diag
                        .add_duplicate(self.table, &self.file.path, location(i), key.value(i));
                }
            }
            filter_record_batch(&batch, &BooleanArray::from(fresh)).expect("mask matches batch")
        };
        if self.record {
            self.diag.add_rows(self.table, batch.num_rows() as u64);
        }
        (self.emit)(batch)
    }
}

/// Counts bytes read from the file, for progress.
struct Counting<'a, R> {
    inner: R,
    diag: &'a Diagnostics,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.diag.add_bytes_read(n as u64);
        Ok(n)
    }
}

/// Whether this reader is the first of `file` in the load (see [`Diagnostics::claim`]); the
/// first counts the file in the figures.
fn claim_file(table: Table, file: &InputFile, diag: &Diagnostics) -> bool {
    let record = diag.claim(table, &file.path);
    if record {
        diag.add_file(table, file.size);
    }
    record
}

/// Reads one file of `table`, handing good, de-duplicated batches to `emit` until it
/// returns `Break`. Bad records go to `diag` (or fail the read in strict mode). Only the
/// first reader of a file in a load records its figures, so re-scans count nothing twice.
pub fn read_file(
    table: Table,
    file: &InputFile,
    opts: &ReadOptions,
    diag: &Diagnostics,
    dedup: &Dedup,
    emit: &mut dyn FnMut(RecordBatch) -> ControlFlow<()>,
) -> Result<(), IngestError> {
    let record = claim_file(table, file, diag);
    let mut reader = FileReader {
        table,
        file,
        opts,
        diag,
        dedup,
        record,
        emit,
    };
    match file.format {
        Format::Jsonl(c) => read_jsonl(&mut reader, c),
        Format::Parquet => crate::parquet_in::read_parquet(&mut reader),
    }
}

/// The good, de-duplicated batches of one Parquet file, each decoded when it is asked for, on
/// the asking thread: the pull counterpart of [`read_file`]. A query that computes on each
/// batch right after decoding it does so while the batch's text is still in the core's
/// cache. Bad records and figures go to `diag` exactly as with [`read_file`].
pub struct ParquetBatches {
    table: Table,
    file: InputFile,
    opts: ReadOptions,
    diag: Arc<Diagnostics>,
    dedup: Arc<Dedup>,
    record: bool,
    /// Opened on the first request, so that an unreadable file is an item, not a panic.
    cursor: Option<ParquetCursor>,
    /// The file's first row group, being read ahead.
    ahead: Option<ReadAhead>,
    done: bool,
}

impl ParquetBatches {
    /// `None` when `file` is not Parquet (those are read with [`read_file`]).
    pub fn new(
        table: Table,
        file: &InputFile,
        opts: &ReadOptions,
        diag: Arc<Diagnostics>,
        dedup: Arc<Dedup>,
    ) -> Option<Self> {
        if file.format != Format::Parquet {
            return None;
        }
        let record = claim_file(table, file, &diag);
        Some(ParquetBatches {
            table,
            file: file.clone(),
            opts: opts.clone(),
            diag,
            dedup,
            record,
            cursor: None,
            ahead: None,
            done: false,
        })
    }

    /// Uses `ahead` (started for this file) for the file's first row group.
    pub fn with_read_ahead(mut self, ahead: Option<ReadAhead>) -> Self {
        self.ahead = ahead.filter(|a| a.path() == self.file.path);
        self
    }

    /// Decodes one batch of the file into `out` (nothing when all its rows were bad or
    /// duplicates); `Break` once the file is done.
    fn step(&mut self, out: &mut Option<RecordBatch>) -> Result<ControlFlow<()>, IngestError> {
        let mut emit = |batch| {
            *out = Some(batch);
            ControlFlow::Continue(())
        };
        let mut r = FileReader {
            table: self.table,
            file: &self.file,
            opts: &self.opts,
            diag: &self.diag,
            dedup: &self.dedup,
            record: self.record,
            emit: &mut emit,
        };
        let cursor = match self.cursor.take() {
            Some(c) => c,
            None => ParquetCursor::open(&r)?.with_read_ahead(self.ahead.take()),
        };
        self.cursor.insert(cursor).step(&mut r)
    }
}

impl Iterator for ParquetBatches {
    type Item = Result<RecordBatch, IngestError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let mut out = None;
            match self.step(&mut out) {
                Ok(flow) => self.done = flow.is_break(),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            if let Some(batch) = out {
                return Some(Ok(batch));
            }
        }
        None
    }
}

/// Reads every file of a table into memory. For small tables, tools and tests.
pub fn read_table(
    table: Table,
    files: &[InputFile],
    opts: &ReadOptions,
    diag: &Diagnostics,
) -> Result<Vec<RecordBatch>, IngestError> {
    let dedup = Dedup::default();
    let mut out = Vec::new();
    for f in files {
        read_file(table, f, opts, diag, &dedup, &mut |b| {
            out.push(b);
            ControlFlow::Continue(())
        })?;
    }
    Ok(out)
}

fn corrupt(path: &Path, line: u64, e: &io::Error) -> IngestError {
    let what = match e.kind() {
        io::ErrorKind::UnexpectedEof => "the compressed stream is truncated".to_string(),
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
            format!("the compressed stream is corrupt ({e})")
        }
        _ => format!("read error: {e}"),
    };
    IngestError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("{what}, after line {line}"),
    }
}

fn read_jsonl(r: &mut FileReader<'_>, compression: Compression) -> Result<(), IngestError> {
    let path = r.file.path.clone();
    let f = File::open(&path).map_err(|source| IngestError::Io {
        path: path.clone(),
        source,
    })?;
    let counting = Counting {
        inner: f,
        diag: r.diag,
    };
    let inner: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(counting),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            counting,
        ))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(counting).map_err(|e| {
            IngestError::Corrupt {
                path: path.clone(),
                detail: format!("cannot start zstd decoding: {e}"),
            }
        })?),
    };
    let mut lines = LineReader::new(
        BufReader::with_capacity(1 << 20, inner),
        r.opts.max_line_bytes,
    );
    let spec = r.table.spec();
    let mut rows = RowBuilder::new(spec);
    let mut line_nos: Vec<u64> = Vec::with_capacity(r.opts.batch_size);
    let mut pending_bytes = 0usize;
    let limit = r.opts.max_line_bytes;
    loop {
        let at = Location::Line(lines.line_no() + 1);
        let mut spill: Option<crate::diag::StreamedRaw<'_>> = None;
        let mut spill_err: Option<IngestError> = None;
        let quarantine_long = r.record && !r.opts.strict;
        let (table, diag) = (r.table, r.diag);
        let next = lines.next(&mut |chunk| {
            if !quarantine_long || spill_err.is_some() {
                return Ok(());
            }
            let result = match spill.as_mut() {
                Some(s) => s.feed(chunk),
                None => diag
                    .begin_streamed_bad(
                        table,
                        &path,
                        at,
                        BadReason::LineTooLong,
                        &format!("line is longer than the limit of {limit} bytes"),
                    )
                    .and_then(|mut s| {
                        let fed = s.feed(chunk);
                        spill = Some(s);
                        fed
                    }),
            };
            if let Err(e) = result {
                spill_err = Some(e);
            }
            Ok(())
        });
        if let Some(e) = spill_err {
            return Err(e);
        }
        let next = next.map_err(|e| corrupt(&path, lines.line_no(), &e))?;
        match next {
            Next::Eof => break,
            Next::TooLong(total) => {
                if let Some(s) = spill {
                    s.finish()?;
                } else if r.opts.strict {
                    return Err(IngestError::Strict {
                        path: path.clone(),
                        location: at,
                        field: "-".into(),
                        reason: BadReason::LineTooLong,
                        detail: format!(
                            "line of {total} bytes is longer than the limit of {limit} bytes"
                        ),
                    });
                }
            }
            Next::Line => {
                let bytes = lines.line();
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let result = match simdutf8::basic::from_utf8(bytes) {
                    Ok(text) => rows.push_line(text),
                    Err(_) => Err(Problem::new(
                        "",
                        BadReason::InvalidUtf8,
                        format!(
                            "invalid UTF-8 at byte {}",
                            std::str::from_utf8(bytes).map_or_else(|e| e.valid_up_to(), |_| 0)
                        ),
                    )),
                };
                match result {
                    Ok(()) => {
                        line_nos.push(lines.line_no());
                        pending_bytes += bytes.len();
                    }
                    Err(problem) => r.bad(at, &problem, Raw::Bytes(bytes))?,
                }
            }
        }
        if rows.len() >= r.opts.batch_size || pending_bytes >= r.opts.batch_bytes {
            let batch = rows.finish();
            let nos = std::mem::take(&mut line_nos);
            pending_bytes = 0;
            if r.deliver(batch, |i| Location::Line(nos[i])).is_break() {
                return Ok(());
            }
        }
    }
    if rows.len() > 0 {
        let batch = rows.finish();
        let _ = r.deliver(batch, |i| Location::Line(line_nos[i]));
    }
    Ok(())
}
