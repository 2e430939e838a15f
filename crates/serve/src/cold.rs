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

/// The generations of one store's files in a directory.
fn cold_files(dir: &Path, prefix: &str) -> io::Result<Vec<(u64, std::path::PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(g) = name
            .strip_prefix(prefix)
            .and_then(|n| n.strip_prefix('-'))
            .and_then(|n| n.strip_suffix(".bin"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((g, p));
        }
    }
    Ok(out)
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

    /// Rewrites the live records into the next generation when garbage is more than half
    /// of the file (and at least `min_garbage` bytes). Call while taking a checkpoint, under
    /// the state lock; the old file is removed by [`Cold::remove_old`] once the checkpoint
    /// naming the new generation is on disk. Returns whether it compacted.
    pub fn compact(&mut self, dir: &Path, min_garbage: u64) -> io::Result<bool> {
        if self.garbage < min_garbage || self.garbage * 2 <= self.len {
            return Ok(false);
        }
        let old = self.file()?.clone();
        let next = self.generation + 1;
        let path = dir.join(file_name(self.prefix, next));
        // The index changes only once the new file is whole and durable: a failure leaves
        // the store on the old file, untouched, and the partial new file is removed.
        let copied = (|| -> io::Result<Copied> {
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&path)?;
            let mut slots: Vec<(&String, &Slot)> = self.index.iter().collect();
            slots.sort_by_key(|(_, s)| s.offset);
            let mut moved = Vec::with_capacity(slots.len());
            let mut at = 0u64;
            let mut buf = Vec::new();
            for (key, slot) in slots {
                let n = HEAD + u64::from(slot.len);
                buf.resize(n as usize, 0);
                old.read_exact_at(&mut buf, slot.offset)?;
                file.write_all_at(&buf, at)?;
                moved.push((key.clone(), at));
                at += n;
            }
            file.sync_all()?;
            File::open(dir)?.sync_all()?;
            Ok((file, moved, at))
        })();
        let (file, moved, len) = match copied {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        for (key, offset) in moved {
            self.index
                .get_mut(&key)
                .expect("copied from the index")
                .offset = offset;
        }
        self.file = Some(Arc::new(file));
        self.generation = next;
        self.len = len;
        self.garbage = 0;
        Ok(true)
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
    for (g, p) in cold_files(dir, keep.0)? {
        if g != keep.1 {
            fs::remove_file(p)?;
        }
    }
    Ok(())
}

/// Entries read from a store: (key, bytes).
pub type Entries = Vec<(String, Vec<u8>)>;
/// Entries that could not be read: (key, why).
pub type Unreadable = Vec<(String, io::Error)>;
/// A compacted copy: the new file, each key's new offset, the new length.
type Copied = (File, Vec<(String, u64)>, u64);

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
        assert!(back.compact(d, 0).unwrap());
        assert_eq!(back.generation, 1);
        assert_eq!(back.garbage, 0);
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
