//! `distillguard serve` and `distillguard replay`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use dg_contract::{Dedup, Diagnostics, ReadOptions, Table, discover, read_file};
use dg_serve::{ServeFile, Service};

use crate::args::{ReplayArgs, ServeArgs};

fn load_serve_config(path: Option<&Path>) -> anyhow::Result<ServeFile> {
    crate::analyze::load_toml(path, ServeFile::from_toml)
}

/// The bearer token: `DISTILLGUARD_TOKEN`, else the first line of `--token-file`.
fn token(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Ok(t) = std::env::var("DISTILLGUARD_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(Some(t.trim().to_string()));
    }
    match file {
        None => Ok(None),
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("reading token file {}", p.display()))?;
            let t = t.lines().next().unwrap_or("").trim().to_string();
            if t.is_empty() {
                bail!("{}: empty token file", p.display());
            }
            Ok(Some(t))
        }
    }
}

pub async fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    if a.print_config {
        crate::say!("{}", ServeFile::default().to_toml().trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    let mut file = load_serve_config(a.config.as_deref())?;
    if let Some(l) = &a.listen {
        file.serve.listen = l.clone();
    }
    let addr: std::net::SocketAddr = file
        .serve
        .listen
        .parse()
        .with_context(|| format!("listen address {:?}", file.serve.listen))?;
    let token = token(a.token_file.as_deref())?;
    if token.is_none() && !addr.ip().is_loopback() {
        bail!(
            "refusing to listen on {addr} without a bearer token: set DISTILLGUARD_TOKEN or \
             --token-file (only a loopback address may run without one)"
        );
    }
    // Account facts and model releases, read once at start with the batch reader.
    let (facts, releases) = dg_serve::service::load_tables(
        &a.accounts,
        &a.releases,
        &a.state.join("quarantine").join("tables.jsonl"),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let partners = match &a.partner_indicators {
        Some(p) => crate::analyze::load_partners(p, true)?,
        None => dg_detect::sharing::PartnerIndex::default(),
    };
    let t0 = Instant::now();
    let svc = Service::open(&a.state, &file, facts, releases, partners)?;
    let r = svc.recovered;
    let (exchanges, _) = svc.counts();
    eprintln!(
        "state {}: {} exchanges ({}; {} log records replayed{}) in {:.1} s",
        a.state.display(),
        exchanges,
        if r.from_checkpoint {
            "from checkpoint"
        } else {
            "no checkpoint"
        },
        r.records_replayed,
        if r.torn_bytes > 0 {
            format!(", {} bytes of a torn record cut", r.torn_bytes)
        } else {
            String::new()
        },
        t0.elapsed().as_secs_f64()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let background = svc.spawn_background(stop.clone());
    if !file.serve.nats.url.is_empty() {
        let (svc, cfg) = (svc.clone(), file.serve.nats.clone());
        eprintln!(
            "consuming NATS stream {} ({}) at {}; decisions in bucket {}",
            cfg.stream,
            cfg.subjects.join(", "),
            cfg.url,
            cfg.decisions_bucket
        );
        // Reconnects after any failure (server restart, network): the durable consumer
        // resumes where acknowledgements stopped.
        tokio::spawn(async move {
            loop {
                match dg_serve::nats::run(svc.clone(), cfg.clone()).await {
                    Ok(()) => eprintln!("NATS: consumer ended; reconnecting in 2 s"),
                    Err(e) => eprintln!("error: {e}; reconnecting in 2 s"),
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    eprintln!(
        "listening on http://{addr} (ingest and admin {})",
        if token.is_some() {
            "need the bearer token"
        } else {
            "open: loopback only"
        }
    );
    axum::serve(listener, dg_serve::http::router(svc.clone(), token))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    eprintln!("shutting down: writing a checkpoint");
    stop.store(true, std::sync::atomic::Ordering::Release);
    let _ = tokio::task::spawn_blocking(move || background.join()).await;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM (what `docker stop` and systemd send).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// The exchange files of a dataset: `DIR/exchanges` when DIR is a simulator output,
/// else the path itself.
fn exchange_files(dataset: &Path) -> anyhow::Result<Vec<dg_contract::InputFile>> {
    let sub = dataset.join("exchanges");
    let path = if sub.is_dir() {
        sub
    } else {
        dataset.to_path_buf()
    };
    Ok(discover(&path)?)
}

/// Streams exchanges of many files in global time order (each file in its own order; a
/// k-way merge on timestamps across files) as batches of about `rows` rows.
fn ordered_batches(
    files: Vec<dg_contract::InputFile>,
    rows: usize,
    quarantine: PathBuf,
    out: tokio::sync::mpsc::Sender<RecordBatch>,
) -> anyhow::Result<()> {
    let diag = Arc::new(Diagnostics::new(quarantine));
    let dedup = Arc::new(Dedup::default());
    let opts = ReadOptions {
        batch_size: 1024,
        ..ReadOptions::default()
    };
    // One reader thread per file, each a step ahead.
    let mut sources = Vec::new();
    for f in files {
        let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(1);
        let (diag, dedup, opts) = (diag.clone(), dedup.clone(), opts.clone());
        let handle = std::thread::spawn(move || {
            read_file(Table::Exchanges, &f, &opts, &diag, &dedup, &mut |b| {
                // A batch whose rows were all repeats arrives empty: nothing to merge.
                if b.num_rows() == 0 || tx.send(b).is_ok() {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            })
        });
        sources.push((rx, handle));
    }
    struct Head {
        batch: RecordBatch,
        row: usize,
    }
    let ts_of = |b: &RecordBatch, i: usize| {
        b.column(0)
            .as_primitive::<TimestampMicrosecondType>()
            .value(i)
    };
    let mut heads: Vec<Option<Head>> = sources
        .iter()
        .map(|(rx, _)| rx.recv().ok().map(|batch| Head { batch, row: 0 }))
        .collect();
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = heads
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.as_ref().map(|h| Reverse((ts_of(&h.batch, 0), i))))
        .collect();
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(rows);
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_index: std::collections::HashMap<(usize, usize), usize> =
        std::collections::HashMap::new();
    let mut batch_ids: Vec<usize> = vec![0; heads.len()];
    let flush = |picks: &mut Vec<(usize, usize)>,
                 pending: &mut Vec<RecordBatch>,
                 pending_index: &mut std::collections::HashMap<(usize, usize), usize>|
     -> anyhow::Result<bool> {
        if picks.is_empty() {
            return Ok(true);
        }
        let arrays: Vec<Arc<dyn Array>> = (0..pending[0].num_columns())
            .map(|c| {
                let cols: Vec<&dyn Array> = pending.iter().map(|b| b.column(c).as_ref()).collect();
                arrow::compute::interleave(&cols, picks)
            })
            .collect::<Result<_, _>>()?;
        let b = RecordBatch::try_new(pending[0].schema(), arrays)?;
        picks.clear();
        pending.clear();
        pending_index.clear();
        Ok(out.blocking_send(b).is_ok())
    };
    while let Some(Reverse((_, i))) = heap.pop() {
        let h = heads[i].as_mut().expect("a source in the heap has a head");
        let key = (i, batch_ids[i]);
        let slot = *pending_index.entry(key).or_insert_with(|| {
            pending.push(h.batch.clone());
            pending.len() - 1
        });
        picks.push((slot, h.row));
        h.row += 1;
        if h.row >= h.batch.num_rows() {
            match sources[i].0.recv() {
                Ok(batch) => {
                    batch_ids[i] += 1;
                    *h = Head { batch, row: 0 };
                }
                Err(_) => heads[i] = None,
            }
        }
        if let Some(h) = &heads[i] {
            heap.push(Reverse((ts_of(&h.batch, h.row), i)));
        }
        if picks.len() >= rows && !flush(&mut picks, &mut pending, &mut pending_index)? {
            return Ok(());
        }
    }
    flush(&mut picks, &mut pending, &mut pending_index)?;
    for (rx, handle) in sources {
        drop(rx);
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("a reader thread panicked"))??;
    }
    if let Some(note) = crate::fmt::bad_records_note(&diag.report()) {
        eprintln!("note: {note}");
    }
    Ok(())
}

/// `--speed`: `max`, or a factor such as `3600x` (an hour of traffic per second).
fn parse_speed(s: &str) -> anyhow::Result<Option<f64>> {
    if s == "max" {
        return Ok(None);
    }
    let f: f64 = s
        .strip_suffix('x')
        .unwrap_or(s)
        .parse()
        .with_context(|| format!("--speed {s:?}: expected `max` or a factor like `3600x`"))?;
    if f.is_nan() || f <= 0.0 {
        bail!("--speed must be positive");
    }
    Ok(Some(f))
}

/// A batch as Arrow IPC streams of at most `max` bytes each (halved until they fit; a single
/// row larger than `max` is sent alone and refused by the receiver with a clear error).
fn ipc_chunks(b: &RecordBatch, max: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let bytes = ipc_bytes(b)?;
    if bytes.len() <= max || b.num_rows() <= 1 {
        return Ok(vec![bytes]);
    }
    let half = b.num_rows() / 2;
    let mut out = ipc_chunks(&b.slice(0, half), max)?;
    out.extend(ipc_chunks(&b.slice(half, b.num_rows() - half), max)?);
    Ok(out)
}

fn ipc_bytes(b: &RecordBatch) -> anyhow::Result<Vec<u8>> {
    let b = &dg_contract::schema::compact_for_sending(b);
    let mut buf = Vec::with_capacity(b.get_array_memory_size());
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &b.schema())?;
        w.write(b)?;
        w.finish()?;
    }
    Ok(buf)
}

pub async fn replay(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let speed = parse_speed(&a.speed)?;
    let url = a.to.trim_end_matches('/').to_string();
    let target = if url.starts_with("http://") {
        Target::Http {
            client: reqwest::Client::new(),
            events: format!("{url}/v1/events"),
            token: token(a.token_file.as_deref())?,
            max_request: a.max_request_bytes.max(1024),
        }
    } else if url.starts_with("nats://") {
        let client = async_nats::connect(&url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        Target::Nats {
            max_payload: client
                .server_info()
                .max_payload
                .saturating_sub(4096)
                .max(1024),
            js: async_nats::jetstream::new(client),
            subject: a.subject.clone(),
        }
    } else {
        bail!("--to {url}: expected http://HOST:PORT or nats://HOST:PORT");
    };
    let files = exchange_files(&a.dataset)?;
    if files.is_empty() {
        bail!("{}: no exchange files", a.dataset.display());
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(4);
    let rows = a.batch_rows as usize;
    let quarantine = a.quarantine.clone();
    let reader = tokio::task::spawn_blocking(move || ordered_batches(files, rows, quarantine, tx));
    let target = Arc::new(target);
    let concurrency = a.concurrency.max(1) as usize;
    let mut in_flight: tokio::task::JoinSet<anyhow::Result<Option<serde_json::Value>>> =
        tokio::task::JoinSet::new();
    let t0 = Instant::now();
    let mut first_ts: Option<i64> = None;
    let (mut sent, mut accepted, mut duplicates, mut bad) = (0u64, 0u64, 0u64, 0u64);
    let mut last_report = Instant::now();
    while let Some(batch) = rx.recv().await {
        let ts = batch.column(0).as_primitive::<TimestampMicrosecondType>();
        if let Some(speed) = speed {
            let start = *first_ts.get_or_insert(ts.value(0));
            let due = (ts.value(0) - start) as f64 / 1e6 / speed;
            let now = t0.elapsed().as_secs_f64();
            if due > now {
                tokio::time::sleep(Duration::from_secs_f64(due - now)).await;
            }
        }
        for body in ipc_chunks(&batch, target.max_message())? {
            // Up to `concurrency` requests in flight: the service ingests on all its cores.
            while in_flight.len() >= concurrency {
                let report = in_flight.join_next().await.expect("non-empty")??;
                tally(report, &mut accepted, &mut duplicates, &mut bad);
            }
            let (target, retry) = (target.clone(), a.retry_seconds);
            in_flight.spawn(async move { target.send(body, retry).await });
        }
        sent += batch.num_rows() as u64;
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "replay: {sent} sent, {:.0}/s",
                sent as f64 / t0.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    while let Some(report) = in_flight.join_next().await {
        tally(report??, &mut accepted, &mut duplicates, &mut bad);
    }
    reader.await??;
    let secs = t0.elapsed().as_secs_f64();
    if matches!(*target, Target::Http { .. }) {
        crate::say!(
            "replayed {sent} exchanges in {secs:.1} s ({:.0}/s): {accepted} accepted, {duplicates} already counted, {bad} refused",
            sent as f64 / secs.max(1e-9)
        );
    } else {
        crate::say!(
            "published {sent} exchanges to {} in {secs:.1} s ({:.0}/s)",
            a.subject,
            sent as f64 / secs.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Adds one acknowledgement's counts (HTTP reports them; JetStream acks carry none).
fn tally(
    report: Option<serde_json::Value>,
    accepted: &mut u64,
    duplicates: &mut u64,
    bad: &mut u64,
) {
    if let Some(r) = report {
        *accepted += r["accepted"].as_u64().unwrap_or(0);
        *duplicates += r["duplicates"].as_u64().unwrap_or(0);
        *bad += r["bad"].as_u64().unwrap_or(0);
    }
}

/// Where `replay` sends batches.
enum Target {
    Http {
        client: reqwest::Client,
        events: String,
        token: Option<String>,
        max_request: usize,
    },
    Nats {
        js: async_nats::jetstream::Context,
        subject: String,
        max_payload: usize,
    },
}

impl Target {
    /// Largest message: the NATS server's `max_payload`, or `--max-request-bytes` for HTTP.
    fn max_message(&self) -> usize {
        match self {
            Target::Http { max_request, .. } => *max_request,
            Target::Nats { max_payload, .. } => *max_payload,
        }
    }

    /// Sends one Arrow IPC batch at least once: re-sent until the service (or JetStream)
    /// acknowledges it, for at most `retry_seconds`. The service counts each request id
    /// once, so re-sending is safe. Returns the service's report (HTTP only).
    async fn send(
        &self,
        body: Vec<u8>,
        retry_seconds: f64,
    ) -> anyhow::Result<Option<serde_json::Value>> {
        let mut wait = Duration::from_millis(100);
        let give_up = Instant::now() + Duration::from_secs_f64(retry_seconds);
        loop {
            let err = match self {
                Target::Http {
                    client,
                    events,
                    token,
                    ..
                } => {
                    let mut req = client
                        .post(events)
                        .header("content-type", dg_serve::http::ARROW_STREAM)
                        .body(body.clone());
                    if let Some(t) = token {
                        req = req.bearer_auth(t);
                    }
                    match req.send().await {
                        Ok(r) if r.status().is_success() => return Ok(Some(r.json().await?)),
                        Ok(r) if r.status() == reqwest::StatusCode::PAYLOAD_TOO_LARGE => {
                            bail!(
                                "{events}: 413: a {} byte request is above the service's \
                                 max_body_bytes; lower --max-request-bytes",
                                body.len()
                            );
                        }
                        Ok(r) if r.status().is_client_error() => {
                            let status = r.status();
                            bail!("{events}: {status}: {}", r.text().await.unwrap_or_default());
                        }
                        Ok(r) => format!("{events}: {}", r.status()),
                        Err(e) => format!("{events}: {e}"),
                    }
                }
                Target::Nats { js, subject, .. } => {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Content-Type", dg_serve::http::ARROW_STREAM);
                    match js
                        .publish_with_headers(subject.clone(), headers, body.clone().into())
                        .await
                    {
                        Ok(ack) => match ack.await {
                            Ok(_) => return Ok(None),
                            Err(e) => format!("{subject}: {e}"),
                        },
                        Err(e) => format!("{subject}: {e}"),
                    }
                }
            };
            if Instant::now() >= give_up {
                bail!("{err} (gave up after {retry_seconds} s)");
            }
            tracing::warn!("{err}; retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }
}
