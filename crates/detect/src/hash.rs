//! A small, fixed, platform-independent 64-bit hash, so that fingerprints written to disk
//! (templates, clients, system prompts) stay comparable across runs, machines and versions.

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// Final avalanche (splitmix64's finaliser).
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The inverse of [`mix`]: each step of the finaliser is a bijection, so a value kept only
/// as its mix (a time bucket in a sketch) can be read back.
pub fn unmix(mut z: u64) -> u64 {
    z = unshift(z, 31);
    z = z.wrapping_mul(inverse(0x94D0_49BB_1331_11EB));
    z = unshift(z, 27);
    z = z.wrapping_mul(inverse(0xBF58_476D_1CE4_E5B9));
    unshift(z, 30)
}

/// The multiplicative inverse of an odd number modulo 2^64 (Newton's iteration doubles the
/// correct low bits each step, from 3).
const fn inverse(a: u64) -> u64 {
    let mut x = a;
    let mut i = 0;
    while i < 6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

/// The inverse of `z ^ (z >> s)`.
fn unshift(z: u64, s: u32) -> u64 {
    let mut x = z;
    for _ in 0..64 / s + 1 {
        x = z ^ (x >> s);
    }
    x
}

/// Hashes bytes: 8 bytes at a time, then the tail, then the length.
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ K;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = mix(h ^ w).wrapping_add(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = mix(h ^ u64::from_le_bytes(buf)).wrapping_add(K);
    }
    mix(h ^ bytes.len() as u64)
}

pub fn hash_str(s: &str) -> u64 {
    hash_bytes(0, s.as_bytes())
}

/// Combines two hashes (order matters).
pub fn combine(a: u64, b: u64) -> u64 {
    mix(a.rotate_left(17) ^ b.wrapping_mul(K))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_spread() {
        // Fixed values: a change here breaks every fingerprint written before it.
        assert_eq!(hash_str(""), hash_bytes(0, b""));
        assert_ne!(hash_str("a"), hash_str("b"));
        assert_ne!(hash_str("abcdefgh1"), hash_str("abcdefgh2"));
        assert_ne!(combine(1, 2), combine(2, 1));
        let h = hash_str("distillguard");
        assert_eq!(h, hash_str("distillguard"));
    }

    #[test]
    fn unmix_reads_back_what_mix_hid() {
        for x in [0, 1, 2, 41, 2_960_000, u64::MAX, 1 << 63, (-5i64) as u64]
            .into_iter()
            .chain((0..1000).map(|i| hash_str(&i.to_string())))
        {
            assert_eq!(unmix(mix(x)), x, "{x}");
            assert_eq!(mix(unmix(x)), x, "{x}");
        }
    }
}
