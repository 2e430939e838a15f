//! State that went idle, on disk: profiles of idle accounts (`cold-*.bin`) and the request ids
//! of past days (`ids-*.bin`); memory holds only what is active.
//!
//! ```text
//! STATE_DIR/<prefix>-<generation>.bin   [hash u64][bytes] [hash u64][bytes] …
//! ```
//!
//! An idle entry is appended to its file and dropped from memory; the next event that needs
//! it reads it back ([`Cold::take`]). The file is append-only between checkpoints,
//! so every offset the last checkpoint names stays readable: a checkpoint records the index
//! (account → offset) and the file's length, and recovery cuts the file back to that length
//! before re-applying the log (whose events rebuild whatever was evicted after it). Records
//! of accounts that came back are garbage; a checkpoint rewrites the live ones into the next
//! generation when garbage is most of the file, and the old file goes once that checkpoint
//! is on disk.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

const HEAD: u64 = 8;

/// Where one account's profile is in the cold file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub offset: u64,
    pub len: u32,
}

/// One cold store of a state directory.
pub struct Cold {
    /// File name prefix: `cold` (profiles) or `ids` (request ids per day).
    prefix: &'static str,
    /// Open once attached to a directory ([`Cold::attach`]).
    file: Option<Arc<File>>,
    pub generation: u64,
    /// Bytes written (the next record's offset).
    pub len: u64,
    /// Bytes of records no longer in the index.
    pub garbage: u64,
    pub index: HashMap<String, Slot>,
    buf: Vec<u8>,
}

pub fn file_name(prefix: &str, generation: u64) -> String {
    format!("{prefix}-{generation:010}.bin")
}

/// The files of a directory named `<prefix><number><suffix>`, with their numbers, in
/// ascending order (log files, each cold store's generations).
pub(crate) fn numbered_files(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> io::Result<Vec<(u64, std::path::PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(n) = name
            .strip_prefix(prefix)
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((n, p));
        }
    }
    out.sort();
    Ok(out)
}

/// Makes a directory's entries (new or renamed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn hash(bytes: &[u8]) -> u64 {
    foldhash::quality::FixedState::with_seed(0x636f_6c64_7072_6f66).hash_one(bytes)
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn read_slot(file: &File, key: &str, s: Slot) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; HEAD as usize + s.len as usize];
    file.read_exact_at(&mut buf, s.offset)?;
    let body = buf.split_off(HEAD as usize);
    if u64::from_le_bytes(buf[..].try_into().unwrap()) != hash(&body) {
        return Err(invalid(format!(
            "cold record {key:?} at byte {} is corrupt",
            s.offset
        )));
    }
    Ok(body)
}

impl Cold {
    /// An empty store whose files are named `<prefix>-<generation>.bin`.
    pub fn new(prefix: &'static str) -> Cold {
        Cold {
            prefix,
            file: None,
            generation: 0,
            len: 0,
            garbage: 0,
            index: HashMap::new(),
            buf: Vec::new(),
        }
    }

    /// Opens this store's file in `dir` (after a checkpoint set generation, length and
    /// index): cuts off what was appended after the checkpoint and removes files of other
    /// generations (a compaction whose checkpoint never landed, or one already superseded).
    pub fn attach(&mut self, dir: &Path) -> io::Result<()> {
        let path = dir.join(file_name(self.prefix, self.generation));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        let on_disk = file.metadata()?.len();
        if on_disk < self.len {
            return Err(invalid(format!(
                "{} holds {on_disk} bytes, the checkpoint needs {}",
                path.display(),
                self.len
            )));
        }
        if on_disk > self.len {
            file.set_len(self.len)?;
            file.sync_all()?;
        }
        self.remove_old(dir)?;
        self.file = Some(Arc::new(file));
        Ok(())
    }

    fn file(&self) -> io::Result<&Arc<File>> {
        self.file
            .as_ref()
            .ok_or_else(|| io::Error::other("cold store not attached to a state directory"))
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Appends an entry (`encode` writes its bytes); the caller drops it from memory.
    pub fn put(&mut self, key: String, encode: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; HEAD as usize]);
        encode(&mut self.buf);
        let h = hash(&self.buf[HEAD as usize..]);
        self.buf[..HEAD as usize].copy_from_slice(&h.to_le_bytes());
        let len = u32::try_from(self.buf.len() as u64 - HEAD)
            .map_err(|_| io::Error::other("profile larger than 4 GiB"))?;
        self.file()?.write_all_at(&self.buf, self.len)?;
        let slot = Slot {
            offset: self.len,
            len,
        };
        self.len += HEAD + u64::from(len);
        if let Some(old) = self.index.insert(key, slot) {
            self.garbage += HEAD + u64::from(old.len);
        }
        Ok(())
    }

    /// Reads an entry back and decodes it (it becomes resident again), or None when it is
    /// not here. The entry leaves the store only once it has decoded: on any error it stays.
    pub fn take<T>(
        &mut self,
        key: &str,
        decode: impl FnOnce(&[u8]) -> io::Result<T>,
    ) -> io::Result<Option<T>> {
        let Some(&slot) = self.index.get(key) else {
            return Ok(None);
        };
        let p = decode(&read_slot(self.file()?, key, slot)?)?;
        self.index.remove(key);
        self.garbage += HEAD + u64::from(slot.len);
        Ok(Some(p))
    }

    /// What a judgement needs to read every cold profile outside the state lock: records
    /// are never rewritten in place, so the snapshot stays valid while the store changes.
    pub fn snapshot(&self) -> ColdSnapshot {
        ColdSnapshot {
            file: self.file.clone(),
            slots: self.index.iter().map(|(n, s)| (n.clone(), *s)).collect(),
        }
    }

    /// Makes every record written so far durable (before a checkpoint names them).
    pub fn sync(&self) -> io::Result<()> {
        match &self.file {
            Some(f) if self.len > 0 => f.sync_data(),
            _ => Ok(()),
        }
    }

    /// Whether the file is due for compaction (garbage more than half of it and at least
    /// [`COMPACT_MIN_GARBAGE`]), and if so what to copy. Call under the state lock, while
    /// taking a checkpoint; [`Plan::copy`] then runs outside it and [`Cold::finish`] under it
    /// again, so ingestion does not wait for the copy.
    pub fn plan(&self, dir: &Path, min_garbage: u64) -> Option<Plan> {
        if self.garbage < min_garbage || self.garbage * 2 <= self.len {
            return None;
        }
        Some(Plan {
            old: self.file.clone()?,
            slots: self.index.iter().map(|(k, s)| (k.clone(), *s)).collect(),
            path: dir.join(file_name(self.prefix, self.generation + 1)),
            dir: dir.to_path_buf(),
            generation: self.generation + 1,
        })
    }

    /// Adopts a copy made by [`Plan::copy`]: entries unchanged since the plan take their new
    /// offsets, entries written since are copied now (few), entries taken since are left
    /// behind as garbage. The index changes only once the new file is whole and synced; on
    /// any failure the store stays on its old file and the partial new file is removed.
    /// The old file goes when the checkpoint naming the new generation is on disk.
    pub fn finish(&mut self, c: Copy) -> io::Result<()> {
        if c.generation != self.generation + 1 {
            // Not this store's next file (and possibly its current one): leave it alone.
            return Err(io::Error::other("compaction of another generation"));
        }
        let path = c.path.clone();
        let result = self.adopt(c);
        if result.is_err() {
            let _ = fs::remove_file(path);
        }
        result
    }

    fn adopt(&mut self, c: Copy) -> io::Result<()> {
        let old = self.file()?.clone();
        let moved: HashMap<&str, (Slot, u64)> = c
            .moved
            .iter()
            .map(|(k, s, at)| (k.as_str(), (*s, *at)))
            .collect();
        let mut index = HashMap::with_capacity(self.index.len());
        let (mut at, mut live) = (c.len, 0u64);
        let mut buf = Vec::new();
        for (key, slot) in &self.index {
            let offset = match moved.get(key.as_str()) {
                Some((was, new)) if was == slot => *new,
                _ => {
                    let n = HEAD + u64::from(slot.len);
                    buf.resize(n as usize, 0);
                    old.read_exact_at(&mut buf, slot.offset)?;
                    c.file.write_all_at(&buf, at)?;
                    at += n;
                    at - n
                }
            };
            live += HEAD + u64::from(slot.len);
            index.insert(
                key.clone(),
                Slot {
                    offset,
                    len: slot.len,
                },
            );
        }
        c.file.sync_all()?;
        sync_dir(&c.dir)?;
        self.index = index;
        self.file = Some(Arc::new(c.file));
        self.generation = c.generation;
        self.len = at;
        self.garbage = at - live;
        Ok(())
    }

    /// The files to keep after a checkpoint of this store: (prefix, generation).
    pub fn keep(&self) -> (&'static str, u64) {
        (self.prefix, self.generation)
    }

    fn remove_old(&self, dir: &Path) -> io::Result<()> {
        remove_other_generations(dir, self.keep())
    }
}

/// Removes a store's files of generations other than `keep.1` (once a checkpoint naming
/// that generation is on disk).
pub fn remove_other_generations(dir: &Path, keep: (&str, u64)) -> io::Result<()> {
    for (g, p) in numbered_files(dir, &format!("{}-", keep.0), ".bin")? {
        if g != keep.1 {
            fs::remove_file(p)?;
        }
    }
    Ok(())
}

/// Compaction only pays once a file holds at least this much garbage.
pub const COMPACT_MIN_GARBAGE: u64 = 1 << 20;

/// What a compaction copies (see [`Cold::plan`]).
pub struct Plan {
    old: Arc<File>,
    slots: Vec<(String, Slot)>,
    path: std::path::PathBuf,
    dir: std::path::PathBuf,
    generation: u64,
}

/// A compaction's new file, written but not yet adopted (see [`Cold::finish`]).
pub struct Copy {
    file: File,
    path: std::path::PathBuf,
    dir: std::path::PathBuf,
    generation: u64,
    /// (key, slot in the old file, offset in the new one).
    moved: Vec<(String, Slot, u64)>,
    len: u64,
}

impl Plan {
    /// Copies the planned records into the next generation's file. Needs no lock: records
    /// are never rewritten in place. A failure removes the partial file.
    pub fn copy(mut self) -> io::Result<Copy> {
        let result = (|| {
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&self.path)?;
            // File order: sequential reads.
            self.slots.sort_by_key(|(_, s)| s.offset);
            let mut moved = Vec::with_capacity(self.slots.len());
            let mut at = 0u64;
            let mut buf = Vec::new();
            for (key, slot) in std::mem::take(&mut self.slots) {
                let n = HEAD + u64::from(slot.len);
                buf.resize(n as usize, 0);
                self.old.read_exact_at(&mut buf, slot.offset)?;
                file.write_all_at(&buf, at)?;
                moved.push((key, slot, at));
                at += n;
            }
            Ok((file, moved, at))
        })();
        match result {
            Ok((file, moved, len)) => Ok(Copy {
                file,
                path: self.path,
                dir: self.dir,
                generation: self.generation,
                moved,
                len,
            }),
            Err(e) => {
                let _ = fs::remove_file(&self.path);
                Err(e)
            }
        }
    }
}

/// Entries read from a store: (key, bytes).
pub type Entries = Vec<(String, Vec<u8>)>;
/// Entries that could not be read: (key, why).
pub type Unreadable = Vec<(String, io::Error)>;

/// The cold profiles as they were at one moment (see [`Cold::snapshot`]).
pub struct ColdSnapshot {
    file: Option<Arc<File>>,
    pub slots: Vec<(String, Slot)>,
}

impl ColdSnapshot {
    /// Reads every entry of the snapshot, in file order: the entries read, and the keys
    /// that could not be read with the reason (a damaged record keeps no judgement from
    /// running; the caller reports it).
    pub fn read_all(self) -> (Entries, Unreadable) {
        let mut slots = self.slots;
        let Some(file) = self.file else {
            let e = || io::Error::other("cold store not attached");
            return (
                Vec::new(),
                slots.into_iter().map(|(n, _)| (n, e())).collect(),
            );
        };
        // File order: sequential reads.
        slots.sort_by_key(|(_, s)| s.offset);
        let mut read = Vec::with_capacity(slots.len());
        let mut failed = Vec::new();
        for (n, s) in slots {
            match read_slot(&file, &n, s) {
                Ok(b) => read.push((n, b)),
                Err(e) => failed.push((n, e)),
            }
        }
        (read, failed)
    }
}

#[cfg(test)]
mod tests {
    use dg_detect::profile::{Profile, Row};

    use super::*;

    fn profile(n: u32) -> Profile {
        let mut p = Profile::default();
        for i in 0..n {
            let id = format!("r{i}");
            p.add(&Row {
                ts: 1_780_000_000_000_000 + i64::from(i) * 1_000_000,
                request_id: &id,
                model: "m-1",
                client_ip: "198.51.100.4",
                input_tokens: 10 + i,
                output_tokens: 50,
                ..Row::default()
            });
        }
        p
    }

    fn put(c: &mut Cold, key: &str, p: &Profile) {
        c.put(key.into(), |b| p.encode(b)).unwrap();
    }

    fn take(c: &mut Cold, key: &str) -> Option<Profile> {
        c.take(key, |b| Ok(Profile::decode(b).unwrap())).unwrap()
    }

    #[test]
    fn evict_reload_compact_and_cut_back_to_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut c = Cold::new("cold");
        c.attach(d).unwrap();
        for i in 0..20 {
            put(&mut c, &format!("a{i}"), &profile(i + 1));
        }
        assert_eq!(take(&mut c, "a3").unwrap(), profile(4));
        assert!(take(&mut c, "a3").is_none());
        assert!(!c.contains("a3") && c.contains("a4"));
        let (snap, unreadable) = c.snapshot().read_all();
        assert!(unreadable.is_empty());
        assert_eq!(snap.len(), 19);
        assert!(snap.iter().all(
            |(n, b)| Profile::decode(b).unwrap() == profile(n[1..].parse::<u32>().unwrap() + 1)
        ));

        // A "checkpoint" here: generation, length and index are what recovery gets back.
        c.sync().unwrap();
        let (gen_at, len_at, index_at) = (c.generation, c.len, c.index.clone());
        put(&mut c, "late", &profile(2));
        let mut back = Cold {
            generation: gen_at,
            len: len_at,
            index: index_at,
            ..Cold::new("cold")
        };
        drop(c);
        back.attach(d).unwrap();
        let file0 = d.join(file_name("cold", 0));
        assert_eq!(std::fs::metadata(&file0).unwrap().len(), len_at);
        assert_eq!(take(&mut back, "a7").unwrap(), profile(8));

        // Most records taken back: the live ones move to the next generation.
        for i in 0..15 {
            let _ = take(&mut back, &format!("a{i}"));
        }
        let plan = back.plan(d, 0).expect("mostly garbage");
        let copy = plan.copy().unwrap();
        // Written and taken while the copy ran (outside the lock): both seen to.
        put(&mut back, "new", &profile(9));
        assert_eq!(take(&mut back, "a19").unwrap(), profile(20));
        back.finish(copy).unwrap();
        assert_eq!(take(&mut back, "new").unwrap(), profile(9));
        put(&mut back, "a19", &profile(20));
        assert_eq!(back.generation, 1);
        assert_eq!(back.index.len(), 5);
        for i in 15..20 {
            assert_eq!(take(&mut back, &format!("a{i}")).unwrap(), profile(i + 1));
        }
        // Another store's files in the same directory are not touched.
        let mut ids = Cold::new("ids");
        ids.attach(d).unwrap();
        ids.put("20000".into(), |b| b.extend_from_slice(&[1, 2, 3]))
            .unwrap();
        remove_other_generations(d, back.keep()).unwrap();
        assert!(!file0.exists());
        assert_eq!(
            ids.take("20000", |b| Ok(b.to_vec())).unwrap().unwrap(),
            vec![1, 2, 3]
        );

        // A damaged record is an error naming its key, never a silent empty entry.
        put(&mut back, "x", &profile(3));
        let at = back.index["x"].offset + HEAD + 5;
        let f = OpenOptions::new()
            .write(true)
            .open(d.join(file_name("cold", 1)))
            .unwrap();
        f.write_all_at(&[0xFF, 0xFE], at).unwrap();
        let e = back.take("x", |b| Ok(b.len())).unwrap_err().to_string();
        assert!(e.contains("\"x\"") && e.contains("corrupt"), "{e}");
        // It stays in the store (never dropped), and a judgement's read reports it by name.
        assert!(back.contains("x"));
        let (_, unreadable) = back.snapshot().read_all();
        assert_eq!(unreadable.len(), 1);
        assert_eq!(unreadable[0].0, "x");
        // A record that reads but does not decode stays too.
        put(&mut back, "y", &profile(1));
        let e = back.take("y", |_| Err::<(), _>(invalid("no".into())));
        assert!(e.is_err() && back.contains("y"));
        // A file shorter than its checkpoint says is refused.
        let mut short = Cold {
            generation: 1,
            len: 1 << 30,
            ..Cold::new("cold")
        };
        assert!(short.attach(d).is_err());
    }
}
