//! Bookkeeping of what a load read: rows, bad records by reason, duplicates, and the
//! quarantine file where every bad record is written unchanged.
//!
//! One [`Diagnostics`] is shared by every reader of a load (one per command run). A table
//! registered in a query engine may be scanned many times; only the first scan of each file
//! records its figures and its bad records ([`Diagnostics::claim`]), so that a self-join
//! does not quarantine a record twice.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::error::IngestError;
use crate::schema::Table;

/// Why a record was quarantined. The `snake_case` name is the `reason` in the quarantine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BadReason {
    /// Not a JSON object, or not valid JSON at all.
    InvalidJson,
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The line is longer than the configured limit.
    LineTooLong,
    /// A required field is absent, null or empty.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A timestamp is not RFC 3339 with an offset.
    BadTimestamp,
    /// An address is neither IPv4 nor IPv6.
    BadAddress,
    /// A value of the right type but outside what the contract allows.
    BadValue,
}

impl BadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BadReason::InvalidJson => "invalid_json",
            BadReason::InvalidUtf8 => "invalid_utf8",
            BadReason::LineTooLong => "line_too_long",
            BadReason::MissingField => "missing_field",
            BadReason::WrongType => "wrong_type",
            BadReason::BadTimestamp => "bad_timestamp",
            BadReason::BadAddress => "bad_address",
            BadReason::BadValue => "bad_value",
        }
    }
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a record sits in its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// 1-based line of a JSON Lines file.
    Line(u64),
    /// 0-based row group and row within it of a Parquet file.
    Row { row_group: usize, row: usize },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Row { row_group, row } => write!(f, "row group {row_group}, row {row}"),
        }
    }
}

/// Figures of one table of a load.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TableReport {
    pub files: u64,
    pub bytes: u64,
    /// Good, de-duplicated rows delivered.
    pub rows: u64,
    pub bad: BTreeMap<BadReason, u64>,
    pub duplicates: u64,
    /// The first few repeated keys, as `file:location: key`.
    pub duplicate_examples: Vec<String>,
}

impl TableReport {
    pub fn bad_total(&self) -> u64 {
        self.bad.values().sum()
    }
}

/// Figures of a whole load.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadReport {
    pub tables: BTreeMap<Table, TableReport>,
    /// Where bad records were written, if any were.
    pub quarantine: Option<PathBuf>,
}

impl LoadReport {
    pub fn bad_by_reason(&self) -> BTreeMap<BadReason, u64> {
        let mut all = BTreeMap::new();
        for t in self.tables.values() {
            for (r, n) in &t.bad {
                *all.entry(*r).or_insert(0) += n;
            }
        }
        all
    }

    pub fn bad_total(&self) -> u64 {
        self.tables.values().map(TableReport::bad_total).sum()
    }
}

impl Serialize for Table {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

const MAX_DUPLICATE_EXAMPLES: usize = 5;

/// The raw text of a bad record, for the quarantine.
pub enum Raw<'a> {
    /// A whole line as read (decoded lossily if it is not UTF-8).
    Bytes(&'a [u8]),
    /// A Parquet row rendered as a JSON object.
    Json(&'a str),
}

struct Quarantine {
    path: PathBuf,
    out: Option<BufWriter<File>>,
}

/// Shared, thread-safe bookkeeping of one load.
pub struct Diagnostics {
    quarantine: Mutex<Quarantine>,
    tables: Mutex<BTreeMap<Table, TableReport>>,
    claimed: Mutex<HashSet<(Table, PathBuf)>>,
    bytes_read: AtomicU64,
}

impl Diagnostics {
    /// Bad records go to `quarantine`, created (or truncated) when the first one is found.
    pub fn new(quarantine: impl Into<PathBuf>) -> Self {
        Diagnostics {
            quarantine: Mutex::new(Quarantine {
                path: quarantine.into(),
                out: None,
            }),
            tables: Mutex::new(BTreeMap::new()),
            claimed: Mutex::new(HashSet::new()),
            bytes_read: AtomicU64::new(0),
        }
    }

    /// Returns true for the first reader of `path` as `table` in this load, which then records the
    /// file's figures and bad records; later readers of the same file only read it.
    pub fn claim(&self, table: Table, path: &Path) -> bool {
        self.claimed
            .lock()
            .unwrap()
            .insert((table, path.to_path_buf()))
    }

    /// Bytes of input consumed so far, over all files (compressed size for compressed files):
    /// drives progress bars.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    pub(crate) fn add_bytes_read(&self, n: u64) {
        self.bytes_read.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_file(&self, table: Table, bytes: u64) {
        let mut t = self.tables.lock().unwrap();
        let r = t.entry(table).or_default();
        r.files += 1;
        r.bytes += bytes;
    }

    pub(crate) fn add_rows(&self, table: Table, rows: u64) {
        self.tables.lock().unwrap().entry(table).or_default().rows += rows;
    }

    pub(crate) fn add_duplicate(&self, table: Table, source: &Path, at: Location, key: &str) {
        let mut t = self.tables.lock().unwrap();
        let r = t.entry(table).or_default();
        r.duplicates += 1;
        if r.duplicate_examples.len() < MAX_DUPLICATE_EXAMPLES {
            r.duplicate_examples
                .push(format!("{}:{at}: {key}", source.display()));
        }
    }

    fn count_bad(&self, table: Table, reason: BadReason) {
        *self
            .tables
            .lock()
            .unwrap()
            .entry(table)
            .or_default()
            .bad
            .entry(reason)
            .or_insert(0) += 1;
    }

    /// Counts a bad record and writes it to the quarantine.
    #[allow(clippy::too_many_arguments)]
    pub fn add_bad(
        &self,
        table: Table,
        source: &Path,
        at: Location,
        reason: BadReason,
        field: Option<&str>,
        detail: &str,
        raw: Raw<'_>,
    ) -> Result<(), IngestError> {
        self.count_bad(table, reason);
        let raw_text: String = match raw {
            Raw::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Raw::Json(s) => s.to_owned(),
        };
        let source = source.to_string_lossy();
        let line = QuarantineLine::new(table, &source, at, reason, field, detail, &raw_text);
        self.quarantine.lock().unwrap().write_line(&line)
    }

    /// Starts a quarantine record whose raw text arrives in chunks (a line over the size
    /// limit is never held in memory whole). Holds the quarantine until finished.
    pub(crate) fn begin_streamed_bad(
        &self,
        table: Table,
        source: &Path,
        at: Location,
        reason: BadReason,
        detail: &str,
    ) -> Result<StreamedRaw<'_>, IngestError> {
        self.count_bad(table, reason);
        let mut guard = self.quarantine.lock().unwrap();
        let source = source.to_string_lossy();
        let line = QuarantineLine::new(table, &source, at, reason, None, detail, "");
        let mut head = serde_json::to_string(&line).expect("serialising a quarantine line");
        // Drop the closing `"}` of the empty raw string: chunks follow, then `"}`.
        head.truncate(head.len() - 2);
        let path = guard.path.clone();
        guard
            .writer()?
            .write_all(head.as_bytes())
            .map_err(|source| IngestError::Quarantine { path, source })?;
        Ok(StreamedRaw {
            guard,
            pending: Vec::new(),
        })
    }

    /// Flushes the quarantine file.
    pub fn flush(&self) -> Result<(), IngestError> {
        let mut q = self.quarantine.lock().unwrap();
        let path = q.path.clone();
        if let Some(out) = q.out.as_mut() {
            out.flush()
                .map_err(|source| IngestError::Quarantine { path, source })?;
        }
        Ok(())
    }

    /// A snapshot of the figures so far.
    pub fn report(&self) -> LoadReport {
        let q = self.quarantine.lock().unwrap();
        LoadReport {
            tables: self.tables.lock().unwrap().clone(),
            quarantine: q.out.as_ref().map(|_| q.path.clone()),
        }
    }
}

#[derive(Serialize)]
struct QuarantineLine<'a> {
    table: &'a str,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    row_group: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<usize>,
    reason: BadReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    detail: &'a str,
    raw: &'a str,
}

impl<'a> QuarantineLine<'a> {
    fn new(
        table: Table,
        source: &'a str,
        at: Location,
        reason: BadReason,
        field: Option<&'a str>,
        detail: &'a str,
        raw: &'a str,
    ) -> Self {
        let (line, row_group, row) = match at {
            Location::Line(n) => (Some(n), None, None),
            Location::Row { row_group, row } => (None, Some(row_group), Some(row)),
        };
        QuarantineLine {
            table: table.name(),
            source,
            line,
            row_group,
            row,
            reason,
            field,
            detail,
            raw,
        }
    }
}

impl Quarantine {
    fn writer(&mut self) -> Result<&mut BufWriter<File>, IngestError> {
        if self.out.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| IngestError::Quarantine {
                    path: self.path.clone(),
                    source,
                })?;
            }
            let f = File::create(&self.path).map_err(|source| IngestError::Quarantine {
                path: self.path.clone(),
                source,
            })?;
            self.out = Some(BufWriter::new(f));
        }
        Ok(self.out.as_mut().unwrap())
    }

    fn write_line(&mut self, line: &QuarantineLine<'_>) -> Result<(), IngestError> {
        let path = self.path.clone();
        let w = self.writer()?;
        serde_json::to_writer(&mut *w, line)
            .map_err(std::io::Error::from)
            .and_then(|()| w.write_all(b"\n"))
            .map_err(|source| IngestError::Quarantine { path, source })
    }
}

/// A quarantine record being written chunk by chunk; see [`Diagnostics::begin_streamed_bad`].
pub(crate) struct StreamedRaw<'d> {
    guard: std::sync::MutexGuard<'d, Quarantine>,
    /// Bytes of an incomplete UTF-8 sequence at the end of the previous chunk.
    pending: Vec<u8>,
}

impl StreamedRaw<'_> {
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), IngestError> {
        let mut text = String::new();
        let mut bytes: &[u8] = chunk;
        let joined;
        if !self.pending.is_empty() {
            joined = [std::mem::take(&mut self.pending).as_slice(), chunk].concat();
            bytes = &joined;
        }
        loop {
            match std::str::from_utf8(bytes) {
                Ok(s) => {
                    text.push_str(s);
                    break;
                }
                Err(e) => {
                    let (good, rest) = bytes.split_at(e.valid_up_to());
                    text.push_str(std::str::from_utf8(good).unwrap());
                    match e.error_len() {
                        Some(n) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            bytes = &rest[n..];
                        }
                        None => {
                            self.pending = rest.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        self.write_escaped(&text)
    }

    fn write_escaped(&mut self, text: &str) -> Result<(), IngestError> {
        if text.is_empty() {
            return Ok(());
        }
        let quoted = serde_json::to_string(text).expect("serialising a string");
        let path = self.guard.path.clone();
        self.guard
            .writer()?
            .write_all(&quoted.as_bytes()[1..quoted.len() - 1])
            .map_err(|source| IngestError::Quarantine { path, source })
    }

    pub(crate) fn finish(mut self) -> Result<(), IngestError> {
        if !self.pending.is_empty() {
            self.pending.clear();
            self.write_escaped("\u{FFFD}")?;
        }
        let path = self.guard.path.clone();
        self.guard
            .writer()?
            .write_all(b"\"}\n")
            .map_err(|source| IngestError::Quarantine { path, source })
    }
}
