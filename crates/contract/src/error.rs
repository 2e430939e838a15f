//! Errors that stop reading a file. Bad *records* are not errors: they go to the quarantine
//! (see [`crate::diag`]) unless `--strict` turns the first one into [`IngestError::Strict`].

use std::path::PathBuf;

use crate::diag::{BadReason, Location};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },

    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: {detail}", path.display())]
    Unsupported { path: PathBuf, detail: String },

    #[error("{}: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },

    #[error("{}: column `{column}` has type {found}, expected {expected}", path.display())]
    ColumnType {
        path: PathBuf,
        column: String,
        found: String,
        expected: String,
    },

    #[error("{}: required column `{column}` is missing", path.display())]
    MissingColumn { path: PathBuf, column: String },

    #[error("{}:{location}: field `{field}`: {reason}: {detail}", path.display())]
    Strict {
        path: PathBuf,
        location: Location,
        field: String,
        reason: BadReason,
        detail: String,
    },

    #[error("quarantine file {}: {source}", path.display())]
    Quarantine {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
