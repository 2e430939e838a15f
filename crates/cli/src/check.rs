//! `distillguard check`: validate the inputs and print what they hold.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use dg_contract::{Diagnostics, LoadReport, Table, TableReport};
use dg_engine::Engine;
use dg_engine::summary::{Count, Summary, summarize};

use crate::args::{CheckArgs, CheckFormat};
use crate::fmt::{bytes, count, time};
use crate::progress::ReadProgress;

pub async fn run(a: CheckArgs) -> anyhow::Result<ExitCode> {
    if a.input.exchanges.is_empty() {
        bail!("check needs --exchanges PATH: the exchanges table is required");
    }
    let diag = Arc::new(Diagnostics::new(a.input.quarantine_in(None)));
    let engine = Engine::open(&a.input.inputs(), a.input.read_options(), diag.clone())?;
    let progress = ReadProgress::start(diag.clone(), engine.input_bytes());
    let summary = summarize(&engine).await;
    drop(progress);
    diag.flush()?;
    let summary = summary?;
    let report = diag.report();
    let mut out = std::io::stdout().lock();
    match a.format {
        CheckFormat::Text => out.write_all(render(&summary, &report, &engine).as_bytes())?,
        CheckFormat::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &serde_json::json!({ "summary": summary, "load": report }),
            )
            .context("writing the summary")?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn counts(list: &[Count], top: usize) -> String {
    if list.is_empty() {
        return "none".into();
    }
    let mut s = list
        .iter()
        .take(top)
        .map(|c| {
            format!(
                "{} ({})",
                c.value.as_deref().unwrap_or("absent"),
                count(c.rows)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > top {
        let _ = write!(s, ", and {} more", list.len() - top);
    }
    s
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

fn table_line(name: &str, r: Option<&TableReport>, given: bool) -> String {
    let Some(r) = r.filter(|_| given) else {
        return format!("{name:<15} not given\n");
    };
    let mut s = format!(
        "{name:<15} {} from {} ({})",
        plural(r.rows, "row", "rows"),
        plural(r.files, "file", "files"),
        bytes(r.bytes)
    );
    let bad = r.bad_total();
    if bad > 0 || r.duplicates > 0 {
        let _ = write!(
            s,
            "; {} bad, {}",
            count(bad),
            plural(r.duplicates, "duplicate", "duplicates")
        );
    }
    s.push('\n');
    s
}

/// The human-readable summary.
pub fn render(summary: &Summary, report: &LoadReport, engine: &Engine) -> String {
    let mut s = String::new();
    let given = |t: Table| !engine.files(t).is_empty();
    let e = &summary.exchanges;
    s += &table_line(
        "exchanges",
        report.tables.get(&Table::Exchanges),
        given(Table::Exchanges),
    );
    if e.rows > 0 {
        let _ = writeln!(s, "  {:<13} {}", "accounts", count(e.accounts));
        if let (Some(a), Some(b)) = (e.first_ts, e.last_ts) {
            let _ = writeln!(s, "  {:<13} {} .. {}", "time range", time(a), time(b));
        }
        let _ = writeln!(
            s,
            "  {:<13} {} in, {} out",
            "tokens",
            count(e.input_tokens),
            count(e.output_tokens)
        );
        let _ = writeln!(s, "  {:<13} {}", "models", counts(&e.models, 8));
        let _ = writeln!(s, "  {:<13} {}", "top ASNs", counts(&e.asns, 5));
        let _ = writeln!(s, "  {:<13} {}", "top countries", counts(&e.countries, 5));
    }
    let a = &summary.accounts;
    s += &table_line(
        "accounts",
        report.tables.get(&Table::Accounts),
        given(Table::Accounts),
    );
    if a.rows > 0 {
        if let (Some(x), Some(y)) = (a.first_created, a.last_created) {
            let _ = writeln!(s, "  {:<13} {} .. {}", "created", time(x), time(y));
        }
        let _ = writeln!(s, "  {:<13} {}", "verification", counts(&a.verification, 9));
        let _ = writeln!(s, "  {:<13} {}", "with payment", count(a.with_payment));
    }
    s += &table_line(
        "model_releases",
        report.tables.get(&Table::ModelReleases),
        given(Table::ModelReleases),
    );
    for r in &summary.model_releases {
        let _ = writeln!(s, "  {:<13} released {}", r.model, time(r.released_at));
    }
    if let Some(labels) = &summary.labels {
        s += &table_line("labels", report.tables.get(&Table::Labels), true);
        let _ = writeln!(s, "  {:<13} {}", "campaigns", counts(labels, 10));
    }
    let bad = report.bad_total();
    if bad == 0 {
        let _ = writeln!(s, "{:<15} none", "bad records");
    } else {
        let _ = writeln!(
            s,
            "{:<15} {}, written to {}",
            "bad records",
            count(bad),
            report
                .quarantine
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        for (reason, n) in report.bad_by_reason() {
            let _ = writeln!(s, "  {:<13} {}", reason.as_str(), count(n));
        }
    }
    let dups: u64 = report.tables.values().map(|t| t.duplicates).sum();
    if dups > 0 {
        let _ = writeln!(
            s,
            "{:<15} {} (each key counted once)",
            "duplicates",
            count(dups)
        );
        for t in report.tables.values() {
            for ex in &t.duplicate_examples {
                let _ = writeln!(s, "  {ex}");
            }
        }
    }
    s
}
