//! One address, over time: silent and hanging servers time out, a slow
//! answer or a slow but steady body is found, a body stalling midway is not.

use std::time::{Duration, Instant};

use tftproxy::source::upstream::{AddressOutcome, FailReason};

use crate::support::http_cluster::{HangingListener, HttpCluster};
use crate::{failed, found, payload, upstream, CNF, MARGIN, REQUEST_TIMEOUT};

#[tokio::test]
async fn accepting_but_silent_server_times_out() {
    let hanging = HangingListener::start().await;
    let start = Instant::now();
    let report = upstream().fetch_address(&hanging.base_url(), CNF).await;
    let took = start.elapsed();
    assert_eq!(
        report.outcome,
        AddressOutcome::Failed(FailReason::Timeout {
            after: REQUEST_TIMEOUT
        })
    );
    assert!(
        took >= REQUEST_TIMEOUT - Duration::from_millis(50),
        "{took:?}"
    );
    assert!(took < REQUEST_TIMEOUT + MARGIN, "{took:?}");
    assert_eq!(hanging.accepted(), 1);
}

#[tokio::test]
async fn hanging_http_server_times_out() {
    let cluster = HttpCluster::start().await;
    cluster.put(CNF, "x");
    cluster.set_hang(true);
    let report = upstream().fetch_address(&cluster.base_url(), CNF).await;
    assert!(matches!(
        failed(&report.outcome),
        FailReason::Timeout { .. }
    ));
    assert_eq!(cluster.requests(), 1, "the request did arrive");
}

#[tokio::test]
async fn slow_answer_within_timeout_is_found() {
    let cluster = HttpCluster::start().await;
    cluster.put(CNF, "slow");
    cluster.set_delay(Duration::from_millis(100));
    let report = upstream().fetch_address(&cluster.base_url(), CNF).await;
    assert_eq!(found(&report.outcome), b"slow");
    assert!(report.elapsed >= Duration::from_millis(100));
}

#[tokio::test]
async fn body_stalling_midway_times_out() {
    let cluster = HttpCluster::start().await;
    cluster.put(CNF, payload(10_000));
    cluster.set_stall_mid_body(true);
    let start = Instant::now();
    let report = upstream().fetch_address(&cluster.base_url(), CNF).await;
    assert_eq!(report.status, Some(200));
    assert_eq!(
        failed(&report.outcome),
        &FailReason::Stalled {
            after: REQUEST_TIMEOUT
        }
    );
    assert!(start.elapsed() < REQUEST_TIMEOUT + MARGIN);
}

/// `request_timeout` bounds each wait for data, not the whole download: a
/// firmware image arriving steadily over a slow link is not cut off.
#[tokio::test]
async fn a_slow_but_steady_body_is_found() {
    let cluster = HttpCluster::start().await;
    let file = payload(20_000);
    cluster.put(CNF, file.clone());
    // 20 pieces, 100 ms apart: 2 s in all, four times the request time-out.
    cluster.set_trickle(1_000, REQUEST_TIMEOUT / 5);
    let started = Instant::now();
    let report = upstream().fetch_address(&cluster.base_url(), CNF).await;
    assert_eq!(found(&report.outcome), &file[..], "{report:?}");
    assert!(started.elapsed() > REQUEST_TIMEOUT * 3);
}
