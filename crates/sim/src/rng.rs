//! A small deterministic random number generator and the distributions the simulator
//! draws from. Written here (not taken from a crate) so that a scenario, scale and seed give
//! byte-identical output whatever the versions of our dependencies.

/// SplitMix64: derives independent stream seeds from (seed, stream ids).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed for stream `ids` under `seed`.
pub fn stream(seed: u64, ids: &[u64]) -> u64 {
    ids.iter().fold(mix(seed), |acc, &id| mix(acc ^ mix(id)))
}

/// Hashes a string into a stream id.
pub fn id_of(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// xoshiro256++.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut s = [0u64; 4];
        for slot in &mut s {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            *slot = mix(z);
        }
        Rng { s }
    }

    /// A generator for a sub-stream, independent of how much this one has been used.
    pub fn for_stream(seed: u64, ids: &[u64]) -> Self {
        Rng::new(stream(seed, ids))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = (self.s[0].wrapping_add(self.s[3]))
            .rotate_left(23)
            .wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// A uniformly chosen item (of a `Copy` type, such as `&str`).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A reference to a uniformly chosen item.
    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Index drawn with the given weights.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-300);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with the given median and log-space sigma.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f64()).ln()
    }

    /// Zipf-like rank in [0, n): small ranks much more likely.
    pub fn zipf(&mut self, n: u64, s: f64) -> u64 {
        // Inverse transform on a continuous approximation.
        let n = n.max(1) as f64;
        let u = self.f64();
        let x = if (s - 1.0).abs() < 1e-9 {
            n.powf(u)
        } else {
            ((n.powf(1.0 - s) - 1.0) * u + 1.0).powf(1.0 / (1.0 - s))
        };
        (x.floor() as u64).saturating_sub(1).min(n as u64 - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::for_stream(7, &[1, 2]).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::for_stream(7, &[1, 2]).next_u64(),
            Rng::for_stream(7, &[2, 1]).next_u64()
        );
    }

    #[test]
    fn distributions_have_their_shape() {
        let mut r = Rng::new(1);
        let n = 20_000;
        let mean = (0..n).map(|_| r.f64()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01);
        let mut v: Vec<f64> = (0..n).map(|_| r.lognormal(100.0, 1.0)).collect();
        v.sort_by(f64::total_cmp);
        assert!((v[n / 2] - 100.0).abs() < 5.0, "median {}", v[n / 2]);
        let small = (0..n).filter(|_| r.zipf(1000, 1.1) < 10).count();
        assert!(small > n / 3, "zipf favours small ranks: {small}");
        assert!((0..n).all(|_| r.below(3) < 3));
    }
}
