//! Incremental per-account state: the same [`Profile`] the batch aggregate builds, folded one
//! exchange at a time with [`Profile::add`], plus the request ids already counted.
//!
//! Exchanges travel between parsing, the write-ahead log and the profiles as compact
//! *event records*: the account id and the aggregate's [`Row`] (features already computed),
//! no prompt text. A log of them is enough to rebuild every profile exactly.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;

use arrow::record_batch::RecordBatch;
use dg_detect::profile::{Profile, Row, for_each_exchange};

/// Request ids are kept as 64-bit hashes (8 bytes each); this hasher passes them through.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub type IdSet = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

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

/// Every account's profile and the request ids counted so far.
#[derive(Default)]
pub struct State {
    pub accounts: HashMap<String, Profile>,
    pub seen: IdSet,
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

/// What applying a set of event records did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub accepted: u64,
    pub duplicates: u64,
}

impl State {
    /// Folds event records into the profiles, each request id once. Returns the records that
    /// were new (what the write-ahead log must keep) and the counts.
    pub fn apply(&mut self, events: &[u8]) -> Result<(Vec<u8>, Applied), BadRecord> {
        let mut kept = Vec::with_capacity(events.len());
        let mut n = Applied::default();
        for_each_event(events, |account, row| {
            if !self.seen.insert(id_hash(row.request_id)) {
                n.duplicates += 1;
                return;
            }
            n.accepted += 1;
            match self.accounts.get_mut(account) {
                Some(p) => p.add(row),
                None => {
                    let mut p = Profile::default();
                    p.add(row);
                    self.accounts.insert(account.to_string(), p);
                }
            }
            encode_event(account, row, &mut kept);
        })?;
        self.exchanges += n.accepted;
        self.duplicates += n.duplicates;
        self.since_judgement += n.accepted;
        Ok((kept, n))
    }

    /// Re-applies records that a log kept (already de-duplicated when first applied; the id
    /// set still guards against a record applied twice).
    pub fn replay(&mut self, events: &[u8]) -> Result<Applied, BadRecord> {
        self.apply(events).map(|(_, n)| n)
    }

    /// Account names (sorted) and copies of their profiles in canonical form, for judging
    /// outside the lock.
    pub fn copy_profiles(&self) -> (Vec<String>, Vec<Profile>) {
        let mut names: Vec<&String> = self.accounts.keys().collect();
        names.sort();
        let profiles = names
            .iter()
            .map(|n| {
                let mut p = self.accounts[*n].clone();
                p.normalise();
                p
            })
            .collect();
        (names.into_iter().cloned().collect(), profiles)
    }

    /// The whole state as bytes (checkpoint).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"DGSTATE1");
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
        let mut ids: Vec<u64> = self.seen.iter().copied().collect();
        ids.sort_unstable();
        put_u64(out, ids.len() as u64);
        for id in ids {
            put_u64(out, id);
        }
    }

    pub fn decode(buf: &[u8]) -> Result<State, String> {
        let mut r = Reader { buf, at: 0 };
        let bad = |e: BadRecord| format!("checkpoint is corrupt ({e})");
        if r.take(8).map_err(bad)? != b"DGSTATE1" {
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
        let n = r.u64().map_err(bad)?;
        // A count from a damaged file must not drive a huge allocation.
        s.seen
            .reserve((n as usize).min(buf.len().saturating_sub(r.at) / 8));
        for _ in 0..n {
            s.seen.insert(r.u64().map_err(bad)?);
        }
        if r.at != buf.len() {
            return Err("checkpoint has trailing bytes".into());
        }
        Ok(s)
    }
}
