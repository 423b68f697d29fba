//! `source::upstream` against real HTTP servers on loopback.
//!
//! One test binary; the tests are grouped by theme in the modules below, the
//! client set-up and outcome helpers shared by them live here.

#[path = "../support/mod.rs"]
mod support;

mod bodies;
mod client;
mod cluster;
mod statuses;
mod timeouts;

use std::time::Duration;

use tftproxy::config::RemoteConfig;
use tftproxy::source::upstream::{AddressOutcome, FailReason, Upstream};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// Scheduling slack on a loaded 2-core CI machine.
const MARGIN: Duration = Duration::from_millis(1500);

fn remote() -> RemoteConfig {
    RemoteConfig {
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
        ..RemoteConfig::default()
    }
}

fn upstream() -> Upstream {
    Upstream::new(&remote(), 128 << 20).expect("client")
}

/// Deterministic, non-repeating-ish bytes (so truncation or reordering shows).
fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

fn found(outcome: &AddressOutcome) -> &[u8] {
    match outcome {
        AddressOutcome::Found(body) => body,
        other => panic!("expected Found, got {other:?}"),
    }
}

fn failed(outcome: &AddressOutcome) -> &FailReason {
    match outcome {
        AddressOutcome::Failed(reason) => reason,
        other => panic!("expected Failed, got {other:?}"),
    }
}

const CNF: &str = "SEP001122334455.cnf.xml";
