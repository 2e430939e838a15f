//! Parquet pages of LZ4_RAW, Zstandard and uncompressed column chunks, read and decompressed
//! here and decoded by the `parquet` crate's own Arrow readers.
//!
//! The crate's page reader zero-fills every page buffer before decompressing into it: for
//! prompt text that is a second pass over gigabytes of memory, about a twentieth of a whole
//! `analyze` run. Its decompressor is not pluggable, but its Arrow decoding is built on public
//! traits ([`RowGroups`], [`PageIterator`], [`PageReader`]), so this module supplies the
//! pages: it reads them one by one, parses each page header (Thrift compact protocol, the
//! few fields a page needs) and decompresses straight into uninitialised memory — LZ4_RAW with
//! the reference C decoder, Zstandard with the `zstd` crate. Column chunks in any other codec
//! (Snappy, gzip, Brotli, LZ4 with Hadoop framing) are left to the `parquet` crate
//! ([`supported`] says which row groups this module can read).

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use parquet::arrow::arrow_reader::RowGroups;
use parquet::basic::{Compression, Encoding};
use parquet::column::page::{Page, PageIterator, PageMetadata, PageReader};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData, RowGroupMetaData};

/// Whether every column chunk of row group `rg` among `leaves` (leaf column indices) is in a
/// codec this module decompresses.
pub(crate) fn supported(meta: &ParquetMetaData, rg: usize, leaves: &[usize]) -> bool {
    let group = meta.row_group(rg);
    leaves.iter().all(|&i| {
        i < group.num_columns()
            && matches!(
                group.column(i).compression(),
                Compression::LZ4_RAW | Compression::ZSTD(_) | Compression::UNCOMPRESSED
            )
    })
}

/// One row group of a file, its column chunks read on demand (or sliced from the row group's
/// bytes when they were read ahead).
pub(crate) struct RowGroupPages {
    file: File,
    meta: Arc<ParquetMetaData>,
    rg: usize,
    loaded: Option<Loaded>,
}

impl RowGroupPages {
    pub(crate) fn new(file: File, meta: Arc<ParquetMetaData>, rg: usize) -> Self {
        Self {
            file,
            meta,
            rg,
            loaded: None,
        }
    }

    /// Pages sliced from `loaded` where it covers them, read from `file` elsewhere.
    pub(crate) fn with_loaded(mut self, loaded: Option<Loaded>) -> Self {
        self.loaded = loaded;
        self
    }
}

/// Bytes of a file read ahead: `bytes` start at offset `base`.
#[derive(Clone, Debug)]
pub(crate) struct Loaded {
    pub(crate) base: u64,
    pub(crate) bytes: Bytes,
}

impl Loaded {
    /// `len` bytes at `pos`, if they were read.
    fn get(&self, pos: u64, len: usize) -> Option<Bytes> {
        let from = usize::try_from(pos.checked_sub(self.base)?).ok()?;
        let to = from.checked_add(len)?;
        (to <= self.bytes.len()).then(|| self.bytes.slice(from..to))
    }
}

/// The byte range holding the column chunks `leaves` of row group `rg`, if their offsets are
/// sane.
pub(crate) fn row_group_span(
    meta: &ParquetMetaData,
    rg: usize,
    leaves: &[usize],
) -> Option<(u64, u64)> {
    let group = meta.row_group(rg);
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for &i in leaves {
        let (start, end) = chunk_range(group.columns().get(i)?)?;
        lo = lo.min(start);
        hi = hi.max(end);
    }
    (lo < hi).then_some((lo, hi))
}

/// The byte range of a column chunk (from its dictionary page, if any), `None` when its offset
/// or length is negative or their sum overflows (damaged metadata).
fn chunk_range(col: &ColumnChunkMetaData) -> Option<(u64, u64)> {
    let start = col
        .dictionary_page_offset()
        .filter(|&d| d > 0)
        .unwrap_or(col.data_page_offset());
    let start = u64::try_from(start).ok()?;
    Some((
        start,
        start.checked_add(u64::try_from(col.compressed_size()).ok()?)?,
    ))
}

/// `len` bytes at `pos` of the file at `path`, read through the page cache.
fn read_buffered(path: &std::path::Path, pos: u64, len: usize) -> std::io::Result<Bytes> {
    read_at(&File::open(path)?, pos, len).map_err(std::io::Error::other)
}

/// Reads `len` bytes at `pos` of the file at `path` past the page cache (`O_DIRECT`): the
/// device writes straight into this memory, so the kernel neither copies the bytes nor keeps
/// them. Falls back to an ordinary read where the file system does not allow it.
#[cfg(target_os = "linux")]
pub(crate) fn read_direct(path: &std::path::Path, pos: u64, len: usize) -> std::io::Result<Bytes> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    const ALIGN: u64 = 4096;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return read_buffered(path, pos, len),
        Err(e) => return Err(e),
    };
    let start = pos & !(ALIGN - 1);
    // Offsets from damaged metadata may be anywhere: beyond what `pread` takes is an error.
    let end = (pos.checked_add(len as u64))
        .and_then(|end| end.checked_next_multiple_of(ALIGN))
        .filter(|&end| libc::off_t::try_from(end).is_ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{len} bytes at {pos} is beyond what the system can read"),
            )
        })?;
    let span = (end - start) as usize;
    let mut buf = POOL.take(span + ALIGN as usize);
    let skew = buf.as_ptr().align_offset(ALIGN as usize);
    let mut done = 0usize;
    while done < span {
        // SAFETY: `pread` writes at most `span - done` bytes from `skew + done`, inside the
        // vector's capacity of at least `span + ALIGN` (and `skew < ALIGN`).
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(skew + done).cast(),
                span - done,
                (start + done as u64) as libc::off_t,
            )
        };
        match n {
            n if n > 0 => done += n as usize,
            0 => break,
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                if e.raw_os_error() == Some(libc::EINVAL) {
                    return read_buffered(path, pos, len);
                }
                return Err(e);
            }
        }
    }
    let from = (pos - start) as usize;
    if done < from + len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("expected {len} bytes at {pos}, the file ends first"),
        ));
    }
    // SAFETY: `pread` initialised `done` bytes from `skew` on; the `skew` bytes before them
    // are never handed out (the slice below starts after them) but must be initialised for
    // `set_len`: they are written here.
    unsafe {
        std::ptr::write_bytes(buf.as_mut_ptr(), 0, skew);
        buf.set_len(skew + done);
    }
    Ok(POOL.share(buf).slice(skew + from..skew + from + len))
}

/// Buffers of row groups read past the page cache, kept for the next ones: a new buffer of
/// tens of megabytes is mapped afresh by the allocator, and the kernel faults in and zeroes
/// every page of it — which cost about as much as the copy that reading past the page cache
/// saves.
#[cfg(any(target_os = "linux", test))]
struct BufferPool {
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
    /// Buffers kept at most.
    keep: usize,
}

/// The pool of [`read_direct`]: six buffers, a row group being decoded and one being read
/// per reading core, and the next file's first.
#[cfg(target_os = "linux")]
static POOL: BufferPool = BufferPool::new(6);

#[cfg(any(target_os = "linux", test))]
impl BufferPool {
    const fn new(keep: usize) -> Self {
        BufferPool {
            spare: std::sync::Mutex::new(Vec::new()),
            keep,
        }
    }

    /// An empty buffer of at least `capacity` bytes, a spare one if one is large enough.
    fn take(&self, capacity: usize) -> Vec<u8> {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        match spare.iter().position(|b| b.capacity() >= capacity) {
            Some(i) => {
                let mut buf = spare.swap_remove(i);
                buf.clear();
                buf
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// `buf` as shared bytes that go back to this pool once no slice of them is left.
    fn share(&'static self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Spare { buf, pool: self })
    }
}

/// A buffer that goes back to its pool when dropped.
#[cfg(any(target_os = "linux", test))]
struct Spare {
    buf: Vec<u8>,
    pool: &'static BufferPool,
}

#[cfg(any(target_os = "linux", test))]
impl AsRef<[u8]> for Spare {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

#[cfg(any(target_os = "linux", test))]
impl Drop for Spare {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut spare = self.pool.spare.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < self.pool.keep {
            spare.push(buf);
        }
    }
}

/// Without `O_DIRECT`: an ordinary read.
#[cfg(not(target_os = "linux"))]
pub(crate) fn read_direct(path: &std::path::Path, pos: u64, len: usize) -> std::io::Result<Bytes> {
    read_buffered(path, pos, len)
}

impl RowGroups for RowGroupPages {
    fn num_rows(&self) -> usize {
        self.meta.row_group(self.rg).num_rows().max(0) as usize
    }

    fn column_chunks(&self, i: usize) -> Result<Box<dyn PageIterator>> {
        let group = self.meta.row_group(self.rg);
        if i >= group.num_columns() {
            return Err(general(format!("no column {i} in row group {}", self.rg)));
        }
        let col = group.column(i);
        let (start, end) = chunk_range(col).ok_or_else(|| {
            general(format!(
                "column chunk {i} has a negative or overflowing offset or length"
            ))
        })?;
        let codec = match col.compression() {
            Compression::LZ4_RAW => Codec::Lz4Raw,
            Compression::ZSTD(_) => Codec::Zstd,
            Compression::UNCOMPRESSED => Codec::None,
            other => return Err(general(format!("codec {other} is not read here"))),
        };
        let pages = ChunkPages {
            file: self.file.try_clone()?,
            loaded: self.loaded.clone(),
            pos: start,
            end,
            codec,
            zstd: None,
            next: None,
        };
        Ok(Box::new(OneChunk(Some(Box::new(pages)))))
    }

    fn row_groups(&self) -> Box<dyn Iterator<Item = &RowGroupMetaData> + '_> {
        Box::new(std::iter::once(self.meta.row_group(self.rg)))
    }

    fn metadata(&self) -> &ParquetMetaData {
        &self.meta
    }
}

/// The page readers of one column: a single column chunk.
struct OneChunk(Option<Box<dyn PageReader>>);

impl Iterator for OneChunk {
    type Item = Result<Box<dyn PageReader>>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.take().map(Ok)
    }
}

impl PageIterator for OneChunk {}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Codec {
    None,
    Lz4Raw,
    Zstd,
}

/// The pages of one column chunk, read one by one (as the `parquet` crate does: a chunk of
/// prompt text is tens of megabytes, a page one or two).
struct ChunkPages {
    /// The row group's bytes, when they were read ahead.
    loaded: Option<Loaded>,
    file: File,
    /// The next page's offset in the file and the chunk's end.
    pos: u64,
    end: u64,
    codec: Codec,
    /// A Zstandard context, made at the first Zstandard page and kept for the others.
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    /// The next data or dictionary page's header, parsed by a peek.
    next: Option<Next>,
}

/// A parsed page header, its length, and the bytes read to parse it (from the header's start;
/// a small page's body is often among them).
struct Next {
    header: Header,
    len: u64,
    read: Bytes,
}

/// Bytes read to find a page header; more when a header is longer (large statistics).
const HEADER_READ: u64 = 1024;

impl ChunkPages {
    fn read(&self, pos: u64, len: usize) -> Result<Bytes> {
        match self.loaded.as_ref().and_then(|l| l.get(pos, len)) {
            Some(bytes) => Ok(bytes),
            None => read_at(&self.file, pos, len),
        }
    }

    /// The next data or dictionary page's header and the length of the header (index pages
    /// are passed over); `None` at the end of the chunk.
    fn header(&mut self) -> Result<Option<(Header, u64)>> {
        if let Some(n) = &self.next {
            return Ok(Some((n.header, n.len)));
        }
        loop {
            let remaining = self.end.saturating_sub(self.pos);
            if remaining == 0 {
                return Ok(None);
            }
            let mut want = HEADER_READ.min(remaining);
            let (h, len, read) = loop {
                let bytes = self.read(self.pos, want as usize)?;
                match Header::parse(&bytes) {
                    Ok((h, len)) => break (h, len as u64, bytes),
                    Err(_) if want < remaining => want = (want * 16).min(remaining),
                    Err(e) => return Err(e),
                }
            };
            let body = u64::from(h.compressed);
            if body > remaining - len {
                return Err(general(format!(
                    "page of {body} bytes runs past the end of its column chunk"
                )));
            }
            if h.kind == Kind::Other {
                self.pos += len + body;
                continue;
            }
            self.next = Some(Next {
                header: h,
                len,
                read,
            });
            return Ok(Some((h, len)));
        }
    }

    fn decompress(&mut self, h: &Header, body: Bytes) -> Result<Bytes> {
        let size = h.uncompressed as usize;
        let (levels, compressed) = match h.kind {
            Kind::DataV2 {
                levels_len,
                compressed,
                ..
            } => (levels_len as usize, compressed),
            _ => (0, true),
        };
        if self.codec == Codec::None || !compressed {
            if body.len() != size {
                return Err(general(format!(
                    "uncompressed page of {} bytes, its header says {size}",
                    body.len()
                )));
            }
            return Ok(body);
        }
        if levels > size || levels > body.len() {
            return Err(general("page levels longer than the page".into()));
        }
        // LZ4 expands at most 255 to 1: a larger claimed size is a corrupt header, not a
        // reason to allocate it. (Zstandard has no such bound; a page is at most 2 GiB.)
        if self.codec == Codec::Lz4Raw
            && size - levels > (body.len() - levels).saturating_mul(255) + 64
        {
            return Err(general(format!(
                "page claims {size} bytes from {} compressed",
                body.len()
            )));
        }
        let values = if size == levels {
            Vec::new()
        } else if self.codec == Codec::Zstd {
            let zstd = match &mut self.zstd {
                Some(z) => z,
                None => self.zstd.insert(
                    zstd::bulk::Decompressor::new()
                        .map_err(|e| general(format!("Zstandard: {e}")))?,
                ),
            };
            // Written into the vector's spare capacity: no zero-fill.
            let mut out = Vec::with_capacity(size - levels);
            zstd.decompress_to_buffer(&body[levels..], &mut out)
                .map_err(|e| general(format!("Zstandard page: {e}")))?;
            out
        } else {
            lz4_block(&body[levels..], size - levels)?
        };
        if values.len() != size - levels {
            return Err(general(format!(
                "page decompressed to {} bytes, its header says {}",
                values.len(),
                size - levels
            )));
        }
        if levels == 0 {
            return Ok(Bytes::from(values));
        }
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&body[..levels]);
        out.extend_from_slice(&values);
        Ok(Bytes::from(out))
    }
}

impl Iterator for ChunkPages {
    type Item = Result<Page>;
    fn next(&mut self) -> Option<Self::Item> {
        self.get_next_page().transpose()
    }
}

impl PageReader for ChunkPages {
    fn get_next_page(&mut self) -> Result<Option<Page>> {
        // Parses the next header unless a peek already has.
        self.header()?;
        let Some(Next {
            header: h,
            len,
            read,
        }) = self.next.take()
        else {
            return Ok(None);
        };
        let (start, end) = (len as usize, len as usize + h.compressed as usize);
        let body = if end <= read.len() {
            read.slice(start..end)
        } else {
            self.read(self.pos + len, h.compressed as usize)?
        };
        self.pos += len + u64::from(h.compressed);
        let buf = self.decompress(&h, body)?;
        let count = |n: i32| {
            u32::try_from(n).map_err(|_| general(format!("negative count {n} in a page header")))
        };
        Ok(Some(match h.kind {
            Kind::Dictionary {
                values,
                encoding,
                sorted,
            } => Page::DictionaryPage {
                buf,
                num_values: count(values)?,
                encoding,
                is_sorted: sorted,
            },
            Kind::DataV1 {
                values,
                encoding,
                def,
                rep,
            } => Page::DataPage {
                buf,
                num_values: count(values)?,
                encoding,
                def_level_encoding: def,
                rep_level_encoding: rep,
                statistics: None,
            },
            Kind::DataV2 {
                values,
                nulls,
                rows,
                encoding,
                def_len,
                levels_len,
                compressed,
            } => Page::DataPageV2 {
                buf,
                num_values: count(values)?,
                encoding,
                num_nulls: count(nulls)?,
                num_rows: count(rows)?,
                def_levels_byte_len: count(def_len)?,
                rep_levels_byte_len: count(levels_len - def_len)?,
                is_compressed: compressed,
                statistics: None,
            },
            Kind::Other => unreachable!("header() passes over other pages"),
        }))
    }

    fn peek_next_page(&mut self) -> Result<Option<PageMetadata>> {
        Ok(self.header()?.map(|(h, _)| match h.kind {
            Kind::Dictionary { .. } => PageMetadata {
                num_rows: None,
                num_levels: None,
                is_dict: true,
            },
            Kind::DataV1 { values, .. } => PageMetadata {
                num_rows: None,
                num_levels: Some(values.max(0) as usize),
                is_dict: false,
            },
            Kind::DataV2 { values, rows, .. } => PageMetadata {
                num_rows: Some(rows.max(0) as usize),
                num_levels: Some(values.max(0) as usize),
                is_dict: false,
            },
            Kind::Other => unreachable!("header() passes over other pages"),
        }))
    }

    fn skip_next_page(&mut self) -> Result<()> {
        if let Some((h, len)) = self.header()? {
            self.next = None;
            self.pos += len + u64::from(h.compressed);
        }
        Ok(())
    }

    fn at_record_boundary(&mut self) -> Result<bool> {
        // As the `parquet` crate's reader: the chunk's end is a boundary, and so is the start
        // of a V2 data page (the format requires them to start records); a V1 page may
        // continue the last record of the page before it.
        Ok(match self.peek_next_page()? {
            None => true,
            Some(m) => m.num_rows.is_some(),
        })
    }
}

/// Decompresses one LZ4 block of `size` bytes into new, uninitialised memory, with the
/// reference implementation's bounds-checked decoder (about a fifth faster on prompt text
/// than `lz4_flex`, the parquet crate's).
fn lz4_block(input: &[u8], size: usize) -> Result<Vec<u8>> {
    let (Ok(n_in), Ok(n_out)) = (i32::try_from(input.len()), i32::try_from(size)) else {
        return Err(general("LZ4 page larger than 2 GiB".into()));
    };
    let mut out = Vec::<u8>::with_capacity(size);
    // SAFETY: `LZ4_decompress_safe` reads at most `n_in` bytes of `input` and writes at most
    // `n_out` bytes to `out`'s capacity, whatever the input (it is the decoder for untrusted
    // data); it returns the bytes written, or a negative number for malformed input.
    let written = unsafe {
        lz4_sys::LZ4_decompress_safe(input.as_ptr().cast(), out.as_mut_ptr().cast(), n_in, n_out)
    };
    if written != n_out {
        return Err(general(format!(
            "LZ4 page: {}",
            if written < 0 {
                "malformed data".to_string()
            } else {
                format!("{written} bytes, its header says {size}")
            }
        )));
    }
    // SAFETY: the decoder initialised exactly `size` bytes.
    unsafe { out.set_len(size) };
    Ok(out)
}

/// Reads `len` bytes at `pos` with `pread`, into new, uninitialised memory: one system call
/// per page, where the `parquet` crate's `ChunkReader::get_bytes` for a `File` duplicates the
/// descriptor, seeks, reads and closes the duplicate.
#[cfg(unix)]
fn read_at(file: &File, pos: u64, len: usize) -> Result<Bytes> {
    use std::os::fd::AsRawFd;
    let mut buf = Vec::<u8>::with_capacity(len);
    let mut done = 0;
    while done < len {
        let at = libc::off_t::try_from(pos + done as u64)
            .map_err(|_| general(format!("offset {pos} is beyond what the system can read")))?;
        // SAFETY: `pread` writes at most `len - done` bytes, into the vector's capacity from
        // `done` on; the descriptor is open for as long as `file` lives.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(done).cast(),
                len - done,
                at,
            )
        };
        match n {
            n if n > 0 => done += n as usize,
            0 => {
                return Err(ParquetError::EOF(format!(
                    "expected {len} bytes at {pos}, the file ends after {done}"
                )));
            }
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(general(format!("reading {len} bytes at {pos}: {e}")));
                }
            }
        }
    }
    // SAFETY: `pread` initialised all `len` bytes.
    unsafe { buf.set_len(len) };
    Ok(Bytes::from(buf))
}

#[cfg(not(unix))]
fn read_at(file: &File, pos: u64, len: usize) -> Result<Bytes> {
    parquet::file::reader::ChunkReader::get_bytes(file, pos, len)
}

fn general(msg: String) -> ParquetError {
    ParquetError::General(msg)
}

/// What a page header says, the fields the readers need.
#[derive(Clone, Copy, Debug)]
struct Header {
    kind: Kind,
    uncompressed: u32,
    compressed: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    DataV1 {
        values: i32,
        encoding: Encoding,
        def: Encoding,
        rep: Encoding,
    },
    Dictionary {
        values: i32,
        encoding: Encoding,
        sorted: bool,
    },
    DataV2 {
        values: i32,
        nulls: i32,
        rows: i32,
        encoding: Encoding,
        /// Bytes of definition levels, and of definition and repetition levels together.
        def_len: i32,
        levels_len: i32,
        compressed: bool,
    },
    /// Index pages and page types from later versions of the format: passed over.
    Other,
}

// Page types of the format.
const DATA_PAGE: i32 = 0;
const DICTIONARY_PAGE: i32 = 2;
const DATA_PAGE_V2: i32 = 3;

impl Header {
    /// Parses a `PageHeader` at the start of `buf`; returns it and its length in bytes.
    fn parse(buf: &[u8]) -> Result<(Header, usize)> {
        let mut p = Compact { buf, pos: 0 };
        let (mut page_type, mut uncompressed, mut compressed) = (None, None, None);
        let (mut v1, mut dict, mut v2) = (None, None, None);
        p.fields(|p, id, ty| {
            match (id, ty) {
                (1, T_I32) => page_type = Some(p.i32()?),
                (2, T_I32) => uncompressed = Some(p.i32()?),
                (3, T_I32) => compressed = Some(p.i32()?),
                (5, T_STRUCT) => v1 = Some(p.data_v1()?),
                (7, T_STRUCT) => dict = Some(p.dictionary()?),
                (8, T_STRUCT) => v2 = Some(p.data_v2()?),
                _ => p.skip(ty, 0)?,
            }
            Ok(())
        })?;
        let (Some(page_type), Some(uncompressed), Some(compressed)) =
            (page_type, uncompressed, compressed)
        else {
            return Err(general("page header without type or sizes".into()));
        };
        let (Ok(uncompressed), Ok(compressed)) =
            (u32::try_from(uncompressed), u32::try_from(compressed))
        else {
            return Err(general("page header with a negative size".into()));
        };
        let missing = |what: &str| general(format!("page header without its {what} header"));
        let kind = match page_type {
            DATA_PAGE => v1.ok_or_else(|| missing("data page"))?,
            DICTIONARY_PAGE => dict.ok_or_else(|| missing("dictionary page"))?,
            DATA_PAGE_V2 => v2.ok_or_else(|| missing("data page V2"))?,
            _ => Kind::Other,
        };
        Ok((
            Header {
                kind,
                uncompressed,
                compressed,
            },
            p.pos,
        ))
    }
}

// Thrift compact protocol field types.
const T_TRUE: u8 = 1;
const T_FALSE: u8 = 2;
const T_BYTE: u8 = 3;
const T_I16: u8 = 4;
const T_I32: u8 = 5;
const T_I64: u8 = 6;
const T_DOUBLE: u8 = 7;
const T_BINARY: u8 = 8;
const T_LIST: u8 = 9;
const T_SET: u8 = 10;
const T_MAP: u8 = 11;
const T_STRUCT: u8 = 12;

/// Nesting deeper than this in a page header is corrupt data (the format nests three deep).
const MAX_DEPTH: u32 = 16;

/// A reader of the Thrift compact protocol, enough for page headers.
struct Compact<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| general("page header cut short".into()))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(general("over-long integer in a page header".into()))
    }

    fn i64(&mut self) -> Result<i64> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn i32(&mut self) -> Result<i32> {
        i32::try_from(self.i64()?)
            .map_err(|_| general("integer out of range in a page header".into()))
    }

    fn encoding(&mut self) -> Result<Encoding> {
        #[allow(deprecated)]
        Ok(match self.i32()? {
            0 => Encoding::PLAIN,
            2 => Encoding::PLAIN_DICTIONARY,
            3 => Encoding::RLE,
            4 => Encoding::BIT_PACKED,
            5 => Encoding::DELTA_BINARY_PACKED,
            6 => Encoding::DELTA_LENGTH_BYTE_ARRAY,
            7 => Encoding::DELTA_BYTE_ARRAY,
            8 => Encoding::RLE_DICTIONARY,
            9 => Encoding::BYTE_STREAM_SPLIT,
            e => return Err(general(format!("unknown encoding {e} in a page header"))),
        })
    }

    fn skip_bytes(&mut self, n: u64) -> Result<()> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| general("page header cut short".into()))?;
        self.pos = end;
        Ok(())
    }

    /// Calls `f` with each field of a struct (id and type) until its end; `f` reads or skips
    /// the value. A boolean field's value is its type.
    fn fields(&mut self, mut f: impl FnMut(&mut Self, i16, u8) -> Result<()>) -> Result<()> {
        let mut last = 0i16;
        loop {
            let b = self.byte()?;
            if b == 0 {
                return Ok(());
            }
            let ty = b & 0x0F;
            let delta = b >> 4;
            let id = if delta == 0 {
                i16::try_from(self.i64()?)
                    .map_err(|_| general("field id out of range in a page header".into()))?
            } else {
                last.wrapping_add(i16::from(delta))
            };
            last = id;
            f(self, id, ty)?;
        }
    }

    fn skip(&mut self, ty: u8, depth: u32) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(general("page header nested too deep".into()));
        }
        match ty {
            T_TRUE | T_FALSE => Ok(()),
            T_BYTE => self.skip_bytes(1),
            T_I16 | T_I32 | T_I64 => self.varint().map(drop),
            T_DOUBLE => self.skip_bytes(8),
            T_BINARY => {
                let n = self.varint()?;
                self.skip_bytes(n)
            }
            T_LIST | T_SET => {
                let b = self.byte()?;
                let n = match b >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                self.skip_elements(b & 0x0F, n, depth)
            }
            T_MAP => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                for _ in 0..n {
                    self.skip_elements(kv >> 4, 1, depth)?;
                    self.skip_elements(kv & 0x0F, 1, depth)?;
                }
                Ok(())
            }
            T_STRUCT => self.fields(|p, _, ty| p.skip(ty, depth + 1)),
            _ => Err(general(format!("unknown field type {ty} in a page header"))),
        }
    }

    /// Skips `n` collection elements of type `ty` (booleans take a byte each there).
    fn skip_elements(&mut self, ty: u8, n: u64, depth: u32) -> Result<()> {
        // Every element takes at least one byte.
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(general("page header cut short".into()));
        }
        for _ in 0..n {
            match ty {
                T_TRUE | T_FALSE => self.skip_bytes(1)?,
                _ => self.skip(ty, depth + 1)?,
            }
        }
        Ok(())
    }

    fn bool_field(ty: u8) -> Result<bool> {
        match ty {
            T_TRUE => Ok(true),
            T_FALSE => Ok(false),
            _ => Err(general(format!(
                "field of type {ty} where a boolean was expected"
            ))),
        }
    }

    fn data_v1(&mut self) -> Result<Kind> {
        let (mut values, mut encoding, mut def, mut rep) = (None, None, None, None);
        self.fields(|p, id, ty| {
            match (id, ty) {
                (1, T_I32) => values = Some(p.i32()?),
                (2, T_I32) => encoding = Some(p.encoding()?),
                (3, T_I32) => def = Some(p.encoding()?),
                (4, T_I32) => rep = Some(p.encoding()?),
                _ => p.skip(ty, 1)?,
            }
            Ok(())
        })?;
        match (values, encoding, def, rep) {
            (Some(values), Some(encoding), Some(def), Some(rep)) => Ok(Kind::DataV1 {
                values,
                encoding,
                def,
                rep,
            }),
            _ => Err(general("incomplete data page header".into())),
        }
    }

    fn dictionary(&mut self) -> Result<Kind> {
        let (mut values, mut encoding, mut sorted) = (None, None, false);
        self.fields(|p, id, ty| {
            match (id, ty) {
                (1, T_I32) => values = Some(p.i32()?),
                (2, T_I32) => encoding = Some(p.encoding()?),
                (3, T_TRUE | T_FALSE) => sorted = Self::bool_field(ty)?,
                _ => p.skip(ty, 1)?,
            }
            Ok(())
        })?;
        match (values, encoding) {
            (Some(values), Some(encoding)) => Ok(Kind::Dictionary {
                values,
                encoding,
                sorted,
            }),
            _ => Err(general("incomplete dictionary page header".into())),
        }
    }

    fn data_v2(&mut self) -> Result<Kind> {
        let (mut values, mut nulls, mut rows, mut encoding) = (None, None, None, None);
        let (mut def_len, mut rep_len, mut compressed) = (None, None, true);
        self.fields(|p, id, ty| {
            match (id, ty) {
                (1, T_I32) => values = Some(p.i32()?),
                (2, T_I32) => nulls = Some(p.i32()?),
                (3, T_I32) => rows = Some(p.i32()?),
                (4, T_I32) => encoding = Some(p.encoding()?),
                (5, T_I32) => def_len = Some(p.i32()?),
                (6, T_I32) => rep_len = Some(p.i32()?),
                (7, T_TRUE | T_FALSE) => compressed = Self::bool_field(ty)?,
                _ => p.skip(ty, 1)?,
            }
            Ok(())
        })?;
        match (values, nulls, rows, encoding, def_len, rep_len) {
            (Some(values), Some(nulls), Some(rows), Some(encoding), Some(d), Some(r))
                if d >= 0 && r >= 0 =>
            {
                Ok(Kind::DataV2 {
                    values,
                    nulls,
                    rows,
                    encoding,
                    def_len: d,
                    levels_len: d.checked_add(r).ok_or_else(|| {
                        general("level lengths out of range in a page header".into())
                    })?,
                    compressed,
                })
            }
            _ => Err(general("incomplete or negative data page V2 header".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        ArrayRef, Int32Array, ListBuilder, RecordBatch, StringArray, StringBuilder, StructBuilder,
    };
    use arrow::datatypes::{DataType, Field, Fields};
    use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
    use parquet::arrow::{ArrowWriter, ProjectionMask, parquet_to_arrow_field_levels};
    use parquet::file::properties::{WriterProperties, WriterVersion};

    /// A batch with nulls, repeated values (for dictionaries) and nested lists of structs
    /// (empty, null and long), like the exchanges table's messages.
    fn batch(rows: usize) -> RecordBatch {
        let ints: Int32Array = (0..rows)
            .map(|i| (i % 7 != 3).then_some(i as i32 * 31))
            .collect();
        let words: StringArray = (0..rows)
            .map(|i| (i % 5 != 0).then(|| format!("value {}", i % 13)))
            .collect();
        let fields = Fields::from(vec![
            Field::new("role", DataType::Utf8, true),
            Field::new("content", DataType::Utf8, true),
        ]);
        let mut lists = ListBuilder::new(StructBuilder::from_fields(fields.clone(), rows));
        for i in 0..rows {
            if i % 11 == 4 {
                lists.append(false);
                continue;
            }
            for k in 0..(i % 4) {
                let s = lists.values();
                s.field_builder::<StringBuilder>(0)
                    .unwrap()
                    .append_value(["user", "assistant"][k % 2]);
                let text = format!("message {k} of row {i}: ").repeat(1 + (i * 7 + k) % 40);
                s.field_builder::<StringBuilder>(1)
                    .unwrap()
                    .append_option((k != 2).then_some(text));
                s.append(true);
            }
            lists.append(true);
        }
        RecordBatch::try_from_iter(vec![
            ("n", Arc::new(ints) as ArrayRef),
            ("word", Arc::new(words) as ArrayRef),
            ("messages", Arc::new(lists.finish()) as ArrayRef),
        ])
        .unwrap()
    }

    fn write(props: WriterProperties, rows: usize) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let b = batch(rows);
        let mut w = ArrowWriter::try_new(f.reopen().unwrap(), b.schema(), Some(props)).unwrap();
        for chunk in 0..3 {
            w.write(&b.slice(chunk * rows / 3, rows / 3)).unwrap();
        }
        w.close().unwrap();
        f
    }

    /// Every batch of `file` read through this module's pages.
    fn read_here(file: &File) -> Result<Vec<RecordBatch>> {
        let meta = ParquetRecordBatchReaderBuilder::try_new(file.try_clone().unwrap())?
            .metadata()
            .clone();
        let schema = parquet::arrow::parquet_to_arrow_schema(
            meta.file_metadata().schema_descr(),
            meta.file_metadata().key_value_metadata(),
        )?;
        let levels = parquet_to_arrow_field_levels(
            meta.file_metadata().schema_descr(),
            ProjectionMask::all(),
            Some(schema.fields()),
        )?;
        let mut out = Vec::new();
        for rg in 0..meta.num_row_groups() {
            let leaves: Vec<usize> =
                (0..meta.file_metadata().schema_descr().num_columns()).collect();
            assert!(supported(&meta, rg, &leaves));
            let pages = RowGroupPages::new(file.try_clone().unwrap(), meta.clone(), rg);
            for b in ParquetRecordBatchReader::try_new_with_row_groups(&levels, &pages, 100, None)?
            {
                out.push(b.map_err(|e| general(e.to_string()))?);
            }
        }
        Ok(out)
    }

    fn read_there(file: &File) -> Vec<RecordBatch> {
        ParquetRecordBatchReaderBuilder::try_new(file.try_clone().unwrap())
            .unwrap()
            .with_batch_size(100)
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    }

    fn concat(batches: &[RecordBatch]) -> RecordBatch {
        arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap()
    }

    #[test]
    fn pages_read_here_match_the_parquet_readers() {
        for codec in [
            Compression::LZ4_RAW,
            Compression::ZSTD(Default::default()),
            Compression::UNCOMPRESSED,
        ] {
            for version in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0] {
                for dictionary in [false, true] {
                    let props = WriterProperties::builder()
                        .set_compression(codec)
                        .set_writer_version(version)
                        .set_dictionary_enabled(dictionary)
                        // Many pages per chunk, and row groups that cut the batches.
                        .set_data_page_size_limit(512)
                        .set_write_batch_size(16)
                        .set_max_row_group_row_count(Some(700))
                        .build();
                    let f = write(props, 1500);
                    let file = f.reopen().unwrap();
                    let here = read_here(&file).unwrap();
                    let there = read_there(&file);
                    assert_eq!(
                        concat(&here),
                        concat(&there),
                        "{codec:?} {version:?} dictionary {dictionary}"
                    );
                    assert_eq!(concat(&here).num_rows(), 1500);
                }
            }
        }
    }

    #[test]
    fn other_codecs_are_left_to_the_parquet_crate() {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let f = write(props, 30);
        let meta = ParquetRecordBatchReaderBuilder::try_new(f.reopen().unwrap())
            .unwrap()
            .metadata()
            .clone();
        assert!(!supported(&meta, 0, &[0, 1, 2]));
        assert!(!supported(&meta, 0, &[99]));
    }

    /// Corrupt bytes anywhere in the pages give an error or (where the damage is in values
    /// the format cannot check) other values, never a panic or an allocation of what a
    /// damaged header claims.
    #[test]
    fn corrupt_pages_are_errors_not_panics() {
        // LZ4 only: damaged Zstandard data can decompress cleanly into values that make the
        // `parquet` crate's own decoders panic; the contract's reader turns that into an
        // error (tested in tests/ingest.rs).
        for version in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0] {
            let props = WriterProperties::builder()
                .set_compression(Compression::LZ4_RAW)
                .set_writer_version(version)
                .set_data_page_size_limit(512)
                .set_write_batch_size(16)
                .build();
            let f = write(props, 300);
            let good = std::fs::read(f.path()).unwrap();
            let meta = ParquetRecordBatchReaderBuilder::try_new(f.reopen().unwrap())
                .unwrap()
                .metadata()
                .clone();
            // The page bytes: from the first column chunk to the footer's metadata.
            let (start, _) = meta.row_group(0).column(0).byte_range();
            let end = good.len()
                - 8
                - u32::from_le_bytes(good[good.len() - 8..good.len() - 4].try_into().unwrap())
                    as usize;
            let (mut errors, mut x) = (0, 0x9E37_79B9_7F4A_7C15_u64);
            for _ in 0..400 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = start as usize + (x as usize) % (end - start as usize);
                let mut bad = good.clone();
                bad[at] ^= 1 << ((x >> 32) % 8);
                let g = tempfile::NamedTempFile::new().unwrap();
                std::fs::write(g.path(), &bad).unwrap();
                if read_here(&g.reopen().unwrap()).is_err() {
                    errors += 1;
                }
            }
            assert!(errors > 20, "only {errors} of 400 corruptions detected");
        }
    }

    #[test]
    fn page_headers_cut_short_or_nested_too_deep_are_errors() {
        // type DATA_PAGE, sizes 10 and 10, then a data page header (num_values 1, encodings).
        let header = [
            0x15, 0x00, 0x15, 0x14, 0x15, 0x14, 0x2C, 0x15, 0x02, 0x15, 0x00, 0x15, 0x06, 0x15,
            0x06, 0x00, 0x00,
        ];
        let (h, len) = Header::parse(&header).unwrap();
        assert_eq!(len, header.len());
        assert_eq!((h.uncompressed, h.compressed), (10, 10));
        assert!(matches!(h.kind, Kind::DataV1 { values: 1, .. }));
        for cut in 0..header.len() {
            assert!(Header::parse(&header[..cut]).is_err(), "cut at {cut}");
        }
        // An unknown field holding structs nested 100 deep.
        let mut deep = vec![0x15, 0x00, 0x15, 0x00, 0x15, 0x00];
        deep.push(0x1C); // field 4, a struct (field 4 is the CRC, an i32: unknown here)
        deep.extend(std::iter::repeat_n(0x1C, 100));
        deep.extend(std::iter::repeat_n(0x00, 102));
        assert!(Header::parse(&deep).is_err());
        // A list claiming more elements than there are bytes.
        let list = [
            0x15, 0x00, 0x15, 0x00, 0x15, 0x00, 0x19, 0xF5, 0xFF, 0xFF, 0xFF, 0x0F,
        ];
        assert!(Header::parse(&list).is_err());
    }

    /// Reads past the page cache return exactly the bytes asked for, at any offset and
    /// length (the device reads whole aligned blocks around them), up to the file's end;
    /// past it they fail.
    #[test]
    fn direct_reads_give_the_bytes_asked_for() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..3 * 4096 + 1234u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::io::Write::write_all(&mut f, &data).unwrap();
        let n = data.len() as u64;
        for (pos, len) in [
            (0, 1),
            (0, 4096),
            (1, 4095),
            (4095, 2),
            (5000, 7000),
            (0, data.len()),
            (n - 1, 1),
            (12_300, 1234 + 3 * 4096 - 12_300),
        ] {
            let got = read_direct(f.path(), pos, len).unwrap();
            assert_eq!(
                &got[..],
                &data[pos as usize..pos as usize + len],
                "{pos}+{len}"
            );
        }
        assert!(read_direct(f.path(), n - 10, 11).is_err());
        assert!(read_direct(f.path(), n + 4096, 1).is_err());
        // Offsets no file can have (damaged metadata) are errors, not overflows.
        assert!(read_direct(f.path(), u64::MAX - 5, 3).is_err());
        assert!(read_direct(f.path(), i64::MAX as u64, 1).is_err());
    }

    /// A buffer comes back to its pool when the last slice of it drops, and is handed out
    /// again for any size it holds; the pool keeps at most its number of buffers.
    #[test]
    fn buffers_return_to_their_pool_when_no_slice_is_left() {
        let pool: &'static BufferPool = Box::leak(Box::new(BufferPool::new(2)));
        let mut buf = pool.take(1000);
        let at = buf.as_ptr();
        buf.extend_from_slice(&[7; 1000]);
        let bytes = pool.share(buf);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(
            pool.spare.lock().unwrap().len(),
            0,
            "a slice still holds it"
        );
        assert_eq!(&slice[..], &[7; 10]);
        drop(slice);
        assert_eq!(pool.spare.lock().unwrap().len(), 1);
        let again = pool.take(500);
        assert_eq!(
            (again.as_ptr(), again.len()),
            (at, 0),
            "the same buffer, emptied"
        );
        assert!(pool.take(5000).capacity() >= 5000, "too small: a new one");
        let kept: Vec<Bytes> = (0..3).map(|_| pool.share(pool.take(10))).collect();
        drop(kept);
        assert_eq!(pool.spare.lock().unwrap().len(), 2);
    }

    /// A loaded range hands out the slices it covers, nothing else.
    #[test]
    fn loaded_bytes_cover_their_range_only() {
        let l = Loaded {
            base: 100,
            bytes: Bytes::from((0..50u8).collect::<Vec<_>>()),
        };
        assert_eq!(&l.get(100, 3).unwrap()[..], &[0, 1, 2]);
        assert_eq!(&l.get(147, 3).unwrap()[..], &[47, 48, 49]);
        assert_eq!(l.get(148, 3), None);
        assert_eq!(l.get(99, 2), None);
        assert_eq!(l.get(u64::MAX, 1), None);
        assert_eq!(l.get(100, usize::MAX), None);
    }
}
