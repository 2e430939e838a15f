//! Bottom-k sketches and the byte codec of account state.
//!
//! A [`BottomK`] keeps the `k` values with the smallest hashes, each with how often it was
//! seen. Merging two sketches and keeping the `k` smallest gives the same sketch whatever the
//! order of merges (a value dropped from one side is also among the dropped of the union), so
//! partial account states computed on different partitions, threads or machines combine
//! exactly. Two accounts' sketches estimate the Jaccard similarity of their sets (MinHash), and
//! one sketch estimates its set's size.

use crate::hash::hash_str;

#[derive(Clone, Debug, PartialEq)]
pub struct BottomK<V> {
    k: u16,
    /// The largest hash that can still enter: the last entry's once the sketch is full.
    /// Kept beside the entries so that a value that cannot enter is turned away without
    /// reading them (the entries of many accounts' sketches do not stay in cache).
    cut: u64,
    entries: Vec<Entry<V>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry<V> {
    pub hash: u64,
    pub value: V,
    pub count: u64,
}

impl<V: Clone> BottomK<V> {
    pub fn new(k: u16) -> Self {
        BottomK {
            k: k.max(1),
            cut: u64::MAX,
            entries: Vec::new(),
        }
    }

    pub fn entries(&self) -> &[Entry<V>] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the sketch holds every value seen (it never had to drop one).
    pub fn is_complete(&self) -> bool {
        self.entries.len() < self.k as usize
    }

    /// Adds one occurrence of `value` whose hash is `hash`.
    pub fn add(&mut self, hash: u64, value: impl FnOnce() -> V) {
        self.add_n(hash, value, 1)
    }

    fn add_n(&mut self, hash: u64, value: impl FnOnce() -> V, count: u64) {
        if hash > self.cut {
            return;
        }
        match self.entries.binary_search_by(|e| e.hash.cmp(&hash)) {
            Ok(i) => self.entries[i].count += count,
            Err(i) => {
                self.entries.insert(
                    i,
                    Entry {
                        hash,
                        value: value(),
                        count,
                    },
                );
                if self.entries.len() > self.k as usize {
                    self.entries.pop();
                }
                self.set_cut();
            }
        }
    }

    /// Merges another sketch into this one (commutative and associative).
    pub fn merge(&mut self, other: &BottomK<V>) {
        let mut out =
            Vec::with_capacity((self.entries.len() + other.entries.len()).min(self.k as usize));
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.entries, &other.entries);
        while out.len() < self.k as usize && (i < a.len() || j < b.len()) {
            let take_a = j >= b.len() || (i < a.len() && a[i].hash <= b[j].hash);
            if take_a {
                let mut e = a[i].clone();
                if j < b.len() && b[j].hash == e.hash {
                    e.count += b[j].count;
                    j += 1;
                }
                i += 1;
                out.push(e);
            } else {
                out.push(b[j].clone());
                j += 1;
            }
        }
        self.entries = out;
        self.set_cut();
    }

    fn set_cut(&mut self) {
        self.cut = match self.entries.last() {
            Some(last) if self.entries.len() >= self.k as usize => last.hash,
            _ => u64::MAX,
        };
    }

    /// Estimated number of distinct values seen (exact below `k`).
    pub fn distinct(&self) -> f64 {
        let n = self.entries.len();
        if n < self.k as usize {
            return n as f64;
        }
        let max = self.entries.last().map_or(1, |e| e.hash.max(1)) as f64;
        (n as f64 - 1.0) / (max / u64::MAX as f64)
    }

    /// MinHash estimate of the Jaccard similarity of two sets from their bottom-k sketches.
    pub fn jaccard(&self, other: &BottomK<V>) -> f64 {
        let k = union_k(self.k, other.k, self.entries.len(), other.entries.len());
        if k == 0 {
            return 0.0;
        }
        // Bottom-k of the union, and how many of them are in both. Without branches on the
        // hashes' order: each step advances the side(s) holding the smaller hash.
        let (a, b) = (&self.entries, &other.entries);
        let (mut i, mut j, mut seen, mut both) = (0, 0, 0, 0);
        while seen < k && i < a.len() && j < b.len() {
            let (x, y) = (a[i].hash, b[j].hash);
            both += usize::from(x == y);
            i += usize::from(x <= y);
            j += usize::from(y <= x);
            seen += 1;
        }
        // One side is used up: the rest of the union is the other side's rest.
        seen = k.min(seen + (a.len() - i) + (b.len() - j));
        both as f64 / seen as f64
    }
}

impl<V> BottomK<V> {
    /// This sketch's hashes folded into a [`Folded`] bit set.
    pub fn fold(&self) -> Folded {
        let mut bits = [0u64; FOLDED_WORDS];
        for e in &self.entries {
            let bit = folded_bit(e.hash);
            bits[bit / 64] |= 1 << (bit % 64);
        }
        Folded {
            bits,
            k: self.k,
            len: self.entries.len() as u16,
        }
    }

    /// An upper bound on `self.jaccard(other)` from `other` folded: walks this sketch only.
    pub fn jaccard_at_most(&self, other: &Folded) -> f64 {
        // The estimate's denominator: the union always has this many hashes to walk.
        let k = union_k(self.k, other.k, self.entries.len(), usize::from(other.len));
        if k == 0 {
            return 0.0;
        }
        // A hash both sketches hold has its bit set in `other`.
        let maybe_shared = (self.entries.iter())
            .filter(|e| {
                let bit = folded_bit(e.hash);
                other.bits[bit / 64] & (1 << (bit % 64)) != 0
            })
            .count();
        maybe_shared.min(k) as f64 / k as f64
    }
}

/// How many of the smallest hashes of the union of two sketches (of sizes `ka`, `kb`, holding
/// `la`, `lb` entries) the Jaccard estimate looks at: its denominator.
fn union_k(ka: u16, kb: u16, la: usize, lb: usize) -> usize {
    usize::from(ka.min(kb)).min(la.max(lb))
}

const FOLDED_WORDS: usize = 15;

/// The bit of a hash in a [`Folded`] set (the top half of the hash scaled to the set's width).
fn folded_bit(hash: u64) -> usize {
    (((hash >> 32) * (FOLDED_WORDS as u64 * 64)) >> 32) as usize
}

/// A bottom-k sketch folded into 960 bits, with its sizes: two cache lines from which
/// [`BottomK::jaccard_at_most`] bounds the Jaccard estimate of this sketch and another one, so
/// that pairs which cannot reach a threshold are told apart without reading both sketches.
#[derive(Clone, Debug, PartialEq)]
#[repr(C, align(64))]
pub struct Folded {
    bits: [u64; FOLDED_WORDS],
    k: u16,
    len: u16,
}

impl BottomK<String> {
    pub fn add_str(&mut self, s: &str) {
        self.add(hash_str(s), || s.to_string());
    }
}

/// Appends varints, strings and sketches to a byte buffer.
pub trait Codec: Sized {
    fn put(&self, out: &mut Vec<u8>);
    fn get(input: &mut &[u8]) -> Result<Self, CodecError>;
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt account state: {0}")]
pub struct CodecError(pub &'static str);

pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn get_u64(input: &mut &[u8]) -> Result<u64, CodecError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first().ok_or(CodecError("truncated varint"))?;
        *input = rest;
        v |= u64::from(b & 0x7F) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(CodecError("varint too long"))
}

pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64)
}

pub fn get_i64(input: &mut &[u8]) -> Result<i64, CodecError> {
    let z = get_u64(input)?;
    Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
}

fn get_fixed(input: &mut &[u8]) -> Result<u64, CodecError> {
    if input.len() < 8 {
        return Err(CodecError("truncated hash"));
    }
    let (head, rest) = input.split_at(8);
    *input = rest;
    Ok(u64::from_le_bytes(head.try_into().expect("8 bytes")))
}

impl Codec for u64 {
    fn put(&self, out: &mut Vec<u8>) {
        put_u64(out, *self)
    }
    fn get(input: &mut &[u8]) -> Result<Self, CodecError> {
        get_u64(input)
    }
}

impl Codec for u32 {
    fn put(&self, out: &mut Vec<u8>) {
        put_u64(out, u64::from(*self))
    }
    fn get(input: &mut &[u8]) -> Result<Self, CodecError> {
        u32::try_from(get_u64(input)?).map_err(|_| CodecError("u32 out of range"))
    }
}

impl Codec for () {
    fn put(&self, _: &mut Vec<u8>) {}
    fn get(_: &mut &[u8]) -> Result<Self, CodecError> {
        Ok(())
    }
}

impl Codec for String {
    fn put(&self, out: &mut Vec<u8>) {
        put_u64(out, self.len() as u64);
        out.extend_from_slice(self.as_bytes());
    }
    fn get(input: &mut &[u8]) -> Result<Self, CodecError> {
        let n = get_u64(input)? as usize;
        if input.len() < n {
            return Err(CodecError("truncated string"));
        }
        let (s, rest) = input.split_at(n);
        *input = rest;
        String::from_utf8(s.to_vec()).map_err(|_| CodecError("string not UTF-8"))
    }
}

impl<V: Codec + Clone> Codec for BottomK<V> {
    fn put(&self, out: &mut Vec<u8>) {
        put_u64(out, u64::from(self.k));
        put_u64(out, self.entries.len() as u64);
        for e in &self.entries {
            out.extend_from_slice(&e.hash.to_le_bytes());
            put_u64(out, e.count);
            e.value.put(out);
        }
    }
    fn get(input: &mut &[u8]) -> Result<Self, CodecError> {
        let k = u16::try_from(get_u64(input)?).map_err(|_| CodecError("k out of range"))?;
        let n = get_u64(input)? as usize;
        if n > k as usize {
            return Err(CodecError("sketch longer than k"));
        }
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let hash = get_fixed(input)?;
            let count = get_u64(input)?;
            let value = V::get(input)?;
            entries.push(Entry { hash, value, count });
        }
        if entries.windows(2).any(|w| w[0].hash >= w[1].hash) {
            return Err(CodecError("sketch not sorted"));
        }
        let mut sketch = BottomK {
            k,
            cut: u64::MAX,
            entries,
        };
        sketch.set_cut();
        Ok(sketch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::mix;

    fn sketch(range: std::ops::Range<u64>, k: u16) -> BottomK<()> {
        let mut s = BottomK::new(k);
        for v in range {
            s.add(mix(v), || ());
        }
        s
    }

    #[test]
    fn merge_is_order_independent_and_exact() {
        let whole = sketch(0..5000, 64);
        let mut a = sketch(0..1000, 64);
        let b = sketch(1000..3000, 64);
        let c = sketch(3000..5000, 64);
        let mut c2 = c.clone();
        a.merge(&b);
        a.merge(&c);
        c2.merge(&sketch(1000..3000, 64));
        c2.merge(&sketch(0..1000, 64));
        assert_eq!(a, whole);
        assert_eq!(c2, whole);
    }

    #[test]
    fn counts_survive_merges() {
        let mut a = BottomK::new(4);
        let mut b = BottomK::new(4);
        for _ in 0..3 {
            a.add_str("10.0.0.1");
        }
        b.add_str("10.0.0.1");
        a.merge(&b);
        assert_eq!(a.entries()[0].count, 4);
    }

    #[test]
    fn estimates() {
        let s = sketch(0..100_000, 256);
        let d = s.distinct();
        assert!((d - 100_000.0).abs() < 15_000.0, "{d}");
        assert_eq!(sketch(0..10, 256).distinct(), 10.0);
        let j = sketch(0..10_000, 256).jaccard(&sketch(5_000..15_000, 256));
        assert!((j - 1.0 / 3.0).abs() < 0.1, "{j}");
        assert_eq!(sketch(0..10, 64).jaccard(&sketch(20..30, 64)), 0.0);
    }

    /// The share of the union's `k` smallest hashes that both sketches hold, from sets.
    fn jaccard_by_sets(a: &BottomK<()>, b: &BottomK<()>) -> f64 {
        use std::collections::BTreeSet;
        let (x, y): (BTreeSet<u64>, BTreeSet<u64>) = (
            a.entries().iter().map(|e| e.hash).collect(),
            b.entries().iter().map(|e| e.hash).collect(),
        );
        let k = (a.k.min(b.k) as usize).min(x.len().max(y.len()));
        let union: Vec<u64> = x.union(&y).copied().take(k).collect();
        if union.is_empty() {
            return 0.0;
        }
        let both = union
            .iter()
            .filter(|h| x.contains(h) && y.contains(h))
            .count();
        both as f64 / union.len() as f64
    }

    #[test]
    fn jaccard_is_the_shared_share_of_the_unions_bottom_k() {
        let ranges = [
            0..0,
            0..3,
            0..40,
            10..50,
            35..36,
            0..1000,
            500..1500,
            990..3000,
        ];
        for ka in [1, 8, 64, 256] {
            for kb in [8, 256] {
                for ra in ranges.clone() {
                    for rb in ranges.clone() {
                        let (a, b) = (sketch(ra.clone(), ka), sketch(rb.clone(), kb));
                        let want = jaccard_by_sets(&a, &b);
                        assert_eq!(a.jaccard(&b), want, "{ra:?} k {ka} / {rb:?} k {kb}");
                        assert_eq!(b.jaccard(&a), want, "{rb:?} k {kb} / {ra:?} k {ka}");
                        for (x, y) in [(&a, &b), (&b, &a)] {
                            let bound = x.jaccard_at_most(&y.fold());
                            assert!(want <= bound, "{ra:?} k {ka} / {rb:?} k {kb}: {bound}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn folded_sketches_bound_jaccard_and_tell_unrelated_sets_apart() {
        assert_eq!(std::mem::size_of::<Folded>(), 128, "two cache lines");
        let mut told_apart = 0;
        for s in 0..200u64 {
            // Sets of 40 to 140 values; half of the pairs share a fifth of their values.
            let (lo, len) = (s * 100_000, 40 + s % 100);
            let a = sketch(lo..lo + len, 256);
            let shift = if s % 2 == 0 { len * 4 / 5 } else { 50_000 };
            let b = sketch(lo + shift..lo + shift + len, 256);
            let (j, bound) = (a.jaccard(&b), a.jaccard_at_most(&b.fold()));
            assert!(j <= bound, "{s}: {j} > {bound}");
            told_apart += usize::from(bound < 0.15);
        }
        // Disjoint sets of a few hundred hashes share few of 960 bits.
        assert!(
            told_apart >= 80,
            "{told_apart} of 100 disjoint pairs told apart"
        );
        assert_eq!(
            BottomK::<()>::new(8).jaccard_at_most(&sketch(0..5, 8).fold()),
            0.0
        );
        let same = sketch(0..100, 256);
        assert_eq!(same.jaccard_at_most(&same.fold()), 1.0);
    }

    #[test]
    fn codec_round_trip_and_corruption() {
        let mut s = BottomK::new(8);
        for ip in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"] {
            s.add_str(ip);
        }
        let mut buf = Vec::new();
        s.put(&mut buf);
        put_i64(&mut buf, -123456789);
        let mut r = buf.as_slice();
        assert_eq!(BottomK::<String>::get(&mut r).unwrap(), s);
        assert_eq!(get_i64(&mut r).unwrap(), -123456789);
        assert!(r.is_empty());
        let mut cut = &buf[..buf.len() / 2];
        assert!(BottomK::<String>::get(&mut cut).is_err());
    }
}
