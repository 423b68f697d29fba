//! `source::upstream` against real HTTP servers on loopback.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use support::http_cluster::{refused_url, HangingListener, HttpCluster};
use tftproxy::config::RemoteConfig;
use tftproxy::source::upstream::{
    AddressOutcome, ClusterFound, ClusterReport, ClusterVerdict, FailReason, Upstream,
};
use tftproxy::via::{is_from_proxy, VIA};

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

fn upstream_limited(max_file_size: u64) -> Upstream {
    Upstream::new(&remote(), max_file_size).expect("client")
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

const CNF: &str = "SEP001122334455.cnf.xml";

// ---- one address ---------------------------------------------------------------

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
    assert_eq!(request.header("via"), Some(VIA));
    assert!(is_from_proxy(request.header("via").unwrap()));
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

#[tokio::test]
async fn odd_names_are_encoded_and_arrive_intact() {
    let cluster = HttpCluster::start().await;
    let up = upstream();
    let names = [
        "file with spaces.xml",
        "Desktops/320x212x12/List.xml",
        "what?is#this%20&x=y;z+w.cfg",
        "English_United_States/mk-sip.jar",
        "Ünïcödé.txt",
        "back\\slash.tlv",
        "a'b\"c<d>e|f.xml",
    ];
    for name in names {
        cluster.put(name, format!("body of {name}"));
    }
    for name in names {
        let report = up.fetch_address(&cluster.base_url(), name).await;
        assert_eq!(
            found(&report.outcome),
            format!("body of {name}").as_bytes(),
            "{name}"
        );
        assert_eq!(cluster.last_request().unwrap().name, name);
        assert_eq!(cluster.requests_for(name), 1);
    }
    // A leading slash (7942 asks `/mk-sip.jar`) is not doubled.
    cluster.put("mk-sip.jar", "jar");
    let report = up.fetch_address(&cluster.base_url(), "/mk-sip.jar").await;
    assert_eq!(found(&report.outcome), b"jar");
    assert_eq!(cluster.last_request().unwrap().target, "/mk-sip.jar");
}

#[tokio::test]
async fn dot_segments_are_never_sent() {
    let cluster = HttpCluster::start().await;
    let report = upstream()
        .fetch_address(&cluster.base_url(), "../etc/passwd")
        .await;
    assert!(matches!(failed(&report.outcome), FailReason::InvalidUrl(_)));
    assert_eq!(cluster.requests(), 0);
}

#[tokio::test]
async fn connections_are_reused() {
    let cluster = HttpCluster::start().await;
    cluster.put(CNF, "a");
    let up = upstream();
    for _ in 0..5 {
        assert_eq!(
            found(&up.fetch_address(&cluster.base_url(), CNF).await.outcome),
            b"a"
        );
    }
    // A clone shares the pool.
    let clone = up.clone();
    assert_eq!(
        found(&clone.fetch_address(&cluster.base_url(), CNF).await.outcome),
        b"a"
    );
    assert_eq!(cluster.requests(), 6);
    assert_eq!(cluster.connections(), 1);
}

// ---- one cluster (replicas in order) ---------------------------------------------

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

#[tokio::test]
async fn concurrent_fetches_share_one_client() {
    let cluster = HttpCluster::start().await;
    for i in 0..20 {
        cluster.put(format!("f{i}"), format!("body {i}"));
    }
    cluster.set_delay(Duration::from_millis(50));
    let up = upstream();
    let base = cluster.base_url();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let up = up.clone();
            let base = base.clone();
            tokio::spawn(async move { (i, up.fetch_address(&base, &format!("f{i}")).await) })
        })
        .collect();
    for task in tasks {
        let (i, report) = task.await.unwrap();
        assert_eq!(found(&report.outcome), format!("body {i}").as_bytes());
    }
    assert_eq!(cluster.requests(), 20);
}

#[tokio::test]
async fn requests_to_one_address_are_capped_by_max_requests_per_address() {
    let cluster = HttpCluster::start().await;
    for i in 0..6 {
        cluster.put(format!("f{i}"), b"x".to_vec());
    }
    cluster.set_delay(Duration::from_millis(200));
    let capped = Upstream::new(
        &RemoteConfig {
            max_requests_per_address: 2,
            ..remote()
        },
        1 << 20,
    )
    .unwrap();
    let started = Instant::now();
    let fetches = (0..6).map(|i| {
        let (capped, base) = (capped.clone(), cluster.base_url());
        tokio::spawn(async move { capped.fetch_address(&base, &format!("f{i}")).await })
    });
    for fetch in fetches.collect::<Vec<_>>() {
        let report = fetch.await.unwrap();
        assert_eq!(found(&report.outcome), b"x");
        // The time waiting for a turn is not the address's latency.
        assert!(
            report.elapsed < Duration::from_millis(500),
            "{:?}",
            report.elapsed
        );
    }
    // Six 200 ms answers two at a time take three rounds; unlimited, one.
    assert!(
        started.elapsed() >= Duration::from_millis(580),
        "{:?}",
        started.elapsed()
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
