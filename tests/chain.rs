//! Chained proxies (Cisco's deployment model 2): tftproxy instances in one
//! process, each a cluster of the one before through its HTTP front, with a
//! real HTTP cluster at the end of some chains. A phone at the first
//! instance gets what only the last one can reach; a ring answers "not
//! found" at once, each instance making a bounded number of upstream
//! requests; a chain stops at `remote.max_hops`; fetches of different
//! chains are never merged; `locate` shows the chain and the next hop.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::daemon::{cluster_config, http_client, TestDaemon};
use support::http_cluster::HttpCluster;
use support::pattern;
use tftproxy::client::{get, GetOptions};
use tftproxy::metrics::Metrics;
use tftproxy::resolve::Resolver;

/// "Quickly": a ring that waited on itself would take the 10 s request
/// time-out; on loopback the whole ring answers in milliseconds.
const QUICK: Duration = Duration::from_secs(1);

/// Instance `id`: TFTP and HTTP on loopback serving `files`, no cluster yet.
async fn instance(id: &str, files: &[(&str, &[u8])]) -> TestDaemon {
    TestDaemon::builder()
        .files(files)
        .http()
        .via_id(id)
        .remote_timeouts(Duration::from_secs(2), Duration::from_secs(10))
        .start()
        .await
}

/// Makes `addresses` (in order, one cluster each) the clusters of `instance`.
fn point_at(instance: &TestDaemon, addresses: &[String]) {
    let mut config = instance.daemon.config();
    config.clusters = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| cluster_config(&format!("next-{}", i + 1), vec![a.clone()]))
        .collect();
    instance.daemon.reload(config).expect("reload");
}

/// Upstream HTTP requests `instance` has made (every outcome).
fn upstream_requests(instance: &TestDaemon) -> u64 {
    instance.counter("tftproxy_upstream_requests_total")
}

fn loops(instance: &TestDaemon) -> u64 {
    instance.counter("tftproxy_loops_detected_total")
}

fn client() -> reqwest::Client {
    http_client(Duration::from_secs(30))
}

/// GETs `name` from `instance`'s HTTP front: status and body.
async fn http(instance: &TestDaemon, name: &str) -> (u16, bytes::Bytes) {
    let response = instance.http_get(&client(), name).await;
    (response.status().as_u16(), response.bytes().await.unwrap())
}

/// The TFTP error code a phone at `instance` gets for `name`.
async fn tftp_error(instance: &TestDaemon, name: &str) -> Option<u16> {
    let error = get(instance.tftp_v4(), name, &GetOptions::default())
        .await
        .expect_err("an error");
    error.server_error().map(|(code, _)| code)
}

/// A → B → C, each the only cluster of the one before.
async fn chain_of_three(c_files: &[(&str, &[u8])]) -> [TestDaemon; 3] {
    let a = instance("a", &[]).await;
    let b = instance("b", &[]).await;
    let c = instance("c", c_files).await;
    point_at(&a, &[b.http_base_url()]);
    point_at(&b, &[c.http_base_url()]);
    [a, b, c]
}

#[tokio::test]
async fn three_instances_in_a_chain_serve_the_last_ones_file() {
    let firmware = pattern(300_000, 1);
    let config = pattern(5_000, 2);
    let [a, b, c] = chain_of_three(&[
        ("SIP88xx.loads", &firmware),
        ("SEP001122334455.cnf.xml", &config),
    ])
    .await;

    let download = get(a.tftp_v4(), "SIP88xx.loads", &GetOptions::default())
        .await
        .expect("TFTP at A");
    assert!(download.data == firmware, "TFTP body differs");

    let (status, body) = http(&a, "SEP001122334455.cnf.xml").await;
    assert_eq!(status, 200);
    assert!(body == config, "HTTP body differs");

    for instance in [&a, &b] {
        assert_eq!(upstream_requests(instance), 2);
    }
    assert_eq!(upstream_requests(&c), 0);
    assert_eq!(loops(&a) + loops(&b) + loops(&c), 0);
}

#[tokio::test]
async fn three_instances_then_a_real_cluster_serve_its_file() {
    let cluster = HttpCluster::start().await;
    let firmware = pattern(200_000, 3);
    let config = pattern(4_000, 4);
    cluster.put("SIP78xx.loads", firmware.clone());
    cluster.put("SEP00112233AABB.cnf.xml", config.clone());
    let [a, _b, c] = chain_of_three(&[]).await;
    point_at(&c, &[cluster.base_url()]);

    let download = get(a.tftp_v4(), "SIP78xx.loads", &GetOptions::default())
        .await
        .expect("TFTP at A");
    assert!(download.data == firmware, "TFTP body differs");

    let response = a.http_get(&client(), "SEP00112233AABB.cnf.xml").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["tftproxy-source"], "cluster:next-1");
    assert_eq!(response.headers()["via"], "1.1 tftproxy-a");
    assert!(
        response.bytes().await.unwrap() == config,
        "HTTP body differs"
    );

    // The cluster was asked with the whole chain, in order.
    assert_eq!(
        cluster.last_header("via").as_deref(),
        Some("1.1 tftproxy-a, 1.1 tftproxy-b, 1.1 tftproxy-c")
    );
    assert_eq!(cluster.requests(), 2);
}

#[tokio::test]
async fn a_ring_of_three_answers_not_found_quickly_without_a_storm() {
    let a = instance("a", &[]).await;
    let b = instance("b", &[]).await;
    let c = instance("c", &[]).await;
    point_at(&a, &[b.http_base_url()]);
    point_at(&b, &[c.http_base_url()]);
    point_at(&c, &[a.http_base_url()]);

    // HTTP: A → B → C → A, where A finds itself.
    let started = Instant::now();
    let (status, _) = http(&a, "SEP001122334455.cnf.xml").await;
    let took = started.elapsed();
    assert_eq!(status, 404);
    assert!(took < QUICK, "404 took {took:?}");
    for instance in [&a, &b, &c] {
        assert_eq!(upstream_requests(instance), 1);
    }
    assert_eq!((loops(&a), loops(&b), loops(&c)), (1, 0, 0));

    // TFTP, from B's side: B finds itself.
    let started = Instant::now();
    assert_eq!(tftp_error(&b, "ITLSEP001122334455.tlv").await, Some(1));
    let took = started.elapsed();
    assert!(took < QUICK, "ERROR 1 took {took:?}");
    for instance in [&a, &b, &c] {
        assert_eq!(upstream_requests(instance), 2);
    }
    assert_eq!((loops(&a), loops(&b), loops(&c)), (1, 1, 0));

    // Phones at every instance asking for missing names at once: each
    // instance makes at most one request per name and chain (its own
    // phones', and one for each of the two others'), never more.
    let before: Vec<u64> = [&a, &b, &c].iter().map(|i| upstream_requests(i)).collect();
    let started = Instant::now();
    let mut asks = Vec::new();
    for i in 0..10 {
        let name = format!("SEP0000000000{i:02}.cnf.xml");
        for base in [a.http_base_url(), b.http_base_url(), c.http_base_url()] {
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
    for (instance, before) in [&a, &b, &c].into_iter().zip(before) {
        let made = upstream_requests(instance) - before;
        assert!(made <= 3 * 10, "{made} upstream requests for 10 names");
        assert!(loops(instance) >= 2);
    }
}

#[tokio::test]
async fn a_chain_longer_than_max_hops_stops_at_the_limit() {
    let cluster = HttpCluster::start().await;
    cluster.put("SEP001122334455.cnf.xml", "<device/>");
    let a = instance("a", &[]).await;
    let b = instance("b", &[]).await;
    let c = instance("c", &[]).await;
    let d = instance("d", &[]).await;
    point_at(&a, &[b.http_base_url()]);
    point_at(&b, &[c.http_base_url()]);
    point_at(&c, &[d.http_base_url()]);
    point_at(&d, &[cluster.base_url()]);

    // From A the cluster is a fourth tftproxy hop away: max_hops (3) stops
    // the request at D, which has neither the file nor a cached copy.
    let started = Instant::now();
    let (status, _) = http(&a, "SEP001122334455.cnf.xml").await;
    assert_eq!(status, 404);
    assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
    assert_eq!(cluster.requests(), 0);
    assert_eq!(d.counter("tftproxy_max_hops_reached_total"), 1);
    assert_eq!(upstream_requests(&d), 0);

    // From B it is three hops: served. C and D did not remember the
    // "not found" they passed on for A's longer chain.
    let (status, body) = http(&b, "SEP001122334455.cnf.xml").await;
    assert_eq!(status, 200);
    assert_eq!(body, "<device/>");
    assert_eq!(
        cluster.last_header("via").as_deref(),
        Some("1.1 tftproxy-b, 1.1 tftproxy-c, 1.1 tftproxy-d")
    );
    assert_eq!(d.counter("tftproxy_max_hops_reached_total"), 1);
}

/// A phone's request never joins a fetch made for another chain: B's fetch
/// for A's request carries `a, b`, which A answers from its caches only; a
/// phone at B joining it would get that partial "not found" instead of the
/// file A can reach for B.
#[tokio::test]
async fn a_phone_does_not_join_a_fetch_of_another_chain() {
    // S has the file, behind A only. R is B's second cluster: slow and
    // empty, so B's fetch for A's request is still running when the phone
    // at B asks.
    let [s, r] = HttpCluster::start_many().await;
    s.put("SEP001122334455.cnf.xml", "<device/>");
    r.set_delay(Duration::from_millis(1500));
    let a = instance("a", &[]).await;
    let b = instance("b", &[]).await;
    point_at(&a, &[b.http_base_url(), s.base_url()]);
    point_at(&b, &[a.http_base_url(), r.base_url()]);

    let at_a = tokio::spawn({
        let url = a.http_url("SEP001122334455.cnf.xml");
        async move { client().get(url).send().await.unwrap().status().as_u16() }
    });
    // B's fetch for A's chain is waiting on R now.
    assert!(r.wait_for_requests(1, Duration::from_secs(5)).await);
    let (status, body) = http(&b, "SEP001122334455.cnf.xml").await;
    assert_eq!(status, 200, "the phone at B got A's partial answer");
    assert_eq!(body, "<device/>");
    assert_eq!(at_a.await.unwrap(), 200);
    assert!(loops(&a) >= 1);
    assert!(loops(&b) >= 1);

    // And B did not remember the partial "not found" of A's chain.
    let (status, _) = http(&b, "SEP001122334455.cnf.xml").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn locate_shows_the_chain_and_what_the_next_hop_answered() {
    let cluster = HttpCluster::start().await;
    cluster.put("SEP001122334455.cnf.xml", "<device/>");
    let a = instance("a", &[]).await;
    let b = instance("b", &[]).await;
    point_at(&a, &[b.http_base_url()]);
    point_at(&b, &[cluster.base_url()]);

    let resolver = Resolver::new(&a.daemon.config(), Arc::new(Metrics::new())).unwrap();
    let text = tftproxy::diagnose::render(
        &tftproxy::diagnose::locate(&resolver, "SEP001122334455.cnf.xml").await,
    );
    assert!(
        text.contains("asked with Via: 1.1 tftproxy-a (remote.max_hops = 3)"),
        "{text}"
    );
    assert!(
        text.contains("tftproxy hop: tftproxy-b (tftproxy/"),
        "{text}"
    );
    assert!(text.contains("): from cluster:next-1"), "{text}");

    // A missing name, with B pointing back at A: B's answer was partial.
    point_at(&b, &[a.http_base_url()]);
    let text =
        tftproxy::diagnose::render(&tftproxy::diagnose::locate(&resolver, "missing.xml").await);
    assert!(
        text.contains("answered from its files and caches only: a hop further on"),
        "{text}"
    );
}
