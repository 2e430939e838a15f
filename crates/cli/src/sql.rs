//! `distillguard sql`: the analysts' hunting tool.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use datafusion::physical_plan::common::collect;
use dg_contract::Diagnostics;
use dg_engine::{Engine, EngineError};
use futures::StreamExt;

use crate::args::{SqlArgs, SqlFormat};
use crate::fmt::bad_records_note;
use crate::progress::ReadProgress;

pub async fn run(a: SqlArgs) -> anyhow::Result<ExitCode> {
    let diag = Arc::new(Diagnostics::new(a.input.quarantine_in(None)));
    let engine = Engine::open(&a.input.inputs(), a.input.read_options(), diag.clone())?;
    if let Some(dir) = &a.result {
        dg_detect::analyze::register_result(&engine, dir).await?;
    }
    let df = engine.ctx.sql(&a.query).await.map_err(EngineError::from)?;
    let progress = ReadProgress::start(diag.clone(), engine.input_bytes());
    let mut stream = df.execute_stream().await.map_err(EngineError::from)?;
    let mut out = std::io::stdout().lock();
    match a.format {
        SqlFormat::Table => {
            let batches = collect(stream).await.map_err(EngineError::from)?;
            drop(progress);
            let table = arrow::util::pretty::pretty_format_batches(&batches)?;
            writeln!(out, "{table}")?;
        }
        SqlFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            while let Some(batch) = stream.next().await {
                w.write(&batch.map_err(EngineError::from)?)?;
            }
            drop(progress);
        }
        SqlFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
            while let Some(batch) = stream.next().await {
                w.write(&batch.map_err(EngineError::from)?)?;
            }
            w.finish()?;
            drop(progress);
        }
    }
    out.flush().context("writing the result")?;
    diag.flush()?;
    if let Some(note) = bad_records_note(&diag.report()) {
        eprintln!("note: {note}; run `distillguard check` for complete counts");
    }
    Ok(ExitCode::SUCCESS)
}
