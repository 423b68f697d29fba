//! The loop guard: two tftproxy instances in one process, each configured
//! with the other's HTTP front as its only cluster. A request is forwarded
//! with its `Via` chain; the instance that finds its own id in the chain
//! answers from local files and caches only, so a missing name goes round
//! once (one upstream request per instance), the loop is counted, and the
//! phone gets "not found" at once.

mod support;

use std::time::{Duration, Instant};

use support::daemon::{cluster_config, http_client, TestDaemon};
use tftproxy::client::{get, GetOptions};

/// "Quickly": far below any time-out in play, with slack for a loaded CI.
const QUICK: Duration = Duration::from_millis(1500);

/// An instance `id` with TFTP and HTTP on loopback serving `files`, no
/// cluster yet.
async fn instance(id: &str, files: &[(&str, &[u8])]) -> TestDaemon {
    TestDaemon::builder()
        .files(files)
        .http()
        .via_id(id)
        // Generous: a loop would show as slowness long before these expire.
        .remote_timeouts(Duration::from_secs(2), Duration::from_secs(10))
        .start()
        .await
}

/// Makes `other`'s HTTP front the only cluster of `instance`.
fn point_at(instance: &TestDaemon, other: &TestDaemon, id: &str) {
    let mut config = instance.daemon.config();
    config.clusters = vec![cluster_config(id, vec![other.http_base_url()])];
    instance.daemon.reload(config).expect("reload");
}

/// Upstream HTTP requests `instance` has made (every outcome).
fn upstream_requests(instance: &TestDaemon) -> u64 {
    instance
        .daemon
        .metrics()
        .encode()
        .lines()
        .filter(|l| l.starts_with("tftproxy_upstream_requests_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

/// A and B, each the other's cluster. A holds `a.xml`, B holds `b.xml`.
async fn pair() -> (TestDaemon, TestDaemon) {
    let a = instance("a", &[("a.xml", b"from A")]).await;
    let b = instance("b", &[("b.xml", b"from B")]).await;
    point_at(&b, &a, "instance-a");
    point_at(&a, &b, "instance-b");
    (a, b)
}

fn client() -> reqwest::Client {
    http_client(Duration::from_secs(30))
}

#[tokio::test]
async fn missing_name_over_http_is_404_quickly_with_one_request_each() {
    let (a, b) = pair().await;

    let started = Instant::now();
    let response = a.http_get(&client(), "SEP001122334455.cnf.xml").await;
    let took = started.elapsed();
    assert_eq!(response.status(), 404);
    assert!(took < QUICK, "404 took {took:?}");
    assert_eq!(upstream_requests(&a), 1, "A asked B once");
    assert_eq!(upstream_requests(&b), 1, "B forwarded A's request once");
    assert_eq!(
        a.counter("tftproxy_loops_detected_total"),
        1,
        "A saw itself"
    );
    assert_eq!(b.counter("tftproxy_loops_detected_total"), 0);
    // The phone is told a plain "not found": A's own chain was empty, so
    // the loop at A hid nothing from it.
    assert!(response.headers().get("tftproxy-partial").is_none());

    // The same from B's side.
    let response = b.http_get(&client(), "SEP0011223344AA.cnf.xml").await;
    assert_eq!(response.status(), 404);
    assert_eq!(upstream_requests(&b), 2);
    assert_eq!(upstream_requests(&a), 2);
    assert_eq!(b.counter("tftproxy_loops_detected_total"), 1);
}

#[tokio::test]
async fn missing_name_over_tftp_is_error_1_quickly() {
    let (a, b) = pair().await;
    let options = GetOptions::default();
    let started = Instant::now();
    let error = get(a.tftp_v4(), "ITLSEP001122334455.tlv", &options)
        .await
        .expect_err("not found");
    let took = started.elapsed();
    assert_eq!(
        error.server_error().map(|(code, _)| code),
        Some(1),
        "{error}"
    );
    assert!(took < QUICK, "ERROR 1 took {took:?}");
    assert_eq!(upstream_requests(&a), 1);
    assert_eq!(upstream_requests(&b), 1);
    assert_eq!(a.counter("tftproxy_loops_detected_total"), 1);

    // Asked again: A remembers "nowhere" and asks nobody.
    let error = get(a.tftp_v4(), "ITLSEP001122334455.tlv", &options)
        .await
        .expect_err("not found");
    assert_eq!(error.server_error().map(|(code, _)| code), Some(1));
    assert_eq!(upstream_requests(&a), 1);
    assert_eq!(upstream_requests(&b), 1);
}

/// Each instance serves the other's local files (fetched over HTTP); a
/// burst of missing names costs each instance at most two upstream
/// requests per name (its phones' fetch and the other's), never a storm.
#[tokio::test]
async fn each_serves_the_others_local_files() {
    let (a, b) = pair().await;
    let download = get(a.tftp_v4(), "b.xml", &GetOptions::default())
        .await
        .expect("A fetches b.xml from B");
    assert_eq!(download.data, b"from B");
    let response = b.http_get(&client(), "a.xml").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), "from A");
    assert_eq!(upstream_requests(&a), 1);
    assert_eq!(upstream_requests(&b), 1);

    // Many phones asking both for missing names at once: still one request
    // per name per instance, every answer quick.
    let started = Instant::now();
    let mut asks = Vec::new();
    for i in 0..20 {
        let name = format!("SEP0000000000{i:02}.cnf.xml");
        for base in [a.http_base_url(), b.http_base_url()] {
            let url = format!("{base}/{name}");
            asks.push(tokio::spawn(async move {
                client().get(url).send().await.unwrap().status().as_u16()
            }));
        }
    }
    for ask in asks {
        assert_eq!(ask.await.unwrap(), 404);
    }
    assert!(started.elapsed() < QUICK * 3, "{:?}", started.elapsed());
    assert!(
        upstream_requests(&a) <= 1 + 2 * 20,
        "{}",
        upstream_requests(&a)
    );
    assert!(
        upstream_requests(&b) <= 1 + 2 * 20,
        "{}",
        upstream_requests(&b)
    );
    assert!(a.counter("tftproxy_loops_detected_total") >= 1);
    assert!(b.counter("tftproxy_loops_detected_total") >= 1);
}
