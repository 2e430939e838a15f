//! The request ids counted so far, one set per UTC day of the exchanges' timestamps: today's
//! and yesterday's in memory, older days in the `ids` cold store, read back when a late or
//! re-sent exchange of that day arrives.
//!
//! A re-sent exchange is the same record, with the same timestamp, so it meets its first copy
//! in the same day's set: nothing is counted twice, however long after it comes.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::io;

use crate::cold::Cold;

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

const DAY_MICROS: i64 = 86_400_000_000;

/// The UTC day (days since the epoch) of a timestamp in µs.
pub fn day_of(ts: i64) -> i64 {
    ts.div_euclid(DAY_MICROS)
}

pub struct RequestIds {
    /// Days in memory.
    pub days: HashMap<i64, IdSet>,
    /// Days on disk, keyed by the day number in decimal.
    pub cold: Cold,
    /// Days read back from disk since start.
    pub reloads: u64,
    /// Ids from a version-1 checkpoint, which kept no days (empty otherwise).
    pub legacy: IdSet,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds {
            days: HashMap::new(),
            cold: Cold::new("ids"),
            reloads: 0,
            legacy: IdSet::default(),
        }
    }
}

impl RequestIds {
    /// The set of one day, read back from disk when it was evicted.
    pub fn day(&mut self, day: i64) -> io::Result<&mut IdSet> {
        if !self.days.contains_key(&day) {
            let mut set = IdSet::default();
            let read = self.cold.take(&day.to_string(), |bytes| {
                if bytes.len() % 8 != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("request ids of day {day}: {} bytes", bytes.len()),
                    ));
                }
                let mut set = IdSet::default();
                set.reserve(bytes.len() / 8);
                set.extend(
                    bytes
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap())),
                );
                Ok(set)
            })?;
            if let Some(read) = read {
                set = read;
                self.reloads += 1;
            }
            self.days.insert(day, set);
        }
        Ok(self.days.get_mut(&day).expect("inserted above"))
    }

    /// Whether a version-1 checkpoint counted this id.
    pub fn in_legacy(&self, id: u64) -> bool {
        !self.legacy.is_empty() && self.legacy.contains(&id)
    }

    /// Ids in memory.
    pub fn resident(&self) -> usize {
        self.days.values().map(HashSet::len).sum::<usize>() + self.legacy.len()
    }

    /// Moves to disk every day that ended before `cutoff` (µs), oldest first, at most
    /// `batch` days. A failed write leaves that day in memory.
    pub fn evict_before(&mut self, cutoff: i64, batch: usize) -> io::Result<usize> {
        let mut old: Vec<i64> = self
            .days
            .keys()
            .copied()
            .filter(|&d| (d + 1).saturating_mul(DAY_MICROS) <= cutoff)
            .collect();
        old.sort_unstable();
        old.truncate(batch.max(1));
        for &d in &old {
            let set = self.days.remove(&d).expect("listed above");
            let mut ids: Vec<u64> = set.iter().copied().collect();
            ids.sort_unstable();
            let put = self.cold.put(d.to_string(), |b| {
                b.reserve(ids.len() * 8);
                for id in &ids {
                    b.extend_from_slice(&id.to_le_bytes());
                }
            });
            if let Err(e) = put {
                self.days.insert(d, set);
                return Err(e);
            }
        }
        Ok(old.len())
    }
}
