//! Durability: a write-ahead log of event records and periodic checkpoints of the whole
//! state, in one directory.
//!
//! ```text
//! STATE_DIR/checkpoint.bin        the state after log record N (written to a temporary file,
//!                                 synced, renamed: always whole)
//! STATE_DIR/log-<first seq>.wal   records N+1, N+2, … :
//!                                 [len u32][seq u64][stream position u64][hash u64][events]
//! STATE_DIR/cold-<generation>.bin profiles of idle accounts, and
//! STATE_DIR/ids-<generation>.bin  request ids of past days (see [`crate::cold`]); the
//!                                 checkpoint names their generation, length and offsets
//! ```
//!
//! An event batch is acknowledged only after its record is in the log (and synced, when
//! `fsync` is on). A checkpoint starts a new log file under the same lock that applies
//! records, so the checkpoint and the log position always match; older log files are removed
//! once the checkpoint is on disk. Recovery loads the checkpoint and re-applies the log
//! records after it, in order. A record cut short by a crash was never acknowledged; it is
//! cut off. Nothing acknowledged is lost, nothing is counted twice.

use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::cold::{numbered_files, remove_other_generations, sync_dir};
use crate::state::State;

const CHECKPOINT: &str = "checkpoint.bin";

fn record_hash(seq: u64, stream: u64, events: &[u8]) -> u64 {
    foldhash::quality::FixedState::with_seed(seq ^ stream.rotate_left(32) ^ 0x7761_6c72_6563_6f72)
        .hash_one(events)
}

const HEAD: usize = 28;

fn log_name(first_seq: u64) -> String {
    format!("log-{first_seq:020}.wal")
}

/// The log files of a directory, oldest first.
fn log_files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    numbered_files(dir, "log-", ".wal")
}

/// The open log of a state directory.
pub struct Log {
    dir: PathBuf,
    file: File,
    /// Held for the life of the log: one process per state directory.
    _lock: File,
    fsync: bool,
    buf: Vec<u8>,
}

/// What recovery found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovered {
    pub from_checkpoint: bool,
    pub records_replayed: u64,
    pub exchanges_replayed: u64,
    /// Bytes of a torn last record that were cut off.
    pub torn_bytes: u64,
}

impl Log {
    /// Opens (creating if needed) a state directory: loads the checkpoint, re-applies the log
    /// after it and returns the state with a log ready for appending.
    pub fn open(dir: &Path, fsync: bool) -> Result<(Log, State, Recovered), String> {
        let ctx = |what: &str, p: &Path, e: io::Error| format!("{what} {}: {e}", p.display());
        fs::create_dir_all(dir).map_err(|e| ctx("cannot create", dir, e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ctx("cannot open", &lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(format!(
                "{} is in use by another distillguard process",
                dir.display()
            ));
        }
        let cp = dir.join(CHECKPOINT);
        let mut rec = Recovered::default();
        let mut state = match fs::read(&cp) {
            Ok(bytes) => {
                rec.from_checkpoint = true;
                State::decode(&bytes).map_err(|e| format!("{}: {e}", cp.display()))?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(ctx("cannot read", &cp, e)),
        };
        for c in [&mut state.cold, &mut state.seen.cold] {
            c.attach(dir)
                .map_err(|e| format!("cold store in {}: {e}", dir.display()))?;
        }
        let files = log_files(dir).map_err(|e| ctx("cannot list", dir, e))?;
        let last = files.len().saturating_sub(1);
        for (i, (_, path)) in files.iter().enumerate() {
            let bytes = fs::read(path).map_err(|e| ctx("cannot read", path, e))?;
            let mut at = 0usize;
            while at < bytes.len() {
                let Some((seq, stream, events, end)) = parse_record(&bytes, at) else {
                    if i == last {
                        // A record cut short by a crash: never acknowledged.
                        rec.torn_bytes = (bytes.len() - at) as u64;
                        let f = OpenOptions::new()
                            .write(true)
                            .open(path)
                            .map_err(|e| ctx("cannot open", path, e))?;
                        f.set_len(at as u64)
                            .map_err(|e| ctx("cannot cut", path, e))?;
                        f.sync_all().map_err(|e| ctx("cannot sync", path, e))?;
                        break;
                    }
                    return Err(format!(
                        "{}: corrupt record at byte {at} in a log file that is not the last",
                        path.display()
                    ));
                };
                if seq > state.log_seq {
                    let n = state
                        .replay(events)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    state.log_seq = seq;
                    state.stream_seq = state.stream_seq.max(stream);
                    rec.records_replayed += 1;
                    rec.exchanges_replayed += n.accepted;
                }
                at = end;
            }
        }
        state.since_judgement = state.exchanges;
        // Continue in a fresh file: the old ones go at the next checkpoint.
        let path = dir.join(log_name(state.log_seq + 1));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ctx("cannot open", &path, e))?;
        sync_dir(dir).map_err(|e| ctx("cannot sync", dir, e))?;
        Ok((
            Log {
                dir: dir.to_path_buf(),
                file,
                _lock: lock,
                fsync,
                buf: Vec::new(),
            },
            state,
            rec,
        ))
    }

    /// Appends one record (`seq` = state's new `log_seq`; `stream`: the position in the
    /// source stream the events came from, 0 for HTTP). Call under the state lock, right
    /// after applying the same events, then sync (see [`Log::syncer`]) before acknowledging.
    pub fn append(&mut self, seq: u64, stream: u64, events: &[u8]) -> io::Result<()> {
        self.buf.clear();
        self.buf
            .extend_from_slice(&(events.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&seq.to_le_bytes());
        self.buf.extend_from_slice(&stream.to_le_bytes());
        self.buf
            .extend_from_slice(&record_hash(seq, stream, events).to_le_bytes());
        self.buf.extend_from_slice(events);
        self.file.write_all(&self.buf)
    }

    /// A handle to sync the log outside the lock.
    pub fn syncer(&self) -> io::Result<Option<File>> {
        if self.fsync {
            self.file.try_clone().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Starts a new log file after `state.log_seq` and returns the checkpoint of the state
    /// at exactly that point (the cold stores synced first).
    /// Call under the state lock; then [`Log::commit_checkpoint`] outside it.
    pub fn rotate(&mut self, state: &State) -> io::Result<Checkpoint> {
        for c in [&state.cold, &state.seen.cold] {
            c.sync()?;
        }
        let mut bytes = Vec::new();
        state.encode(&mut bytes);
        self.file.sync_all()?;
        let path = self.dir.join(log_name(state.log_seq + 1));
        self.file = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&self.dir)?;
        Ok(Checkpoint {
            bytes,
            keep: [state.cold.keep(), state.seen.cold.keep()],
        })
    }

    /// Writes a checkpoint whole (temporary file, sync, rename) and removes the log files
    /// and the cold files it no longer needs.
    pub fn commit_checkpoint(dir: &Path, cp: &Checkpoint) -> io::Result<()> {
        let bytes = &cp.bytes;
        let seq = peek_seq(bytes)?;
        let tmp = dir.join("checkpoint.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join(CHECKPOINT))?;
        sync_dir(dir)?;
        for (first, path) in log_files(dir)? {
            // A file starting after the checkpoint holds records it does not cover.
            if first <= seq && path.file_name() != Some(log_name(seq + 1).as_ref()) {
                fs::remove_file(path)?;
            }
        }
        for keep in cp.keep {
            remove_other_generations(dir, keep)?;
        }
        Ok(())
    }
}

/// A checkpoint ready to be written ([`Log::rotate`], then [`Log::commit_checkpoint`]).
pub struct Checkpoint {
    pub bytes: Vec<u8>,
    /// The cold stores' generations it names (their other files are removed after it).
    pub keep: [(&'static str, u64); 2],
}

/// The log position a checkpoint covers (its first field after the magic).
fn peek_seq(bytes: &[u8]) -> io::Result<u64> {
    bytes
        .get(8..16)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .ok_or_else(|| io::Error::other("checkpoint too short"))
}

/// One record at `at`: (seq, stream position, events, end), or None when it is cut short or
/// corrupt.
fn parse_record(bytes: &[u8], at: usize) -> Option<(u64, u64, &[u8], usize)> {
    let head = bytes.get(at..at + HEAD)?;
    let word = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap());
    let len = u32::from_le_bytes(head[0..4].try_into().unwrap()) as usize;
    let (seq, stream, hash) = (word(4), word(12), word(20));
    let events = bytes.get(at + HEAD..at + HEAD + len)?;
    (record_hash(seq, stream, events) == hash).then_some((seq, stream, events, at + HEAD + len))
}

#[cfg(test)]
mod tests {
    use dg_detect::profile::Row;

    use super::*;
    use crate::state::encode_event;

    fn events(account: &str, ids: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for id in ids {
            let row = Row {
                ts: 1_780_000_000_000_000,
                request_id: id,
                model: "m-1",
                client_ip: "192.0.2.7",
                input_tokens: 5,
                output_tokens: 70,
                ..Row::default()
            };
            encode_event(account, &row, &mut out);
        }
        out
    }

    fn apply(log: &mut Log, st: &mut State, account: &str, ids: &[&str]) {
        let (kept, _) = st.apply(&events(account, ids)).unwrap();
        st.log_seq += 1;
        log.append(st.log_seq, 0, &kept).unwrap();
    }

    fn last_log(dir: &Path) -> PathBuf {
        log_files(dir).unwrap().pop().unwrap().1
    }

    #[test]
    fn recovers_from_log_checkpoint_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (mut log, mut st, rec) = Log::open(d, true).unwrap();
        assert!(!rec.from_checkpoint);
        apply(&mut log, &mut st, "acct-1", &["a", "b"]);
        apply(&mut log, &mut st, "acct-2", &["c", "a"]); // "a" again: counted once
        assert_eq!((st.exchanges, st.duplicates), (3, 1));
        drop(log);

        // The log alone rebuilds the state.
        let (mut log, mut st, rec) = Log::open(d, true).unwrap();
        assert_eq!((rec.records_replayed, st.exchanges), (2, 3));
        assert_eq!(st.accounts["acct-2"].exchanges, 1);

        // A checkpoint covers it; the older log files go.
        let cp = log.rotate(&st).unwrap();
        Log::commit_checkpoint(d, &cp).unwrap();
        assert_eq!(log_files(d).unwrap().len(), 1);
        apply(&mut log, &mut st, "acct-1", &["d"]);
        drop(log);
        // A crash in the middle of the next record: its bytes are cut off on open.
        let partial = {
            let mut f = OpenOptions::new().append(true).open(last_log(d)).unwrap();
            let mut rec = Vec::new();
            rec.extend_from_slice(&100u32.to_le_bytes());
            rec.extend_from_slice(&[7; 30]);
            f.write_all(&rec).unwrap();
            rec.len() as u64
        };
        let (_, st, rec) = Log::open(d, true).unwrap();
        assert!(rec.from_checkpoint);
        assert_eq!(rec.records_replayed, 1);
        assert_eq!(rec.torn_bytes, partial);
        assert_eq!(st.exchanges, 4);
        assert_eq!(st.accounts["acct-1"].exchanges, 3);
        assert_eq!(st.log_seq, 3);
    }

    #[test]
    fn checkpoint_round_trip_and_bad_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut st, _) = Log::open(dir.path(), false).unwrap();
        apply(&mut log, &mut st, "acct-9", &["x", "y", "z"]);
        // One process per state directory.
        let e = Log::open(dir.path(), false).err().unwrap();
        assert!(e.contains("in use"), "{e}");
        drop(log);
        let mut bytes = Vec::new();
        st.encode(&mut bytes);
        let back = State::decode(&bytes).unwrap();
        assert_eq!(back.accounts, st.accounts);
        assert_eq!(back.seen.days, st.seen.days);
        assert_eq!(back.log_seq, st.log_seq);
        assert!(State::decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(State::decode(b"something else").is_err());
        // A corrupt checkpoint is an error naming the file, never a silent empty state.
        std::fs::write(dir.path().join(CHECKPOINT), b"DGSTATE2 broken").unwrap();
        let e = Log::open(dir.path(), false).err().unwrap();
        assert!(e.contains("checkpoint.bin"), "{e}");
    }

    #[test]
    fn reads_version_1_checkpoints_and_ignores_far_future_times() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut st, _) = Log::open(dir.path(), false).unwrap();
        st.apply(&events("acct-1", &["a", "b"])).unwrap();
        // Version 1: counters, every profile, one flat id set.
        let mut v1 = b"DGSTATE1".to_vec();
        for v in [7u64, 2, 0, 0, 1] {
            v1.extend_from_slice(&v.to_le_bytes());
        }
        let mut p = Vec::new();
        st.accounts["acct-1"].encode(&mut p);
        v1.extend_from_slice(&6u32.to_le_bytes());
        v1.extend_from_slice(b"acct-1");
        v1.extend_from_slice(&(p.len() as u64).to_le_bytes());
        v1.extend_from_slice(&p);
        let ids: Vec<u64> = st.seen.days.values().flatten().copied().collect();
        v1.extend_from_slice(&(ids.len() as u64).to_le_bytes());
        for id in &ids {
            v1.extend_from_slice(&id.to_le_bytes());
        }
        let mut back = State::decode(&v1).unwrap();
        assert_eq!((back.log_seq, back.exchanges), (7, 2));
        assert_eq!(back.accounts, st.accounts);
        assert_eq!(back.high_water, st.high_water);
        // Its ids still count: re-sent exchanges are duplicates, new ones are not.
        let (_, n) = back.apply(&events("acct-1", &["a", "c"])).unwrap();
        assert_eq!((n.accepted, n.duplicates), (1, 1));
        // Written back as version 2, the old ids survive a round trip.
        let mut v2 = Vec::new();
        back.encode(&mut v2);
        let again = State::decode(&v2).unwrap();
        assert_eq!(again.seen.legacy, back.seen.legacy);
        assert_eq!(again.exchanges, 3);

        // One record dated in the year 9999 does not make every account idle.
        let before = back.high_water;
        let mut far = Vec::new();
        let row = Row {
            ts: 253_370_764_800_000_000,
            request_id: "far",
            model: "m-1",
            client_ip: "192.0.2.7",
            ..Row::default()
        };
        encode_event("acct-2", &row, &mut far);
        back.apply(&far).unwrap();
        assert_eq!(back.high_water, before);
        assert_eq!(back.accounts["acct-2"].exchanges, 1);
    }
}
