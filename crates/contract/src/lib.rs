//! The distillguard data contract (`shared/SCHEMA.md`) and its streaming ingest.
//!
//! This crate knows the four input tables (`exchanges`, `accounts`, `model_releases`,
//! `labels`), their one fixed Arrow schema each, and how to turn JSON Lines (plain, gzip,
//! zstd) and Parquet files into Arrow record batches of exactly that schema.
//!
//! It is strict about the contract and never loses a record: every record that breaks it is
//! counted by reason and written unchanged to the quarantine ([`diag::Diagnostics`]); a
//! repeated key (`request_id` for exchanges) is counted once and reported as a duplicate.
//!
//! **Architecture invariant:** this crate reads files and writes the quarantine, nothing
//! else. It knows nothing of DataFusion, detection or the CLI; memory is bounded by the batch
//! size (plus 8 bytes per distinct key for de-duplication), whatever the file size.

pub mod diag;
pub mod error;
mod jsonl;
pub use jsonl::RecordParser;
mod pages;
mod parquet_in;
pub use parquet_in::{BadRow, ReadAhead, check_batch, in_guarded_decode};
pub mod read;
pub mod schema;
pub mod source;
pub mod values;

pub use diag::{BadReason, Diagnostics, LoadReport, Location, TableReport};
pub use error::IngestError;
pub use read::{Dedup, DirectIo, ParquetBatches, ReadOptions, read_file, read_table};
pub use schema::{Table, TableSpec};
pub use source::{Compression, Format, InputFile, discover};
