//! Helpers shared by the integration tests. Each test binary declares
//! `mod support;` and uses what it needs (hence `dead_code` allowances in
//! the modules).
#![allow(dead_code)]

pub mod daemon;
pub mod http_cluster;
pub mod rng;

/// `len` deterministic bytes for `seed` (xorshift64): no short period, so a
/// truncated, reordered or repeated block shows.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
