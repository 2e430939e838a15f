//! Incremental per-account state: the same [`Profile`] the batch aggregate builds, folded one
//! exchange at a time with [`Profile::add`], plus the request ids already counted.
//!
//! Exchanges travel between parsing, the write-ahead log and the profiles as compact
//! *event records*: the account id and the aggregate's [`Row`] (features already computed),
//! no prompt text. A log of them is enough to rebuild every profile exactly.

use std::collections::HashMap;

use arrow::record_batch::RecordBatch;
use dg_detect::profile::{Profile, Row, for_each_exchange};

use crate::cold::{Cold, ColdSnapshot, Slot};
use crate::ids::{IdSet, RequestIds, day_of};

fn id_hash(request_id: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(0x6469_7374_696c_6c67).hash_one(request_id)
}

// --- event records -------------------------------------------------------------------------

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => put_u32(out, u32::MAX),
        Some(s) => {
            put_u32(out, s.len() as u32);
            out.extend_from_slice(s.as_bytes());
        }
    }
}
fn put_opt_u32(out: &mut Vec<u8>, v: Option<u32>) {
    out.push(v.is_some() as u8);
    put_u32(out, v.unwrap_or(0));
}

/// Appends one event record (account id and aggregate row) to `out`.
pub fn encode_event(account: &str, r: &Row, out: &mut Vec<u8>) {
    put_str(out, Some(account));
    out.extend_from_slice(&r.ts.to_le_bytes());
    for s in [
        Some(r.request_id),
        Some(r.model),
        Some(r.client_ip),
        r.country,
        r.conversation_id,
        r.api_key,
        r.ja4,
    ] {
        put_str(out, s);
    }
    put_opt_u32(out, r.asn);
    put_opt_u32(out, r.max_tokens);
    for v in [
        r.input_tokens,
        r.output_tokens,
        r.reasoning_tokens,
        r.prompt_chars,
        r.turns,
        r.tool_messages,
        r.tools_offered,
    ] {
        put_u32(out, v);
    }
    out.extend_from_slice(&r.cjk.to_le_bytes());
    out.extend_from_slice(&[r.script, r.capability, r.flags]);
    for v in [r.template, r.system, r.client] {
        put_u64(out, v);
    }
}

/// A malformed event record (a torn or corrupt log).
#[derive(Debug, thiserror::Error)]
#[error("malformed event record at byte {0}")]
pub struct BadRecord(pub usize);

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BadRecord> {
        let end = self.at.checked_add(n).ok_or(BadRecord(self.at))?;
        let s = self.buf.get(self.at..end).ok_or(BadRecord(self.at))?;
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, BadRecord> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, BadRecord> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn str(&mut self) -> Result<Option<&'a str>, BadRecord> {
        let n = self.u32()?;
        if n == u32::MAX {
            return Ok(None);
        }
        let at = self.at;
        std::str::from_utf8(self.take(n as usize)?)
            .map(Some)
            .map_err(|_| BadRecord(at))
    }
    fn opt_u32(&mut self) -> Result<Option<u32>, BadRecord> {
        let some = self.take(1)?[0] != 0;
        let v = self.u32()?;
        Ok(some.then_some(v))
    }
}

/// Calls `f(account, row)` for every event record in `buf`.
pub fn for_each_event(buf: &[u8], mut f: impl FnMut(&str, &Row)) -> Result<(), BadRecord> {
    let mut r = Reader { buf, at: 0 };
    while r.at < buf.len() {
        let account = r.str()?.ok_or(BadRecord(r.at))?;
        let ts = r.u64()? as i64;
        let mut s = [None; 7];
        for v in &mut s {
            *v = r.str()?;
        }
        let asn = r.opt_u32()?;
        let max_tokens = r.opt_u32()?;
        let mut u = [0u32; 7];
        for v in &mut u {
            *v = r.u32()?;
        }
        let cjk = f32::from_le_bytes(r.take(4)?.try_into().unwrap());
        let b = r.take(3)?;
        let (template, system, client) = (r.u64()?, r.u64()?, r.u64()?);
        let row = Row {
            ts,
            request_id: s[0].unwrap_or(""),
            model: s[1].unwrap_or(""),
            client_ip: s[2].unwrap_or(""),
            country: s[3],
            conversation_id: s[4],
            api_key: s[5],
            ja4: s[6],
            asn,
            max_tokens,
            input_tokens: u[0],
            output_tokens: u[1],
            reasoning_tokens: u[2],
            prompt_chars: u[3],
            turns: u[4],
            tool_messages: u[5],
            tools_offered: u[6],
            cjk,
            script: b[0],
            capability: b[1],
            flags: b[2],
            template,
            system,
            client,
        };
        f(account, &row);
    }
    Ok(())
}

/// Event records of every exchange in a batch of the contract's `exchanges` schema, features
/// computed by the batch pipeline's own code. Needs no lock: callers do this before touching
/// the shared state.
pub fn events_of_batch(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(batch.num_rows() * 160);
    for_each_exchange(batch, |account, row| encode_event(account, row, &mut out))
        .map_err(|e| e.to_string())?;
    Ok(out)
}

// --- account state -------------------------------------------------------------------------

/// Where a cold store stands: generation, length, garbage and index (a checkpoint section).
fn encode_cold(c: &Cold, out: &mut Vec<u8>) {
    for v in [c.generation, c.len, c.garbage, c.index.len() as u64] {
        put_u64(out, v);
    }
    let mut index: Vec<(&String, &Slot)> = c.index.iter().collect();
    index.sort_unstable_by_key(|(k, _)| *k);
    for (key, slot) in index {
        put_str(out, Some(key));
        put_u64(out, slot.offset);
        put_u32(out, slot.len);
    }
}

fn decode_cold(r: &mut Reader, c: &mut Cold) -> Result<(), String> {
    let bad = |e: BadRecord| format!("checkpoint is corrupt ({e})");
    c.generation = r.u64().map_err(bad)?;
    c.len = r.u64().map_err(bad)?;
    c.garbage = r.u64().map_err(bad)?;
    for _ in 0..r.u64().map_err(bad)? {
        let key = r
            .str()
            .map_err(bad)?
            .ok_or("checkpoint: cold entry without key")?;
        let slot = Slot {
            offset: r.u64().map_err(bad)?,
            len: r.u32().map_err(bad)?,
        };
        let end = slot.offset.checked_add(8 + u64::from(slot.len));
        if end.is_none_or(|end| end > c.len) {
            return Err(format!(
                "checkpoint: cold entry {key:?} lies past its file's end"
            ));
        }
        c.index.insert(key.to_string(), slot);
    }
    Ok(())
}

/// A set of request ids: count, then the ids in ascending order.
fn put_ids(set: &IdSet, out: &mut Vec<u8>) {
    let mut ids: Vec<u64> = set.iter().copied().collect();
    ids.sort_unstable();
    put_u64(out, ids.len() as u64);
    for id in ids {
        put_u64(out, id);
    }
}

fn read_ids(r: &mut Reader, set: &mut IdSet) -> Result<(), String> {
    let bad = |e: BadRecord| format!("checkpoint is corrupt ({e})");
    let n = r.u64().map_err(bad)?;
    // A count from a damaged file must not drive a huge allocation.
    set.reserve((n as usize).min(r.buf.len().saturating_sub(r.at) / 8));
    for _ in 0..n {
        set.insert(r.u64().map_err(bad)?);
    }
    Ok(())
}

/// Checkpoint format: version 2 added the cold stores and the latest exchange time;
/// version 1 (every profile resident, one flat id set) is still read.
const MAGIC: &[u8; 8] = b"DGSTATE2";
const MAGIC_V1: &[u8; 8] = b"DGSTATE1";

/// Exchanges dated more than this far past the wall clock do not move the latest exchange
/// time: one record from the year 9999 would otherwise make every account idle.
const MAX_AHEAD_MICROS: i64 = 3_600_000_000;

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Every profile at one moment: resident copies, and where the cold ones are.
pub struct Snapshot {
    resident: Vec<(String, Profile)>,
    cold: ColdSnapshot,
}

fn decode_profile(account: &str, bytes: &[u8]) -> std::io::Result<Profile> {
    Profile::decode(bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("cold profile of {account}: {e}"),
        )
    })
}

/// Every readable profile of a [`Snapshot`], and the accounts whose cold record could not be
/// read (left out of the judgement; the caller reports them).
pub struct Loaded {
    pub names: Vec<String>,
    pub profiles: Vec<Profile>,
    pub unreadable: Vec<(String, std::io::Error)>,
}

impl Snapshot {
    /// Account names (sorted) and their profiles in canonical form, cold ones read from disk.
    pub fn load(self) -> Loaded {
        let mut all = self.resident;
        let (cold, mut unreadable) = self.cold.read_all();
        for (name, bytes) in cold {
            match decode_profile(&name, &bytes) {
                Ok(p) => all.push((name, p)),
                Err(e) => unreadable.push((name, e)),
            }
        }
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let (names, profiles) = all
            .into_iter()
            .map(|(n, mut p)| {
                p.normalise();
                (n, p)
            })
            .unzip();
        Loaded {
            names,
            profiles,
            unreadable,
        }
    }
}

/// Every account's profile and the request ids counted so far.
pub struct State {
    /// Profiles of active accounts, in memory.
    pub accounts: HashMap<String, Profile>,
    /// Profiles of idle accounts, on disk ([`State::evict_idle`]).
    pub cold: Cold,
    /// Request ids counted, per day of their exchanges (past days on disk).
    pub seen: RequestIds,
    /// Latest exchange time seen (µs since the epoch): "idle" is measured against it, so
    /// a replay at any speed evicts the same accounts as live traffic would.
    pub high_water: i64,
    /// Profiles read back from the cold store since start.
    pub reloads: u64,
    /// Exchanges counted (each request id once).
    pub exchanges: u64,
    /// Exchanges refused because their request id was already counted.
    pub duplicates: u64,
    /// Sequence number of the last log record applied.
    pub log_seq: u64,
    /// Highest position applied from the source stream (NATS JetStream sequence; 0 when
    /// events only came over HTTP). Checkpointed with the state.
    pub stream_seq: u64,
    /// Exchanges counted since the last judgement.
    pub since_judgement: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            accounts: HashMap::new(),
            cold: Cold::new("cold"),
            seen: RequestIds::default(),
            high_water: 0,
            reloads: 0,
            exchanges: 0,
            duplicates: 0,
            log_seq: 0,
            stream_seq: 0,
            since_judgement: 0,
        }
    }
}

/// Why event records could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Bad(#[from] BadRecord),
    /// Reading an idle account's profile back failed; the records before it were applied.
    #[error("cold store: {0}")]
    Cold(std::io::Error),
}

/// When accounts leave memory.
#[derive(Clone, Copy, Debug)]
pub struct Eviction {
    /// Accounts with no exchange for this long (µs of event time, against the latest exchange
    /// seen) are evicted; 0: never for idleness.
    pub idle_micros: i64,
    /// At most this many accounts stay in memory (least recently active evicted first);
    /// 0: no cap.
    pub max_resident: usize,
    /// At most this many evicted per call (bounds the time the state lock is held).
    pub batch: usize,
}

/// What applying a set of event records did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub accepted: u64,
    pub duplicates: u64,
}

impl State {
    /// Folds event records into the profiles, each request id once. Returns the records that
    /// were new (what the write-ahead log must keep) and the counts.
    ///
    /// An idle account's profile is read back from the cold store first. If that fails the
    /// state holds part of the records: the caller must stop acknowledging (the log does not
    /// have them) until a restart rebuilds the state from disk.
    pub fn apply(&mut self, events: &[u8]) -> Result<(Vec<u8>, Applied), ApplyError> {
        let mut kept = Vec::with_capacity(events.len());
        let mut n = Applied::default();
        let mut failed = None;
        let ahead_limit = now_micros().saturating_add(MAX_AHEAD_MICROS);
        for_each_event(events, |account, row| {
            if failed.is_some() {
                return;
            }
            let id = id_hash(row.request_id);
            if self.seen.in_legacy(id) {
                n.duplicates += 1;
                return;
            }
            let ids = match self.seen.day(day_of(row.ts)) {
                Ok(ids) => ids,
                Err(e) => {
                    failed = Some(e);
                    return;
                }
            };
            if ids.contains(&id) {
                n.duplicates += 1;
                return;
            }
            match self.accounts.get_mut(account) {
                Some(p) => p.add(row),
                None => {
                    let mut p = match self.cold.take(account, |b| decode_profile(account, b)) {
                        Ok(Some(p)) => {
                            self.reloads += 1;
                            p
                        }
                        Ok(None) => Profile::default(),
                        Err(e) => {
                            failed = Some(e);
                            return;
                        }
                    };
                    p.add(row);
                    self.accounts.insert(account.to_string(), p);
                }
            }
            ids.insert(id);
            if row.ts <= ahead_limit {
                self.high_water = self.high_water.max(row.ts);
            }
            n.accepted += 1;
            encode_event(account, row, &mut kept);
        })?;
        self.exchanges += n.accepted;
        self.duplicates += n.duplicates;
        self.since_judgement += n.accepted;
        match failed {
            Some(e) => Err(ApplyError::Cold(e)),
            None => Ok((kept, n)),
        }
    }

    /// Moves idle accounts' profiles to the cold store (see [`Eviction`]), least recently
    /// active first, and the request ids of days that ended `idle_micros` before the latest
    /// exchange to the `ids` store. Returns how many profiles and days moved (at most
    /// `batch` of each). A failed write leaves that account or day in memory.
    pub fn evict_idle(&mut self, rule: &Eviction) -> std::io::Result<usize> {
        let cutoff = if rule.idle_micros > 0 {
            self.high_water.saturating_sub(rule.idle_micros)
        } else {
            i64::MIN
        };
        let days = if rule.idle_micros > 0 {
            self.seen.evict_before(cutoff, rule.batch)?
        } else {
            0
        };
        let over_cap = if rule.max_resident > 0 {
            self.accounts.len().saturating_sub(rule.max_resident)
        } else {
            0
        };
        let mut idle: Vec<(i64, &String)> = self
            .accounts
            .iter()
            .map(|(n, p)| (p.last_ts, n))
            .filter(|&(t, _)| t < cutoff || over_cap > 0)
            .collect();
        if idle.is_empty() {
            return Ok(days);
        }
        idle.sort_unstable();
        let by_idle = idle.partition_point(|&(t, _)| t < cutoff);
        let n = by_idle.max(over_cap).min(rule.batch.max(1));
        let names: Vec<String> = idle[..n].iter().map(|(_, n)| (*n).clone()).collect();
        for name in names {
            let p = self.accounts.remove(&name).expect("listed above");
            if let Err(e) = self.cold.put(name.clone(), |b| p.encode(b)) {
                self.accounts.insert(name, p);
                return Err(e);
            }
        }
        Ok(n + days)
    }

    /// Re-applies records that a log kept (already de-duplicated when first applied; the id
    /// set still guards against a record applied twice).
    pub fn replay(&mut self, events: &[u8]) -> Result<Applied, ApplyError> {
        self.apply(events).map(|(_, n)| n)
    }

    /// Copies of the resident profiles and a snapshot of the cold ones: everything a
    /// judgement needs, taken under the lock; [`Snapshot::load`] reads the rest outside it.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            resident: self
                .accounts
                .iter()
                .map(|(n, p)| (n.clone(), p.clone()))
                .collect(),
            cold: self.cold.snapshot(),
        }
    }

    /// The whole state as bytes (checkpoint): resident profiles whole, idle ones by their
    /// place in the cold store.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        for v in [
            self.log_seq,
            self.exchanges,
            self.duplicates,
            self.stream_seq,
        ] {
            put_u64(out, v);
        }
        put_u64(out, self.accounts.len() as u64);
        let mut names: Vec<&String> = self.accounts.keys().collect();
        names.sort();
        let mut buf = Vec::new();
        for name in names {
            put_str(out, Some(name));
            buf.clear();
            self.accounts[name].encode(&mut buf);
            put_u64(out, buf.len() as u64);
            out.extend_from_slice(&buf);
        }
        put_u64(out, self.high_water as u64);
        encode_cold(&self.cold, out);
        let mut days: Vec<(&i64, &IdSet)> = self.seen.days.iter().collect();
        days.sort_unstable_by_key(|(d, _)| **d);
        put_u64(out, days.len() as u64);
        for (day, set) in days {
            put_u64(out, *day as u64);
            put_ids(set, out);
        }
        encode_cold(&self.seen.cold, out);
        put_ids(&self.seen.legacy, out);
    }

    pub fn decode(buf: &[u8]) -> Result<State, String> {
        let mut r = Reader { buf, at: 0 };
        let bad = |e: BadRecord| format!("checkpoint is corrupt ({e})");
        let magic = r.take(8).map_err(bad)?;
        let v1 = magic == MAGIC_V1;
        if magic != MAGIC && !v1 {
            return Err("not a distillguard checkpoint (or another version)".into());
        }
        let mut s = State {
            log_seq: r.u64().map_err(bad)?,
            exchanges: r.u64().map_err(bad)?,
            duplicates: r.u64().map_err(bad)?,
            stream_seq: r.u64().map_err(bad)?,
            ..State::default()
        };
        let n = r.u64().map_err(bad)?;
        for _ in 0..n {
            let name = r
                .str()
                .map_err(bad)?
                .ok_or("checkpoint: account without id")?;
            let len = r.u64().map_err(bad)? as usize;
            let p = Profile::decode(r.take(len).map_err(bad)?)
                .map_err(|e| format!("checkpoint: profile of {name}: {e}"))?;
            s.accounts.insert(name.to_string(), p);
        }
        if v1 {
            // Version 1: every profile resident and one flat id set with no days; its ids
            // stay a set of their own, checked for every exchange.
            s.high_water = s.accounts.values().map(|p| p.last_ts).max().unwrap_or(0);
            read_ids(&mut r, &mut s.seen.legacy)?;
        } else {
            s.high_water = r.u64().map_err(bad)? as i64;
            decode_cold(&mut r, &mut s.cold)?;
            for _ in 0..r.u64().map_err(bad)? {
                let day = r.u64().map_err(bad)? as i64;
                let mut set = IdSet::default();
                read_ids(&mut r, &mut set)?;
                s.seen.days.insert(day, set);
            }
            decode_cold(&mut r, &mut s.seen.cold)?;
            read_ids(&mut r, &mut s.seen.legacy)?;
        }
        if r.at != buf.len() {
            return Err("checkpoint has trailing bytes".into());
        }
        Ok(s)
    }
}
