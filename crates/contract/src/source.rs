//! Finding input files: a path is a file or a directory of files (read in name order), and
//! each file's format comes from its name and is confirmed by its first bytes.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::IngestError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl(Compression),
    Parquet,
}

/// One file to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: Format,
    /// Size on disk in bytes.
    pub size: u64,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const PARQUET_MAGIC: &[u8] = b"PAR1";

/// The format a file name declares, if any.
pub fn format_from_name(name: &str) -> Option<Format> {
    let name = name.to_ascii_lowercase();
    let (stem, compression) = if let Some(s) = name.strip_suffix(".gz") {
        (s, Compression::Gzip)
    } else if let Some(s) = name
        .strip_suffix(".zst")
        .or_else(|| name.strip_suffix(".zstd"))
    {
        (s, Compression::Zstd)
    } else {
        (name.as_str(), Compression::None)
    };
    if [".jsonl", ".ndjson", ".json"]
        .iter()
        .any(|ext| stem.ends_with(ext))
    {
        Some(Format::Jsonl(compression))
    } else if compression == Compression::None
        && (stem.ends_with(".parquet") || stem.ends_with(".pq"))
    {
        Some(Format::Parquet)
    } else {
        None
    }
}

fn unsupported(path: &Path, detail: impl Into<String>) -> IngestError {
    IngestError::Unsupported {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> IngestError {
    if source.kind() == std::io::ErrorKind::NotFound {
        IngestError::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        IngestError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Checks that a file's first bytes agree with the format its name declares.
fn confirm(path: &Path, format: Format) -> Result<(), IngestError> {
    let mut head = [0u8; 4];
    let mut f = File::open(path).map_err(|e| io_error(path, e))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(path, e)),
        }
    }
    let head = &head[..n];
    let looks = if head.starts_with(PARQUET_MAGIC) {
        Some("a Parquet file")
    } else if head.starts_with(GZIP_MAGIC) {
        Some("gzip-compressed")
    } else if head.starts_with(ZSTD_MAGIC) {
        Some("zstd-compressed")
    } else {
        None
    };
    match format {
        Format::Parquet if n == 0 => Err(unsupported(path, "empty file, not a Parquet file")),
        Format::Parquet if !head.starts_with(PARQUET_MAGIC) => Err(unsupported(
            path,
            "not a Parquet file (it does not start with the Parquet magic bytes `PAR1`)",
        )),
        Format::Jsonl(Compression::Gzip) if n > 0 && !head.starts_with(GZIP_MAGIC) => {
            Err(unsupported(path, "named .gz but not gzip-compressed"))
        }
        Format::Jsonl(Compression::Zstd) if n > 0 && !head.starts_with(ZSTD_MAGIC) => {
            Err(unsupported(path, "named .zst but not zstd-compressed"))
        }
        Format::Jsonl(Compression::None) if looks.is_some() => Err(unsupported(
            path,
            format!(
                "named as plain JSON Lines but the content is {}; rename it to match",
                looks.unwrap()
            ),
        )),
        _ => Ok(()),
    }
}

fn describe_unknown(path: &Path) -> String {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let hint = match ext.as_deref() {
        Some("csv") | Some("tsv") => "CSV is not part of the data contract; ",
        _ => "",
    };
    format!(
        "unsupported file type: {hint}expected .jsonl, .ndjson or .json (optionally .gz or .zst) or .parquet"
    )
}

/// Expands `path` into the files to read: the file itself, or every supported file under a
/// directory (recursively, in path order). Hidden files and those starting with `_` (such as
/// `_SUCCESS`) are skipped; any other unsupported file in a directory is an error, so that
/// nothing is left out without a word.
pub fn discover(path: &Path) -> Result<Vec<InputFile>, IngestError> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    if meta.is_file() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let format =
            format_from_name(&name).ok_or_else(|| unsupported(path, describe_unknown(path)))?;
        confirm(path, format)?;
        return Ok(vec![InputFile {
            path: path.to_path_buf(),
            format,
            size: meta.len(),
        }]);
    }
    if !meta.is_dir() {
        return Err(unsupported(path, "neither a regular file nor a directory"));
    }
    let mut files = Vec::new();
    walk(path, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<InputFile>) -> Result<(), IngestError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        paths.push(entry.path());
    }
    paths.sort();
    for p in paths {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let meta = std::fs::metadata(&p).map_err(|e| io_error(&p, e))?;
        if meta.is_dir() {
            walk(&p, out)?;
        } else {
            let format =
                format_from_name(&name).ok_or_else(|| unsupported(&p, describe_unknown(&p)))?;
            confirm(&p, format)?;
            out.push(InputFile {
                path: p,
                format,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_names() {
        assert_eq!(
            format_from_name("a.jsonl"),
            Some(Format::Jsonl(Compression::None))
        );
        assert_eq!(
            format_from_name("a.JSONL.GZ"),
            Some(Format::Jsonl(Compression::Gzip))
        );
        assert_eq!(
            format_from_name("a.ndjson.zst"),
            Some(Format::Jsonl(Compression::Zstd))
        );
        assert_eq!(format_from_name("part-0.parquet"), Some(Format::Parquet));
        assert_eq!(format_from_name("a.csv"), None);
        assert_eq!(format_from_name("a.parquet.gz"), None);
    }
}
