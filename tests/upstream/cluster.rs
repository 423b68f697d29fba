//! One cluster: its addresses (replicas) asked in order; what is
//! authoritative (found, not found), what tries the next address, and the
//! cluster's verdict when none answers.

use std::time::Instant;

use bytes::Bytes;
use tftproxy::source::upstream::{
    AddressOutcome, ClusterFound, ClusterReport, ClusterVerdict, FailReason,
};

use crate::support::http_cluster::{refused_url, HangingListener, HttpCluster};
use crate::{failed, payload, upstream, CNF, CONNECT_TIMEOUT, MARGIN, REQUEST_TIMEOUT};

/// `fetch_cluster` over the base URLs of `servers`, in that order.
async fn fetch_cluster(servers: &[&HttpCluster], name: &str) -> ClusterReport {
    let addresses: Vec<String> = servers.iter().map(|s| s.base_url()).collect();
    upstream().fetch_cluster(&addresses, name).await
}

/// The verdict for `body` served by the address at index `address`.
fn found_at(body: impl Into<Bytes>, address: usize) -> ClusterVerdict {
    ClusterVerdict::Found(ClusterFound {
        body: body.into().into(),
        address,
    })
}

#[tokio::test]
async fn cluster_found_on_first_address_does_not_ask_others() {
    let [a, b] = HttpCluster::start_many().await;
    a.put(CNF, "from a");
    b.put(CNF, "from b");
    let report = fetch_cluster(&[&a, &b], CNF).await;
    assert_eq!(report.verdict, found_at("from a", 0));
    assert_eq!(report.addresses.len(), 1);
    assert_eq!(report.addresses[0].0, a.base_url());
    assert_eq!(b.requests(), 0);
}

#[tokio::test]
async fn cluster_not_found_is_authoritative() {
    let [a, b] = HttpCluster::start_many().await;
    b.put(CNF, "from b");
    let report = fetch_cluster(&[&a, &b], CNF).await;
    assert_eq!(report.verdict, ClusterVerdict::NotFound);
    assert_eq!(report.addresses.len(), 1);
    assert_eq!(report.addresses[0].1.status, Some(404));
    assert_eq!(a.requests_for(CNF), 1);
    assert_eq!(
        b.requests(),
        0,
        "second address must not be asked after a 404"
    );
}

#[tokio::test]
async fn cluster_busy_first_then_found_on_second() {
    let [a, b] = HttpCluster::start_many().await;
    a.put(CNF, "from a");
    a.set_status(503);
    b.put(CNF, "from b");
    let report = fetch_cluster(&[&a, &b], CNF).await;
    assert_eq!(report.verdict, found_at("from b", 1));
    assert_eq!(report.addresses.len(), 2);
    assert_eq!(report.addresses[0].1.outcome, AddressOutcome::Busy);
    assert_eq!(a.requests(), 1);
    assert_eq!(b.requests(), 1);
}

#[tokio::test]
async fn cluster_all_busy_is_busy() {
    let [a, b, c] = HttpCluster::start_many().await;
    for s in [&a, &b, &c] {
        s.set_status(503);
    }
    let report = fetch_cluster(&[&a, &b, &c], CNF).await;
    assert_eq!(report.verdict, ClusterVerdict::Busy);
    assert_eq!(report.addresses.len(), 3);
    assert!(report
        .addresses
        .iter()
        .all(|(_, r)| r.outcome == AddressOutcome::Busy));
}

#[tokio::test]
async fn cluster_busy_and_down_is_busy() {
    let a = HttpCluster::start().await;
    a.set_status(503);
    let report = upstream()
        .fetch_cluster(&[refused_url(), a.base_url()], CNF)
        .await;
    assert_eq!(report.verdict, ClusterVerdict::Busy);
}

#[tokio::test]
async fn cluster_refused_hanging_then_good_is_found_within_bounds() {
    let hanging = HangingListener::start().await;
    let good = HttpCluster::start().await;
    good.put(CNF, "third time lucky");
    let addresses = [refused_url(), hanging.base_url(), good.base_url()];

    let start = Instant::now();
    let report = upstream().fetch_cluster(&addresses, CNF).await;
    let took = start.elapsed();

    assert_eq!(report.verdict, found_at("third time lucky", 2));
    assert!(
        took < CONNECT_TIMEOUT + REQUEST_TIMEOUT + MARGIN,
        "took {took:?}"
    );
    assert_eq!(report.addresses.len(), 3);
    assert!(matches!(
        failed(&report.addresses[0].1.outcome),
        FailReason::Connect(_)
    ));
    assert!(matches!(
        failed(&report.addresses[1].1.outcome),
        FailReason::Timeout { .. }
    ));
    assert_eq!(hanging.accepted(), 1);
}

#[tokio::test]
async fn cluster_all_refused_is_unreachable() {
    let addresses = [refused_url(), refused_url(), refused_url()];
    let report = upstream().fetch_cluster(&addresses, CNF).await;
    assert_eq!(report.verdict, ClusterVerdict::Unreachable);
    assert_eq!(report.addresses.len(), 3);
    for (url, r) in &report.addresses {
        assert!(
            matches!(failed(&r.outcome), FailReason::Connect(_)),
            "{url}: {r:?}"
        );
    }
}

#[tokio::test]
async fn cluster_server_error_tries_next() {
    let [a, b] = HttpCluster::start_many().await;
    a.set_status(500);
    b.put(CNF, "from b");
    let report = fetch_cluster(&[&a, &b], CNF).await;
    assert_eq!(report.verdict, found_at("from b", 1));
    assert_eq!(
        report.addresses[0].1.outcome,
        AddressOutcome::Failed(FailReason::Status(500))
    );
}

#[tokio::test]
async fn cluster_redirect_tries_next() {
    let [a, b] = HttpCluster::start_many().await;
    a.set_status(302);
    a.add_header("Location", "http://192.0.2.1/elsewhere");
    b.put(CNF, "from b");
    let report = fetch_cluster(&[&a, &b], CNF).await;
    assert_eq!(report.verdict, found_at("from b", 1));
}

#[tokio::test]
async fn cluster_wrong_length_tries_next() {
    let [a, b] = HttpCluster::start_many().await;
    a.put(CNF, "truncated body");
    a.set_wrong_length(true);
    b.put(CNF, "good body");
    let report = fetch_cluster(&[&a, &b], CNF).await;
    assert_eq!(report.verdict, found_at("good body", 1));
    assert!(matches!(
        failed(&report.addresses[0].1.outcome),
        FailReason::BodyLength { .. }
    ));
    assert_eq!(b.requests_for(CNF), 1);
}

#[tokio::test]
async fn cluster_reset_mid_body_tries_next() {
    let [a, b] = HttpCluster::start_many().await;
    let body = payload(300_000);
    a.put(CNF, body.clone());
    a.set_reset_mid_body(true);
    b.put(CNF, body.clone());
    let report = fetch_cluster(&[&a, &b], CNF).await;
    assert_eq!(report.verdict, found_at(body, 1));
}

#[tokio::test]
async fn cluster_all_failed_mixed_is_unreachable() {
    let [a, b] = HttpCluster::start_many().await;
    a.set_status(500);
    b.put(CNF, payload(4096));
    b.set_reset_mid_body(true);
    let report = upstream()
        .fetch_cluster(&[a.base_url(), refused_url(), b.base_url()], CNF)
        .await;
    assert_eq!(report.verdict, ClusterVerdict::Unreachable);
    assert_eq!(report.addresses.len(), 3);
}

#[tokio::test]
async fn cluster_per_name_override() {
    let [a, b] = HttpCluster::start_many().await;
    a.put("ITLFile.tlv", "itl a");
    a.put(CNF, "cnf a");
    a.set_status_for("ITLFile.tlv", 503);
    b.put("ITLFile.tlv", "itl b");
    let up = upstream();
    let addresses = [a.base_url(), b.base_url()];
    let itl = up.fetch_cluster(&addresses, "ITLFile.tlv").await;
    assert_eq!(itl.verdict, found_at("itl b", 1));
    let cnf = up.fetch_cluster(&addresses, CNF).await;
    assert_eq!(cnf.verdict, found_at("cnf a", 0));
}

#[tokio::test]
async fn empty_address_list_is_unreachable() {
    let report = upstream().fetch_cluster(&[], CNF).await;
    assert_eq!(report.verdict, ClusterVerdict::Unreachable);
    assert!(report.addresses.is_empty());
}
