//! One address, by status: found byte-exact (with `Via` and identity
//! encoding), not found, busy, other statuses and redirects failing, refused.

use tftproxy::source::upstream::{AddressOutcome, FailReason};
use tftproxy::via::{Chain, Hop, ViaId};

use crate::support::http_cluster::{refused_url, HttpCluster};
use crate::{failed, found, payload, upstream, CNF, MARGIN, REQUEST_TIMEOUT};

#[tokio::test]
async fn ok_is_found_byte_exact_with_via_and_identity() {
    let cluster = HttpCluster::start().await;
    let body = payload(70_000);
    cluster.put(CNF, body.clone());

    let report = upstream().fetch_address(&cluster.base_url(), CNF).await;
    assert_eq!(found(&report.outcome), &body[..]);
    assert_eq!(report.status, Some(200));
    assert!(report.elapsed < REQUEST_TIMEOUT + MARGIN);

    let request = cluster.last_request().expect("one request");
    assert_eq!(request.method, "GET");
    assert_eq!(request.target, format!("/{CNF}"));
    // Our entry alone, named after the host by default (http.via_id unset).
    let via = request.header("via").expect("a Via header");
    assert_eq!(via, ViaId::from_host_name().to_string());
    let chain = Chain::parse([via.as_bytes()]);
    assert!(matches!(
        chain.hops().collect::<Vec<_>>()[..],
        [Hop::Tftproxy(_)]
    ));
    assert_eq!(request.header("accept-encoding"), Some("identity"));
    let ua = cluster.last_header("user-agent").unwrap();
    assert!(ua.starts_with("tftproxy/"), "user agent {ua}");
    assert_eq!(cluster.requests(), 1);
}

#[tokio::test]
async fn empty_file_is_found() {
    let cluster = HttpCluster::start().await;
    cluster.put("AppDialRules.xml", Vec::new());
    let report = upstream()
        .fetch_address(&cluster.base_url(), "AppDialRules.xml")
        .await;
    assert_eq!(found(&report.outcome), b"");
}

#[tokio::test]
async fn not_found_statuses() {
    let cluster = HttpCluster::start().await;
    let up = upstream();
    let report = up.fetch_address(&cluster.base_url(), "missing.xml").await;
    assert_eq!(report.outcome, AddressOutcome::NotFound);
    assert_eq!(report.status, Some(404));
    for status in [403, 410] {
        cluster.set_status(status);
        let report = up.fetch_address(&cluster.base_url(), "x").await;
        assert_eq!(report.outcome, AddressOutcome::NotFound, "status {status}");
        assert_eq!(report.status, Some(status));
    }
}

#[tokio::test]
async fn service_unavailable_is_busy() {
    let cluster = HttpCluster::start().await;
    cluster.put(CNF, "x");
    cluster.set_status(503);
    let report = upstream().fetch_address(&cluster.base_url(), CNF).await;
    assert_eq!(report.outcome, AddressOutcome::Busy);
    assert_eq!(report.status, Some(503));
}

#[tokio::test]
async fn other_statuses_fail_with_their_code() {
    let cluster = HttpCluster::start().await;
    cluster.put(CNF, "x");
    let up = upstream();
    for status in [500, 502, 504, 400, 401, 301, 304] {
        cluster.set_status(status);
        let report = up.fetch_address(&cluster.base_url(), CNF).await;
        assert_eq!(
            report.outcome,
            AddressOutcome::Failed(FailReason::Status(status))
        );
        assert_eq!(report.status, Some(status));
    }
}

#[tokio::test]
async fn redirect_is_not_followed() {
    let target = HttpCluster::start().await;
    target.put(CNF, "elsewhere");
    let cluster = HttpCluster::start().await;
    cluster.set_status(302);
    cluster.add_header("Location", format!("{}/{CNF}", target.base_url()));

    let report = upstream().fetch_address(&cluster.base_url(), CNF).await;
    assert_eq!(
        report.outcome,
        AddressOutcome::Failed(FailReason::Status(302))
    );
    assert_eq!(target.requests(), 0, "redirect was followed");
    assert_eq!(
        failed(&report.outcome).to_string(),
        "unexpected HTTP status 302 Found"
    );
}

#[tokio::test]
async fn refused_is_connect_failure() {
    let report = upstream().fetch_address(&refused_url(), CNF).await;
    assert!(
        matches!(failed(&report.outcome), FailReason::Connect(_)),
        "{report:?}"
    );
    assert_eq!(report.status, None);
}

#[tokio::test]
async fn an_encoded_body_is_a_failed_address() {
    let cluster = HttpCluster::start().await;
    cluster.put(CNF, b"\x1f\x8b compressed".as_slice());
    cluster.set_content_encoding("gzip");
    let report = upstream().fetch_address(&cluster.base_url(), CNF).await;
    assert_eq!(
        failed(&report.outcome),
        &FailReason::ContentEncoding("gzip".into())
    );
    assert_eq!(report.status, Some(200));

    // `identity`, in any case, is the bytes themselves.
    let plain = HttpCluster::start().await;
    plain.put(CNF, "<device/>");
    plain.set_content_encoding("Identity");
    let report = upstream().fetch_address(&plain.base_url(), CNF).await;
    assert_eq!(found(&report.outcome), b"<device/>");
}
