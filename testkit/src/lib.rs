//! Test support shared by tftproxy's integration tests (`tests/support`
//! re-exports it) and by the boot-storm load generator
//! (`benches/boot_storm`).
//!
//! * [`http_cluster`]: a real HTTP/1.1 server on loopback playing a remote
//!   call-control cluster, with scripted misbehaviours.
//! * [`rng`]: a small deterministic generator for reproducible garbage.
//! * [`pattern`]: deterministic file contents.
//!
//! This crate is dev-only (`publish = false`) and does not depend on
//! tftproxy: what needs the daemon stays in `tests/support`.

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
