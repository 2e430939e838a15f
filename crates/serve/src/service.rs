//! The service core, independent of transport: ingest event batches durably, judge all
//! accounts periodically with the batch pipeline's own code, answer decisions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use dg_contract::values::Problem;
use dg_contract::{Diagnostics, Location, RecordParser, Table};
use dg_detect::Config;
use dg_detect::analyze::judge;
use dg_detect::sharing::PartnerIndex;
use dg_detect::traits::{AccountFacts, Release};
use serde::Serialize;

use crate::cold::COMPACT_MIN_GARBAGE;
use crate::config::{ServeConfig, ServeFile};
use crate::decide::{self, Decision, Query};
use crate::durable::{Log, Recovered};
use crate::metrics::Metrics;
use crate::state::{Applied, ApplyError, Eviction, State, events_of_batch};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    BadRequest(String),
    #[error("state directory: {0}")]
    Storage(String),
}

/// One refused record of an event batch.
#[derive(Clone, Debug, Serialize)]
pub struct BadEvent {
    /// 0-based position in the batch.
    pub index: usize,
    pub reason: &'static str,
    pub field: Option<String>,
    pub detail: String,
}

/// The answer to an event batch.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestReport {
    pub received: usize,
    pub accepted: u64,
    pub duplicates: u64,
    pub bad: usize,
    /// The first refused records and why (all are in the quarantine file).
    pub errors: Vec<BadEvent>,
}

const MAX_REPORTED_ERRORS: usize = 100;

/// Profiles evicted per hold of the state lock (≈ 3 KB each: tens of milliseconds).
const EVICT_BATCH: usize = 4096;

/// Seconds between eviction sweeps.
const EVICT_EVERY_SECONDS: f64 = 5.0;

struct Inner {
    state: State,
    log: Log,
}

pub struct Service {
    pub serve: ServeConfig,
    detect: Config,
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// One checkpoint at a time: two interleaved ones could leave an older checkpoint on
    /// disk after the log it needs was removed.
    checkpointing: Mutex<()>,
    /// Set when a log write failed: the state in memory may hold events the log does not,
    /// so nothing more is acknowledged until a restart rebuilds the state from disk.
    failed: AtomicBool,
    table: RwLock<Arc<decide::Table>>,
    facts: HashMap<String, AccountFacts>,
    releases: Vec<Release>,
    partners: PartnerIndex,
    diag: Diagnostics,
    judgements: AtomicU64,
    pub metrics: Metrics,
    pub recovered: Recovered,
}

/// Account facts and model releases from the contract's `accounts` and `model_releases`
/// files (either may be empty), read with the batch reader; bad records go to `quarantine`.
pub async fn load_tables(
    accounts: &[PathBuf],
    releases: &[PathBuf],
    quarantine: &Path,
) -> Result<(HashMap<String, AccountFacts>, Vec<Release>), String> {
    let inputs = dg_engine::Inputs {
        exchanges: Vec::new(),
        accounts: accounts.to_vec(),
        model_releases: releases.to_vec(),
        labels: Vec::new(),
    };
    let diag = Arc::new(Diagnostics::new(quarantine));
    let engine = dg_engine::Engine::open(&inputs, Default::default(), diag.clone())
        .map_err(|e| e.to_string())?;
    let facts = dg_detect::analyze::load_facts(&engine)
        .await
        .map_err(|e| e.to_string())?;
    let releases = dg_detect::analyze::load_releases(&engine)
        .await
        .map_err(|e| e.to_string())?;
    diag.flush().map_err(|e| e.to_string())?;
    if let Some(n) = Some(diag.report().bad_total()).filter(|&n| n > 0) {
        tracing::warn!(
            "{n} bad records in the accounts/releases tables (see {})",
            quarantine.display()
        );
    }
    Ok((facts, releases))
}

impl Service {
    /// Opens the state directory (recovering from its checkpoint and log) and judges the
    /// recovered accounts once, so decisions are available at once.
    pub fn open(
        dir: &Path,
        file: &ServeFile,
        facts: HashMap<String, AccountFacts>,
        releases: Vec<Release>,
        partners: PartnerIndex,
    ) -> Result<Arc<Service>, ServeError> {
        let (log, state, recovered) =
            Log::open(dir, file.serve.fsync).map_err(ServeError::Storage)?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let quarantine = dir
            .join("quarantine")
            .join(format!("exchanges-{started}.jsonl"));
        std::fs::create_dir_all(dir.join("quarantine"))
            .map_err(|e| ServeError::Storage(e.to_string()))?;
        let svc = Arc::new(Service {
            serve: file.serve.clone(),
            detect: file.detection(),
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner { state, log }),
            checkpointing: Mutex::new(()),
            failed: AtomicBool::new(false),
            table: RwLock::new(Arc::new(decide::Table::default())),
            facts,
            releases,
            partners,
            diag: Diagnostics::new(quarantine),
            judgements: AtomicU64::new(0),
            metrics: Metrics::new(),
            recovered,
        });
        svc.judge_now();
        Ok(svc)
    }

    /// Parses a body of exchange records (a JSON array, or JSON Lines), refuses bad records
    /// with the batch reader's rules (quarantined with their reason), and ingests the rest.
    pub fn ingest_json(&self, body: &[u8]) -> Result<IngestReport, ServeError> {
        self.ingest_json_at(body, 0)
    }

    /// [`Service::ingest_json`] for events from position `stream` of a source stream.
    pub fn ingest_json_at(&self, body: &[u8], stream: u64) -> Result<IngestReport, ServeError> {
        let text = std::str::from_utf8(body)
            .map_err(|e| ServeError::BadRequest(format!("body is not UTF-8: {e}")))?;
        let records: Vec<&str> = if text.trim_start().starts_with('[') {
            let raw: Vec<&serde_json::value::RawValue> =
                serde_json::from_str(text).map_err(|e| {
                    ServeError::BadRequest(format!("body is not a JSON array of records: {e}"))
                })?;
            raw.into_iter().map(|r| r.get()).collect()
        } else {
            text.lines().filter(|l| !l.trim().is_empty()).collect()
        };
        let mut parser = RecordParser::new(Table::Exchanges);
        let mut report = IngestReport {
            received: records.len(),
            ..IngestReport::default()
        };
        for (i, rec) in records.iter().enumerate() {
            if let Err(p) = parser.push(rec) {
                self.refuse(&mut report, i, p, rec);
            }
        }
        self.flush_refused(&report);
        let batch = parser.finish();
        let n = self.ingest_batch_at(&batch, stream)?;
        report.accepted = n.accepted;
        report.duplicates = n.duplicates;
        Ok(report)
    }

    /// Ingests an Arrow IPC stream of exchange batches (the fast path for shippers and
    /// `distillguard replay`): every row is checked like a row of a Parquet file, bad rows
    /// are quarantined and reported.
    pub fn ingest_arrow(&self, body: &[u8]) -> Result<IngestReport, ServeError> {
        self.ingest_arrow_at(body, 0)
    }

    /// [`Service::ingest_arrow`] for events from position `stream` of a source stream.
    pub fn ingest_arrow_at(&self, body: &[u8], stream: u64) -> Result<IngestReport, ServeError> {
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
            .map_err(|e| ServeError::BadRequest(format!("not an Arrow IPC stream: {e}")))?;
        let mut report = IngestReport::default();
        let mut base = 0usize;
        for batch in reader {
            let batch = batch
                .map_err(|e| ServeError::BadRequest(format!("corrupt Arrow IPC stream: {e}")))?;
            report.received += batch.num_rows();
            let (good, bad) = dg_contract::check_batch(Table::Exchanges, &batch)
                .map_err(|e| ServeError::BadRequest(format!("exchanges: {e}")))?;
            for (i, p, raw) in bad {
                self.refuse(&mut report, base + i, p, &raw);
            }
            base += batch.num_rows();
            let n = self.ingest_batch_at(&good, stream)?;
            report.accepted += n.accepted;
            report.duplicates += n.duplicates;
        }
        self.flush_refused(&report);
        Ok(report)
    }

    fn refuse(&self, report: &mut IngestReport, index: usize, p: Problem, raw: &str) {
        report.bad += 1;
        let field = (!p.field.is_empty()).then(|| p.field.clone());
        let _ = self.diag.add_bad(
            Table::Exchanges,
            Path::new("POST /v1/events"),
            Location::Line(index as u64 + 1),
            p.reason,
            field.as_deref(),
            &p.detail,
            dg_contract::diag::Raw::Json(raw),
        );
        if report.errors.len() < MAX_REPORTED_ERRORS {
            report.errors.push(BadEvent {
                index,
                reason: p.reason.as_str(),
                field,
                detail: p.detail,
            });
        }
    }

    /// Quarantines a whole message that holds no readable records (a NATS message has no
    /// sender to answer, so it is kept here with the reason instead of being dropped).
    pub fn quarantine_message(&self, source: &str, detail: &str, raw: &[u8]) {
        let reason = if std::str::from_utf8(raw).is_err() {
            dg_contract::BadReason::InvalidUtf8
        } else {
            dg_contract::BadReason::InvalidJson
        };
        let _ = self.diag.add_bad(
            Table::Exchanges,
            Path::new(source),
            Location::Line(1),
            reason,
            None,
            detail,
            dg_contract::diag::Raw::Bytes(raw),
        );
        let _ = self.diag.flush();
        self.metrics.bad_events.inc();
    }

    fn flush_refused(&self, report: &IngestReport) {
        if report.bad > 0 {
            let _ = self.diag.flush();
            self.metrics.bad_events.inc_by(report.bad as u64);
        }
    }

    /// Ingests a batch of the contract's `exchanges` schema: features computed here (no
    /// lock), then applied and logged under the lock, then synced before returning.
    pub fn ingest_batch(&self, batch: &RecordBatch) -> Result<Applied, ServeError> {
        self.ingest_batch_at(batch, 0)
    }

    fn ingest_batch_at(&self, batch: &RecordBatch, stream: u64) -> Result<Applied, ServeError> {
        if batch.num_rows() == 0 && stream == 0 {
            return Ok(Applied::default());
        }
        let events = events_of_batch(batch).map_err(ServeError::BadRequest)?;
        self.ingest_events(&events, stream)
    }

    /// Applies event records, logs the new ones (with the source position `stream`, 0 for
    /// HTTP), syncs the log.
    pub fn ingest_events(&self, events: &[u8], stream: u64) -> Result<Applied, ServeError> {
        let (applied, syncer) = {
            let mut g = self.inner.lock().unwrap();
            if self.failed.load(Ordering::Acquire) {
                return Err(ServeError::Storage(
                    "an earlier write-ahead log write failed: restart the service to recover \
                     from its state directory"
                        .into(),
                ));
            }
            let Inner { state, log } = &mut *g;
            let reloads = state.reloads + state.seen.reloads;
            let applied = state.apply(events);
            let reloaded = state.reloads + state.seen.reloads - reloads;
            self.metrics.reloads.inc_by(reloaded);
            let (kept, n) = match applied {
                Ok(r) => r,
                Err(ApplyError::Bad(e)) => return Err(ServeError::BadRequest(e.to_string())),
                Err(ApplyError::Cold(e)) => {
                    // Part of the records are applied and none logged.
                    self.failed.store(true, Ordering::Release);
                    return Err(ServeError::Storage(format!("cold store: {e}")));
                }
            };
            // A stream message with nothing new still moves the position.
            if !kept.is_empty() || stream > state.stream_seq {
                state.log_seq += 1;
                state.stream_seq = state.stream_seq.max(stream);
                if let Err(e) = log.append(state.log_seq, stream, &kept) {
                    self.failed.store(true, Ordering::Release);
                    return Err(ServeError::Storage(format!("log: {e}")));
                }
            }
            (n, log.syncer())
        };
        let synced = syncer.and_then(|f| f.map_or(Ok(()), |f| f.sync_data()));
        if let Err(e) = synced {
            self.failed.store(true, Ordering::Release);
            return Err(ServeError::Storage(format!("log sync: {e}")));
        }
        self.metrics.events.inc_by(applied.accepted);
        self.metrics.duplicates.inc_by(applied.duplicates);
        Ok(applied)
    }

    /// Judges every account now (blocking) and publishes the new decision table.
    pub fn judge_now(&self) -> Arc<decide::Table> {
        let t0 = Instant::now();
        let (snapshot, exchanges) = {
            let mut g = self.inner.lock().unwrap();
            g.state.since_judgement = 0;
            (g.state.snapshot(), g.state.exchanges)
        };
        let loaded = snapshot.load();
        if !loaded.unreadable.is_empty() {
            // Judged without them (no decision of their own in this table): a damaged record
            // must not stop every other account's judgement.
            self.metrics
                .background_errors
                .inc_by(loaded.unreadable.len() as u64);
            for (account, e) in loaded.unreadable.iter().take(10) {
                tracing::error!("judgement: profile of {account} left out: {e}");
            }
        }
        let (names, profiles) = (loaded.names, loaded.profiles);
        let facts: Vec<AccountFacts> = names
            .iter()
            .map(|n| self.facts.get(n).cloned().unwrap_or_default())
            .collect();
        let judged = judge(
            &names,
            &profiles,
            &facts,
            &self.releases,
            &self.partners,
            &self.detect,
        );
        let table = Arc::new(decide::Table::build(
            &names,
            &profiles,
            judged,
            exchanges,
            &self.serve,
        ));
        {
            // Two judgements can overlap (the background one and `POST /v1/judge`): the one
            // that saw fewer exchanges never replaces a newer table.
            let mut current = self.table.write().unwrap();
            if table.exchanges >= current.exchanges {
                *current = table.clone();
            }
        }
        self.judgements.fetch_add(1, Ordering::Relaxed);
        self.metrics.judgements.inc();
        self.metrics.judge_seconds.set(t0.elapsed().as_secs_f64());
        self.metrics.accounts.set(names.len() as i64);
        self.publish_residency();
        self.metrics.campaigns.set(table.campaigns.len() as i64);
        table
    }

    /// Moves idle accounts' profiles to the cold store (`evict_idle_hours`,
    /// `max_resident_accounts`), a bounded number per hold of the state lock. Returns how
    /// many moved.
    pub fn evict_idle(&self) -> Result<usize, ServeError> {
        let rule = Eviction {
            idle_micros: (self.serve.evict_idle_hours.max(0.0) * 3.6e9) as i64,
            max_resident: self.serve.max_resident_accounts,
            batch: EVICT_BATCH,
        };
        if rule.idle_micros == 0 && rule.max_resident == 0 {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let n = {
                let mut g = self.inner.lock().unwrap();
                if self.failed.load(Ordering::Acquire) {
                    break;
                }
                g.state.evict_idle(&rule)
            };
            let n = n.map_err(|e| ServeError::Storage(format!("eviction: {e}")))?;
            total += n;
            self.metrics.evictions.inc_by(n as u64);
            if n < EVICT_BATCH {
                break;
            }
        }
        self.publish_residency();
        Ok(total)
    }

    fn publish_residency(&self) {
        let (resident, cold, ids) = {
            let g = self.inner.lock().unwrap();
            let s = &g.state;
            (s.accounts.len(), s.cold.index.len(), s.seen.resident())
        };
        self.metrics.resident_accounts.set(resident as i64);
        self.metrics.cold_accounts.set(cold as i64);
        self.metrics.resident_request_ids.set(ids as i64);
    }

    /// Runs judgements (every `relink_seconds`, or after `relink_every_exchanges` new
    /// exchanges) and checkpoints (every `checkpoint_seconds`) on one background thread
    /// until `stop` is set; a last checkpoint is written on the way out.
    pub fn spawn_background(
        self: &Arc<Service>,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        let svc = self.clone();
        std::thread::Builder::new()
            .name("dg-judge".into())
            .spawn(move || {
                let mut last_judge = Instant::now();
                let mut last_checkpoint = Instant::now();
                let mut last_evict = Instant::now();
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    let since = svc.inner.lock().unwrap().state.since_judgement;
                    let by_count = svc.serve.relink_every_exchanges > 0
                        && since >= svc.serve.relink_every_exchanges;
                    let by_time =
                        since > 0 && last_judge.elapsed().as_secs_f64() >= svc.serve.relink_seconds;
                    // A failure in one round is logged; the thread carries on.
                    let guard = |what: &str, f: &mut dyn FnMut()| {
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                            tracing::error!("{what} panicked; retrying next round");
                        }
                    };
                    if by_count || by_time {
                        guard("judgement", &mut || {
                            svc.judge_now();
                        });
                        last_judge = Instant::now();
                    }
                    if last_evict.elapsed().as_secs_f64() >= EVICT_EVERY_SECONDS {
                        guard("eviction", &mut || {
                            if let Err(e) = svc.evict_idle() {
                                svc.metrics.background_errors.inc();
                                tracing::error!("{e}");
                            }
                        });
                        last_evict = Instant::now();
                    }
                    if last_checkpoint.elapsed().as_secs_f64() >= svc.serve.checkpoint_seconds {
                        guard("checkpoint", &mut || {
                            if let Err(e) = svc.checkpoint() {
                                svc.metrics.background_errors.inc();
                                tracing::error!("{e}");
                            }
                        });
                        last_checkpoint = Instant::now();
                    }
                }
                if let Err(e) = svc.checkpoint() {
                    tracing::error!("{e}");
                }
            })
            .expect("spawning the judge thread")
    }

    /// Writes a checkpoint of the whole state and drops the log it covers.
    pub fn checkpoint(&self) -> Result<(), ServeError> {
        let _one = self.checkpointing.lock().unwrap();
        if self.failed.load(Ordering::Acquire) {
            return Err(ServeError::Storage(
                "no checkpoint after a failed log write: restart the service".into(),
            ));
        }
        // Cold files that are mostly garbage are compacted first: what to copy is taken
        // under the lock, the copy runs outside it, the few entries that changed meanwhile
        // are settled under it again, just before the checkpoint names the new files.
        let plans = {
            let g = self.inner.lock().unwrap();
            [&g.state.cold, &g.state.seen.cold].map(|c| c.plan(&self.dir, COMPACT_MIN_GARBAGE))
        };
        let copies = plans.map(|p| {
            p.and_then(|p| {
                p.copy()
                    .map_err(|e| {
                        self.metrics.background_errors.inc();
                        tracing::error!("compaction skipped: {e}");
                    })
                    .ok()
            })
        });
        let cp = {
            let mut g = self.inner.lock().unwrap();
            // Again under the lock: an ingest may have failed while this thread waited for it,
            // leaving a state that must not be checkpointed.
            if self.failed.load(Ordering::Acquire) {
                return Err(ServeError::Storage(
                    "no checkpoint after a failed log write: restart the service".into(),
                ));
            }
            let Inner { state, log } = &mut *g;
            let [a, b] = copies;
            for (store, copy) in [(&mut state.cold, a), (&mut state.seen.cold, b)] {
                if let Some(copy) = copy
                    && let Err(e) = store.finish(copy)
                {
                    self.metrics.background_errors.inc();
                    tracing::error!("compaction skipped: {e}");
                }
            }
            log.rotate(state)
                .map_err(|e| ServeError::Storage(format!("checkpoint: {e}")))?
        };
        Log::commit_checkpoint(&self.dir, &cp)
            .map_err(|e| ServeError::Storage(format!("checkpoint: {e}")))?;
        self.metrics.checkpoints.inc();
        Ok(())
    }

    pub fn table(&self) -> Arc<decide::Table> {
        self.table.read().unwrap().clone()
    }

    pub fn decide(&self, q: &Query) -> Decision {
        self.table().decide(q, &self.serve)
    }

    /// Whether a log write failed (ingest refused until a restart).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Judgements made so far (changes when a new decision table is published).
    pub fn judgements(&self) -> u64 {
        self.judgements.load(Ordering::Relaxed)
    }

    /// Highest source-stream position applied.
    pub fn stream_position(&self) -> u64 {
        self.inner.lock().unwrap().state.stream_seq
    }

    /// Exchanges counted so far and judgements made.
    pub fn counts(&self) -> (u64, u64) {
        let ex = self.inner.lock().unwrap().state.exchanges;
        (ex, self.judgements.load(Ordering::Relaxed))
    }
}
