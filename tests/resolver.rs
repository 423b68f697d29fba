//! `resolve::Resolver` against real HTTP servers on loopback playing the
//! clusters (DESIGN.md "Resolution semantics" and "Caches").
//!
//! Timing assertions compare orders of magnitude with generous margins: the
//! suite runs on loaded 2-core machines.

mod support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::daemon::cluster_config;
use support::http_cluster::{refused_url, HangingListener, HttpCluster};
use tftproxy::config::{ClusterConfig, Config, OnUnreachable, Strategy};
use tftproxy::metrics::Metrics;
use tftproxy::source::upstream::ClusterVerdict;
use tftproxy::diagnose::{locate, LocateVerdict};
use tftproxy::resolve::{Answer, Lookup, Resolver, Source};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);
/// Scheduling slack on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(1500);

const MAC: &str = "001122AABBCC";
const PHONE: &str = "10.0.0.2";

fn cnf() -> String {
    format!("SEP{MAC}.cnf.xml")
}

fn itl() -> String {
    format!("ITLSEP{MAC}.tlv")
}

// ---- set-up ----------------------------------------------------------------------

/// One cluster per server, each with its single address, ids c1, c2, …
fn clusters_of<'a>(servers: impl IntoIterator<Item = &'a HttpCluster>) -> Vec<ClusterConfig> {
    servers
        .into_iter()
        .enumerate()
        .map(|(i, s)| cluster_config(&format!("c{}", i + 1), vec![s.base_url()]))
        .collect()
}

fn config(clusters: Vec<ClusterConfig>) -> Config {
    let mut config = Config {
        clusters,
        ..Config::default()
    };
    config.remote.connect_timeout = CONNECT_TIMEOUT;
    config.remote.request_timeout = REQUEST_TIMEOUT;
    config
}

fn resolver(config: &Config) -> Resolver {
    Resolver::new(config, Arc::new(Metrics::new())).expect("resolver")
}

fn resolver_with_metrics(config: &Config) -> (Resolver, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    (
        Resolver::new(config, metrics.clone()).expect("resolver"),
        metrics,
    )
}

async fn get(resolver: &Resolver, name: &str) -> Answer {
    get_from(resolver, name, "192.0.2.1").await
}

async fn get_from(resolver: &Resolver, name: &str, client: &str) -> Answer {
    let client: IpAddr = client.parse().unwrap();
    resolver
        .resolve(&Lookup {
            name,
            client,
            from_proxy: false,
        })
        .await
}

async fn get_via_proxy(resolver: &Resolver, name: &str) -> Answer {
    resolver
        .resolve(&Lookup {
            name,
            client: "192.0.2.200".parse().unwrap(),
            from_proxy: true,
        })
        .await
}

/// The body and source of a File answer.
fn file(answer: &Answer) -> (Bytes, Source) {
    match answer {
        Answer::File { body, source } => (body.to_bytes().unwrap(), source.clone()),
        other => panic!("expected a file, got {other:?}"),
    }
}

fn body(answer: &Answer) -> Bytes {
    file(answer).0
}

fn source(answer: &Answer) -> Source {
    file(answer).1
}

fn from_cluster(id: &str) -> Source {
    Source::Cluster {
        cluster: Arc::from(id),
    }
}

fn from_cache(id: &str) -> Source {
    Source::Cache {
        cluster: Arc::from(id),
    }
}

fn assert_not_found(answer: &Answer) {
    assert!(
        matches!(answer, Answer::NotFound),
        "expected NotFound, got {answer:?}"
    );
}

fn assert_retry_later(answer: &Answer) {
    assert!(
        matches!(answer, Answer::RetryLater),
        "expected RetryLater, got {answer:?}"
    );
}

/// Three servers, each answering after `delay`, the file on the third only.
async fn three_slow_clusters(delay: Duration) -> [HttpCluster; 3] {
    let servers = HttpCluster::start_many().await;
    for s in &servers {
        s.set_delay(delay);
    }
    servers[2].put("Ringlist-wb.xml", "from c3");
    servers
}

// ---- across clusters ----------------------------------------------------------

#[tokio::test]
async fn parallel_file_on_the_third_cluster_costs_one_round_trip() {
    let servers = three_slow_clusters(Duration::from_millis(200)).await;
    let r = resolver(&config(clusters_of(&servers)));
    let start = Instant::now();
    let answer = get(&r, "Ringlist-wb.xml").await;
    let elapsed = start.elapsed();
    assert_eq!(body(&answer), "from c3");
    assert_eq!(source(&answer), from_cluster("c3"));
    // Closer to 200 ms than to 600 ms.
    assert!(elapsed < Duration::from_millis(450), "{elapsed:?}");
    for s in &servers {
        assert_eq!(s.requests_for("Ringlist-wb.xml"), 1);
    }
}

#[tokio::test]
async fn sequential_file_on_the_third_cluster_costs_three_round_trips() {
    let servers = three_slow_clusters(Duration::from_millis(200)).await;
    let mut config = config(clusters_of(&servers));
    config.remote.strategy = Strategy::Sequential;
    let r = resolver(&config);
    let start = Instant::now();
    let answer = get(&r, "Ringlist-wb.xml").await;
    let elapsed = start.elapsed();
    assert_eq!(body(&answer), "from c3");
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
}

#[tokio::test]
async fn sequential_stops_at_the_first_found() {
    let [a, b] = HttpCluster::start_many().await;
    a.put("AppDialRules.xml", "a");
    b.put("AppDialRules.xml", "b");
    let mut config = config(clusters_of([&a, &b]));
    config.remote.strategy = Strategy::Sequential;
    let r = resolver(&config);
    assert_eq!(body(&get(&r, "AppDialRules.xml").await), "a");
    assert_eq!(b.requests(), 0);
}

#[tokio::test]
async fn dead_addresses_are_skipped_within_the_timeouts() {
    let hanging = HangingListener::start().await;
    let good = HttpCluster::start().await;
    good.put("XMLDefault.cnf.xml", "<default/>");
    let r = resolver(&config(vec![cluster_config(
        "c1",
        vec![refused_url(), hanging.base_url(), good.base_url()],
    )]));
    let start = Instant::now();
    let answer = get(&r, "XMLDefault.cnf.xml").await;
    let elapsed = start.elapsed();
    assert_eq!(body(&answer), "<default/>");
    assert!(
        elapsed < CONNECT_TIMEOUT + REQUEST_TIMEOUT + MARGIN,
        "{elapsed:?}"
    );
    assert_eq!(hanging.accepted(), 1);
}

#[tokio::test]
async fn everyone_says_404_is_not_found() {
    let servers: [HttpCluster; 3] = HttpCluster::start_many().await;
    let r = resolver(&config(clusters_of(&servers)));
    assert_not_found(&get(&r, "nothing.bin").await);
}

#[tokio::test]
async fn one_busy_cluster_means_retry_later() {
    let [a, b, c] = HttpCluster::start_many().await;
    b.set_status(503);
    let r = resolver(&config(clusters_of([&a, &b, &c])));
    assert_retry_later(&get(&r, "SEP001122334455.cnf.xml").await);
    // Busy is never cached: the next request asks again.
    b.clear_status();
    assert_not_found(&get(&r, "SEP001122334455.cnf.xml").await);
    assert_eq!(b.requests(), 2);
}

#[tokio::test]
async fn one_unreachable_cluster_follows_on_unreachable() {
    let [a, c] = HttpCluster::start_many().await;
    let clusters = vec![
        cluster_config("c1", vec![a.base_url()]),
        cluster_config("c2", vec![refused_url()]),
        cluster_config("c3", vec![c.base_url()]),
    ];
    let r = resolver(&config(clusters.clone()));
    assert_retry_later(&get(&r, "SEP001122334455.cnf.xml").await);

    let mut not_found = config(clusters);
    not_found.remote.on_unreachable = OnUnreachable::NotFound;
    let r = resolver(&not_found);
    assert_not_found(&get(&r, "SEP001122334455.cnf.xml").await);
}

#[tokio::test]
async fn first_listed_cluster_wins() {
    let [a, b] = HttpCluster::start_many().await;
    // The higher-priority cluster is the slower one: its answer still wins.
    a.set_delay(Duration::from_millis(150));
    a.put("Ringlist.xml", "a");
    b.put("Ringlist.xml", "b");
    let r = resolver(&config(clusters_of([&a, &b])));
    let answer = get(&r, "Ringlist.xml").await;
    assert_eq!(body(&answer), "a");
    assert_eq!(source(&answer), from_cluster("c1"));
}

/// A lower cluster's copy served while a higher one was busy or failing
/// stands for that request only: once the higher one answers again it wins,
/// and the lower one was never learned as the phone's home.
#[tokio::test]
async fn a_lower_cluster_that_answered_for_a_busy_one_is_not_remembered() {
    for (trouble, status) in [("busy", 503), ("failing", 500)] {
        let [a, b] = HttpCluster::start_many().await;
        a.put(cnf(), "real home");
        b.put(cnf(), "old copy");
        a.put("XMLDefault.cnf.xml", "a default");
        b.put("XMLDefault.cnf.xml", "b default");
        a.set_status(status);
        let r = resolver(&config(clusters_of([&a, &b])));
        for name in [cnf(), "XMLDefault.cnf.xml".to_owned()] {
            let answer = get_from(&r, &name, PHONE).await;
            assert_eq!(source(&answer), from_cluster("c2"), "{trouble}: {name}");
        }
        assert_eq!(r.home_of_device(&format!("SEP{MAC}")), None, "{trouble}");

        a.clear_status();
        for (name, expected) in [
            (cnf(), "real home"),
            ("XMLDefault.cnf.xml".to_owned(), "a default"),
        ] {
            let answer = get_from(&r, &name, PHONE).await;
            assert_eq!(body(&answer), expected, "{trouble}: {name}");
            assert_eq!(source(&answer), from_cluster("c1"), "{trouble}: {name}");
        }
        assert_eq!(
            r.home_of_device(&format!("SEP{MAC}")).as_deref(),
            Some("c1"),
            "{trouble}"
        );
    }
}

#[tokio::test]
async fn a_slow_lower_cluster_does_not_delay_the_answer() {
    let [a, b] = HttpCluster::start_many().await;
    a.put("Ringlist.xml", "a");
    b.put("Ringlist.xml", "b");
    b.set_delay(Duration::from_secs(2));
    let r = resolver(&config(clusters_of([&a, &b])));
    let start = Instant::now();
    let answer = get(&r, "Ringlist.xml").await;
    let elapsed = start.elapsed();
    assert_eq!(body(&answer), "a");
    assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
}

#[tokio::test]
async fn a_lower_found_waits_for_higher_clusters_to_answer() {
    let [a, b] = HttpCluster::start_many().await;
    a.set_delay(Duration::from_millis(300));
    b.put("Ringlist.xml", "b");
    let r = resolver(&config(clusters_of([&a, &b])));
    let start = Instant::now();
    let answer = get(&r, "Ringlist.xml").await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(body(&answer), "b");
    assert_eq!(source(&answer), from_cluster("c2"));
}

#[tokio::test]
async fn a_busy_higher_cluster_does_not_hide_a_lower_found() {
    let [a, b] = HttpCluster::start_many().await;
    a.set_status(503);
    b.put("Ringlist.xml", "b");
    let r = resolver(&config(clusters_of([&a, &b])));
    assert_eq!(body(&get(&r, "Ringlist.xml").await), "b");
}

#[tokio::test]
async fn no_enabled_cluster_means_local_and_cache_only() {
    let a = HttpCluster::start().await;
    a.put("Ringlist.xml", "a");
    let mut clusters = clusters_of([&a]);
    clusters[0].enabled = false;
    let r = resolver(&config(clusters));
    assert_not_found(&get(&r, "Ringlist.xml").await);
    assert_eq!(a.requests(), 0);
}

// ---- coalescing ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_request_per_cluster() {
    let servers: [HttpCluster; 3] = HttpCluster::start_many().await;
    let payload: Bytes = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    servers[1].put("sip88xx.14-2-1.loads", payload.clone());
    for s in &servers {
        s.set_delay(Duration::from_millis(100));
    }
    let r = resolver(&config(clusters_of(&servers)));
    let answers = futures::future::join_all((0..200u32).map(|i| {
        let r = &r;
        async move {
            let client = format!("10.1.{}.{}", i / 250, i % 250 + 1);
            get_from(r, "sip88xx.14-2-1.loads", &client).await
        }
    }))
    .await;
    for answer in &answers {
        assert_eq!(body(answer), payload);
    }
    for s in &servers {
        assert_eq!(s.requests_for("sip88xx.14-2-1.loads"), 1);
    }
}

#[tokio::test]
async fn a_dropped_resolve_does_not_cancel_the_fetch() {
    let a = HttpCluster::start().await;
    a.put("SKa1b2c3d4-e5f6-7890-abcd-ef0123456789.xml.sgn", "softkeys");
    a.set_delay(Duration::from_millis(300));
    let r = resolver(&config(clusters_of([&a])));
    let name = "SKa1b2c3d4-e5f6-7890-abcd-ef0123456789.xml.sgn";
    let gave_up = tokio::time::timeout(Duration::from_millis(50), get(&r, name)).await;
    assert!(gave_up.is_err(), "the fetch should still be running");
    // The fetch finishes on its own and fills the cache.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let answer = get(&r, name).await;
    assert_eq!(body(&answer), "softkeys");
    assert_eq!(source(&answer), from_cache("c1"));
    assert_eq!(a.requests(), 1);
}

// ---- caches -------------------------------------------------------------------------

#[tokio::test]
async fn a_common_file_is_fetched_once() {
    let [a, b] = HttpCluster::start_many().await;
    b.put("AppDialRules.xml", "rules");
    let (r, metrics) = resolver_with_metrics(&config(clusters_of([&a, &b])));
    assert_eq!(
        source(&get(&r, "AppDialRules.xml").await),
        from_cluster("c2")
    );
    let answer = get(&r, "/AppDialRules.xml").await;
    assert_eq!(body(&answer), "rules");
    assert_eq!(source(&answer), from_cache("c2"));
    assert_eq!(a.requests() + b.requests(), 2);

    r.refresh_gauges();
    let text = metrics.encode();
    assert!(
        text.contains("tftproxy_cache_hits_total{cache=\"content\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tftproxy_cache_entries{cache=\"content\"} 1"),
        "{text}"
    );
    assert!(text.contains("outcome=\"found\"} 1"), "{text}");
    assert!(text.contains("outcome=\"not_found\"} 1"), "{text}");
    assert!(
        text.contains("tftproxy_upstream_duration_seconds_count{cluster=\"c2\"} 1"),
        "{text}"
    );
}

fn device_config<'a>(
    servers: impl IntoIterator<Item = &'a HttpCluster>,
    device_ttl: Duration,
) -> Config {
    let mut config = config(clusters_of(servers));
    config.cache.device_ttl = device_ttl;
    config
}

#[tokio::test]
async fn an_old_device_file_is_fetched_again_from_its_home_only() {
    let servers: [HttpCluster; 3] = HttpCluster::start_many().await;
    servers[1].put(cnf(), "v1");
    let r = resolver(&device_config(&servers, Duration::from_millis(300)));
    assert_eq!(body(&get_from(&r, &cnf(), PHONE).await), "v1");
    // Within device_ttl: from the cache.
    let answer = get_from(&r, &cnf(), PHONE).await;
    assert_eq!(source(&answer), from_cache("c2"));
    assert_eq!(servers[1].requests_for(&cnf()), 1);

    // Edited on the home cluster; after device_ttl the phone gets the edit,
    // and only the home cluster is asked.
    servers[1].put(cnf(), "v2");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let answer = get_from(&r, &cnf(), PHONE).await;
    assert_eq!(body(&answer), "v2");
    assert_eq!(source(&answer), from_cluster("c2"));
    assert_eq!(servers[0].requests_for(&cnf()), 1);
    assert_eq!(servers[1].requests_for(&cnf()), 2);
    assert_eq!(servers[2].requests_for(&cnf()), 1);
}

#[tokio::test]
async fn a_stale_device_file_is_served_when_its_home_is_down() {
    let [a, b] = HttpCluster::start_many().await;
    b.put(cnf(), "v1");
    let r = resolver(&device_config([&a, &b], Duration::from_millis(200)));
    assert_eq!(body(&get_from(&r, &cnf(), PHONE).await), "v1");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Unreachable (500 on its only address): the stale copy.
    b.set_status(500);
    let answer = get_from(&r, &cnf(), PHONE).await;
    assert_eq!(body(&answer), "v1");
    assert_eq!(source(&answer), from_cache("c2"));
    // Busy: the stale copy too.
    b.set_status(503);
    assert_eq!(body(&get_from(&r, &cnf(), PHONE).await), "v1");
    assert_eq!(b.requests_for(&cnf()), 3);
    // The other cluster is not asked while the home is down.
    assert_eq!(a.requests_for(&cnf()), 1);
}

#[tokio::test]
async fn a_name_added_after_a_negative_answer_is_served_after_negative_ttl() {
    let [a, b] = HttpCluster::start_many().await;
    let mut config = config(clusters_of([&a, &b]));
    config.cache.negative_ttl = Duration::from_millis(300);
    let r = resolver(&config);
    assert_not_found(&get(&r, &cnf()).await);
    b.put(cnf(), "added");
    // The negative answer is cached: nobody is asked again yet.
    assert_not_found(&get(&r, &cnf()).await);
    assert_eq!(a.requests() + b.requests(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(body(&get(&r, &cnf()).await), "added");
}

#[tokio::test]
async fn purge_sends_the_next_request_upstream() {
    let a = HttpCluster::start().await;
    a.put("Ringlist.xml", "v1");
    a.put("AppDialRules.xml", "rules");
    let r = resolver(&config(clusters_of([&a])));
    get(&r, "Ringlist.xml").await;
    get(&r, "AppDialRules.xml").await;
    get(&r, "Ringlist.xml").await;
    assert_eq!(a.requests_for("Ringlist.xml"), 1);

    a.put("Ringlist.xml", "v2");
    assert!(r.purge(Some("/ringlist.xml")) >= 1);
    assert_eq!(body(&get(&r, "Ringlist.xml").await), "v2");
    assert_eq!(a.requests_for("Ringlist.xml"), 2);
    // The other name is still cached.
    get(&r, "AppDialRules.xml").await;
    assert_eq!(a.requests_for("AppDialRules.xml"), 1);

    assert!(r.purge(None) >= 2);
    get(&r, "AppDialRules.xml").await;
    assert_eq!(a.requests_for("AppDialRules.xml"), 2);
}

/// A fetch in flight when the operator purges brings back what was purged:
/// it is given to those already waiting, but neither cached nor joined by
/// requests made after the purge.
#[tokio::test]
async fn a_purge_during_a_fetch_is_not_undone_by_it() {
    let a = HttpCluster::start().await;
    a.put("Ringlist.xml", "v1");
    a.set_delay(Duration::from_millis(600));
    let r = Arc::new(resolver(&config(clusters_of([&a]))));
    let before = tokio::spawn({
        let r = r.clone();
        async move { body(&get(&r, "Ringlist.xml").await) }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    a.put("Ringlist.xml", "v2");
    a.set_delay(Duration::ZERO);
    r.purge(Some("Ringlist.xml"));
    // Asked after the purge, while the old fetch is still running.
    assert_eq!(body(&get(&r, "Ringlist.xml").await), "v2");
    assert_eq!(before.await.unwrap(), "v1");
    // The old fetch, finished now, did not put v1 back.
    assert_eq!(body(&get(&r, "Ringlist.xml").await), "v2");
    assert_eq!(a.requests_for("Ringlist.xml"), 2);
}

// ---- home clusters ------------------------------------------------------------------

#[tokio::test]
async fn a_device_s_next_names_go_to_its_home_cluster_alone() {
    let servers: [HttpCluster; 3] = HttpCluster::start_many().await;
    servers[1].put(cnf(), "config");
    servers[1].put(itl(), "itl");
    let r = resolver(&config(clusters_of(&servers)));
    assert_eq!(
        source(&get_from(&r, &cnf(), PHONE).await),
        from_cluster("c2")
    );
    assert_eq!(
        r.home_of_device(&format!("SEP{MAC}")).as_deref(),
        Some("c2")
    );
    assert_eq!(
        r.home_of_client(PHONE.parse().unwrap()).as_deref(),
        Some("c2")
    );

    let answer = get_from(&r, &itl(), PHONE).await;
    assert_eq!(body(&answer), "itl");
    assert_eq!(source(&answer), from_cluster("c2"));
    assert_eq!(servers[0].requests_for(&itl()), 0);
    assert_eq!(servers[2].requests_for(&itl()), 0);
}

#[tokio::test]
async fn a_home_cluster_404_fans_out_and_relearns() {
    let [a, b] = HttpCluster::start_many().await;
    b.put(cnf(), "config");
    let r = resolver(&device_config([&a, &b], Duration::from_millis(100)));
    get_from(&r, &cnf(), PHONE).await;
    // The phone moves to cluster 1.
    b.remove(&cnf());
    a.put(cnf(), "moved");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = get_from(&r, &cnf(), PHONE).await;
    assert_eq!(body(&answer), "moved");
    assert_eq!(source(&answer), from_cluster("c1"));
    assert_eq!(
        r.home_of_device(&format!("SEP{MAC}")).as_deref(),
        Some("c1")
    );
}

#[tokio::test]
async fn a_device_whose_home_is_down_is_told_to_retry_not_to_auto_register() {
    let [a, b] = HttpCluster::start_many().await;
    a.put("XMLDefault.cnf.xml", "auto-registration");
    b.put(cnf(), "config");
    let r = resolver(&config(clusters_of([&a, &b])));
    get_from(&r, &cnf(), PHONE).await;
    b.set_status(500);
    // ITLSEP was never cached: no stale copy, no fan-out, retry later.
    assert_retry_later(&get_from(&r, &itl(), PHONE).await);
    assert_eq!(a.requests_for(&itl()), 0);
}

#[tokio::test]
async fn signed_files_come_from_the_phone_s_home_cluster() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("Ringlist.xml.sgn"), "local copy").unwrap();
    let [a, b] = HttpCluster::start_many().await;
    b.put(cnf(), "config");
    b.put("Ringlist.xml.sgn", "signed by c2");
    let mut config = config(clusters_of([&a, &b]));
    config.tftp.root = Some(root.path().to_path_buf());
    let r = resolver(&config);

    get_from(&r, &cnf(), PHONE).await;
    let answer = get_from(&r, "Ringlist.xml.sgn", PHONE).await;
    assert_eq!(body(&answer), "signed by c2");
    assert_eq!(source(&answer), from_cluster("c2"));
    // Again: from the cache, still cluster 2's copy.
    let answer = get_from(&r, "Ringlist.xml.sgn", PHONE).await;
    assert_eq!(body(&answer), "signed by c2");
    assert_eq!(source(&answer), from_cache("c2"));
    // A phone with no known home gets the local copy.
    let answer = get_from(&r, "Ringlist.xml.sgn", "10.0.0.99").await;
    assert_eq!(body(&answer), "local copy");
    assert_eq!(source(&answer), Source::Local);
    assert_eq!(a.requests_for("Ringlist.xml.sgn"), 0);

    // With prefer_home_cluster off, everybody gets the local copy.
    let mut off = config.clone();
    off.remote.prefer_home_cluster = false;
    let r = resolver(&off);
    get_from(&r, &cnf(), PHONE).await;
    assert_eq!(
        source(&get_from(&r, "Ringlist.xml.sgn", PHONE).await),
        Source::Local
    );
}

#[tokio::test]
async fn a_home_without_the_signed_file_falls_back_to_local() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("ITLFile.tlv"), "local itl").unwrap();
    let b = HttpCluster::start().await;
    b.put(cnf(), "config");
    let mut config = config(clusters_of([&b]));
    config.tftp.root = Some(root.path().to_path_buf());
    let r = resolver(&config);
    get_from(&r, &cnf(), PHONE).await;
    assert_eq!(body(&get_from(&r, "ITLFile.tlv", PHONE).await), "local itl");
    // The home's 404 is remembered (negative_ttl): not asked again.
    assert_eq!(body(&get_from(&r, "ITLFile.tlv", PHONE).await), "local itl");
    assert_eq!(b.requests_for("ITLFile.tlv"), 1);
}

// ---- bad answers ----------------------------------------------------------------------

#[tokio::test]
async fn broken_bodies_are_never_served_or_cached() {
    let good = HttpCluster::start().await;
    let payload: Bytes = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    good.put(cnf(), payload.clone());
    for breakage in ["wrong_length", "reset_mid_body", "oversized"] {
        let bad = HttpCluster::start().await;
        match breakage {
            "wrong_length" => {
                bad.put(cnf(), payload.clone());
                bad.set_wrong_length(true);
            }
            "reset_mid_body" => {
                bad.put(cnf(), payload.clone());
                bad.set_reset_mid_body(true);
            }
            _ => bad.put(cnf(), vec![b'x'; 50_000]),
        }
        let bad_then_good = vec![bad.base_url(), good.base_url()];
        let mut with_good = config(vec![cluster_config("c1", bad_then_good)]);
        with_good.cache.max_file_size = 20_000;
        let r = resolver(&with_good);
        let answer = get(&r, &cnf()).await;
        assert_eq!(body(&answer), payload, "{breakage}");
        assert_eq!(bad.requests_for(&cnf()), 1, "{breakage}");

        // Only the broken address: retry later, nothing cached.
        let mut alone = config(vec![cluster_config("c1", vec![bad.base_url()])]);
        alone.cache.max_file_size = 20_000;
        let r = resolver(&alone);
        assert_retry_later(&get(&r, &cnf()).await);
        assert_retry_later(&get(&r, &cnf()).await);
        assert_eq!(bad.requests_for(&cnf()), 3, "{breakage}");
        let status = r.cluster_status();
        assert!(!status[0].addresses[0].up, "{breakage}");
        assert!(status[0].addresses[0].last_error.is_some(), "{breakage}");
    }
}

#[tokio::test]
async fn unsafe_names_never_reach_a_cluster() {
    let [a, b] = HttpCluster::start_many().await;
    let r = resolver(&config(clusters_of([&a, &b])));
    for name in [
        "../x",
        "a/../../x",
        "a\0b",
        "//h/x",
        "\\\\h\\x",
        "C:\\x",
        "/C:\\x",
        "\\C:\\x",
        "/~root/.ssh/id_rsa",
        "/./~root",
        "",
    ] {
        let answer = get(&r, name).await;
        assert!(matches!(answer, Answer::Denied(_)), "{name:?}: {answer:?}");
    }
    assert_eq!(a.requests(), 0);
    assert_eq!(b.requests(), 0);
    assert!(matches!(
        locate(&r, "../etc/passwd").await.verdict,
        LocateVerdict::Denied(_)
    ));
    assert_eq!(a.requests() + b.requests(), 0);
}

// ---- requests from another proxy ------------------------------------------------------

#[tokio::test]
async fn proxy_lookups_are_answered_from_caches_only() {
    let a = HttpCluster::start().await;
    a.put("Ringlist.xml", "ring");
    a.put(cnf(), "config");
    let r = resolver(&config(clusters_of([&a])));
    assert_not_found(&get_via_proxy(&r, "Ringlist.xml").await);
    assert_not_found(&get_via_proxy(&r, &cnf()).await);
    assert_eq!(a.requests(), 0);

    // Once a phone's request cached it, another proxy gets the cached copy.
    get(&r, "Ringlist.xml").await;
    let answer = get_via_proxy(&r, "Ringlist.xml").await;
    assert_eq!(body(&answer), "ring");
    assert_eq!(source(&answer), from_cache("c1"));
    assert_eq!(a.requests(), 1);
}

// ---- operations -------------------------------------------------------------------------

#[tokio::test]
async fn cluster_status_records_every_address() {
    let good = HttpCluster::start().await;
    good.put("AppDialRules.xml", "rules");
    let refused = refused_url();
    let r = resolver(&config(vec![cluster_config(
        "c1",
        vec![refused.clone(), good.base_url()],
    )]));
    get(&r, "AppDialRules.xml").await;
    let status = r.cluster_status();
    assert_eq!(status.len(), 1);
    let c1 = &status[0];
    assert_eq!(c1.id, "c1");
    assert!(c1.enabled && c1.up);
    assert_eq!(c1.addresses[0].base_url, refused);
    assert!(!c1.addresses[0].up);
    assert!(c1.addresses[0]
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("connect")));
    assert_eq!(c1.addresses[0].last_status, None);
    assert!(c1.addresses[1].up);
    assert_eq!(c1.addresses[1].last_status, Some(200));
    assert!(c1.addresses[1].last_latency.is_some());
    assert!(c1.addresses[1].last_checked.is_some());
}

#[tokio::test]
async fn reconfigure_keeps_the_caches_of_remaining_clusters() {
    let [a, b] = HttpCluster::start_many().await;
    a.put("AppDialRules.xml", "a");
    b.put(cnf(), "config");
    let first = config(clusters_of([&a, &b]));
    let r = resolver(&first);
    get(&r, "AppDialRules.xml").await;
    get_from(&r, &cnf(), PHONE).await;

    // Same clusters: cached, home known.
    let r = Resolver::reconfigure(&first, &r).unwrap();
    assert_eq!(source(&get(&r, "AppDialRules.xml").await), from_cache("c1"));
    assert_eq!(
        r.home_of_device(&format!("SEP{MAC}")).as_deref(),
        Some("c2")
    );

    // Cluster 2 removed: its entries go; cluster 1's content stays.
    let r = Resolver::reconfigure(&config(clusters_of([&a])), &r).unwrap();
    assert_eq!(r.home_of_device(&format!("SEP{MAC}")), None);
    assert_not_found(&get_from(&r, &cnf(), PHONE).await);
    assert_eq!(body(&get(&r, "AppDialRules.xml").await), "a");
    assert_eq!(a.requests_for("AppDialRules.xml"), 1);
}

/// `locate` tells what a phone gets: a name the local root refuses is
/// refused, even when a cluster has it.
#[tokio::test]
async fn locate_reports_a_local_refusal_as_the_verdict() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("dir.xml")).unwrap();
    let b = HttpCluster::start().await;
    b.put("dir.xml", "remote");
    let mut config = config(clusters_of([&b]));
    config.tftp.root = Some(root.path().to_path_buf());
    let r = resolver(&config);
    let phone_gets = get(&r, "dir.xml").await;
    assert!(matches!(phone_gets, Answer::Denied(_)), "{phone_gets:?}");
    let report = locate(&r, "dir.xml").await;
    assert!(
        matches!(report.verdict, LocateVerdict::Denied(_)),
        "{:?}",
        report.verdict
    );
    assert!(report.reason.contains("local root"), "{}", report.reason);
}

#[tokio::test]
async fn locate_asks_every_address_and_explains() {
    let [a1, a2, b] = HttpCluster::start_many().await;
    b.put(cnf(), "config");
    let mut clusters = vec![
        cluster_config("c1", vec![a1.base_url(), a2.base_url()]),
        cluster_config("c2", vec![b.base_url()]),
        cluster_config("c3", vec![refused_url()]),
    ];
    clusters[2].enabled = false;
    let r = resolver(&config(clusters));
    // Cached first: locate must still ask everyone.
    get(&r, &cnf()).await;
    let report = locate(&r, &format!("/{}", cnf())).await;
    assert_eq!(a1.requests_for(&cnf()), 2);
    assert_eq!(a2.requests_for(&cnf()), 1, "every address is asked");
    assert_eq!(b.requests_for(&cnf()), 2);
    assert_eq!(
        report.verdict,
        LocateVerdict::Cluster {
            id: "c2".into(),
            size: 6
        }
    );
    let c1 = report.clusters[0].report.as_ref().unwrap();
    assert_eq!(c1.verdict, ClusterVerdict::NotFound);
    assert_eq!(c1.addresses.len(), 2);
    assert!(report.clusters[2].report.is_none());
    let text = tftproxy::diagnose::render(&report);
    assert!(text.contains("c1  priority 1  → not found"), "{text}");
    assert!(text.contains("c3  disabled"), "{text}");
    assert!(text.contains("verdict: served from c2 (6 bytes)"), "{text}");
    assert!(text.contains("found on c2"), "{text}");

    // Busy, then unreachable.
    b.set_status(503);
    let report = locate(&r, &cnf()).await;
    assert_eq!(report.verdict, LocateVerdict::RetryLater);
    assert!(report.reason.contains("busy"), "{}", report.reason);
    let gone = resolver(&config(vec![cluster_config("c1", vec![refused_url()])]));
    let report = locate(&gone, &cnf()).await;
    assert_eq!(report.verdict, LocateVerdict::RetryLater);
    assert!(report.reason.contains("retry-later"), "{}", report.reason);
}
