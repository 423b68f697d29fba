//! One address, the body: wrong and short `Content-Length`, chunked, the
//! size limit, a reset mid-body.

use tftproxy::source::upstream::{AddressOutcome, FailReason, Upstream};

use crate::support::http_cluster::HttpCluster;
use crate::{failed, found, payload, remote, upstream, CNF};

fn upstream_limited(max_file_size: u64) -> Upstream {
    Upstream::new(&remote(), max_file_size).expect("client")
}

#[tokio::test]
async fn content_length_longer_than_body_fails() {
    let cluster = HttpCluster::start().await;
    cluster.put(CNF, payload(1000));
    cluster.set_wrong_length(true);
    let report = upstream().fetch_address(&cluster.base_url(), CNF).await;
    assert_eq!(
        report.outcome,
        AddressOutcome::Failed(FailReason::BodyLength {
            expected: 2000,
            got: 1000
        })
    );
}

#[tokio::test]
async fn chunked_body_is_found() {
    let cluster = HttpCluster::start().await;
    let body = payload(100_000);
    cluster.put(CNF, body.clone());
    cluster.set_chunked(true);
    let report = upstream().fetch_address(&cluster.base_url(), CNF).await;
    assert_eq!(found(&report.outcome), &body[..]);
}

#[tokio::test]
async fn oversized_body_is_too_large() {
    let cluster = HttpCluster::start().await;
    cluster.put("rootfs88xx.sbn", payload(1 << 20));
    let up = upstream_limited(1024);

    // Announced by Content-Length: refused before reading.
    let report = up
        .fetch_address(&cluster.base_url(), "rootfs88xx.sbn")
        .await;
    assert_eq!(
        report.outcome,
        AddressOutcome::Failed(FailReason::TooLarge { limit: 1024 })
    );

    // Chunked (no length announced): refused once the limit is passed.
    cluster.set_chunked(true);
    let report = up
        .fetch_address(&cluster.base_url(), "rootfs88xx.sbn")
        .await;
    assert_eq!(
        report.outcome,
        AddressOutcome::Failed(FailReason::TooLarge { limit: 1024 })
    );
}

#[tokio::test]
async fn body_exactly_at_limit_is_found() {
    let cluster = HttpCluster::start().await;
    cluster.put("a", payload(1024));
    cluster.put("b", payload(1025));
    let up = upstream_limited(1024);
    assert_eq!(
        found(&up.fetch_address(&cluster.base_url(), "a").await.outcome).len(),
        1024
    );
    let report = up.fetch_address(&cluster.base_url(), "b").await;
    assert!(matches!(
        failed(&report.outcome),
        FailReason::TooLarge { .. }
    ));
    cluster.set_chunked(true);
    assert_eq!(
        found(&up.fetch_address(&cluster.base_url(), "a").await.outcome).len(),
        1024
    );
}

#[tokio::test]
async fn reset_mid_body_fails() {
    let cluster = HttpCluster::start().await;
    cluster.put(CNF, payload(200_000));
    cluster.set_reset_mid_body(true);
    let report = upstream().fetch_address(&cluster.base_url(), CNF).await;
    assert!(
        matches!(
            failed(&report.outcome),
            FailReason::Body(_) | FailReason::BodyLength { .. } | FailReason::Request(_)
        ),
        "{report:?}"
    );

    cluster.set_chunked(true);
    let report = upstream().fetch_address(&cluster.base_url(), CNF).await;
    assert!(
        matches!(report.outcome, AddressOutcome::Failed(_)),
        "{report:?}"
    );
}

/// By HTTP/1.1 framing the body is `Content-Length` bytes; what follows is
/// not part of it. The surplus must never be read as the next answer.
#[tokio::test]
async fn a_surplus_after_content_length_never_reaches_the_next_request() {
    let cluster = HttpCluster::start().await;
    let file = payload(1000);
    cluster.put(CNF, file.clone());
    cluster.set_short_length(true);
    let upstream = upstream();
    let declared = upstream.fetch_address(&cluster.base_url(), CNF).await;
    assert_eq!(found(&declared.outcome), &file[..500]);
    cluster.set_short_length(false);
    let next = upstream.fetch_address(&cluster.base_url(), CNF).await;
    assert_eq!(found(&next.outcome), &file[..]);
    assert_eq!(
        cluster.connections(),
        2,
        "the poisoned connection was reused"
    );
}
