//! Across clusters: parallel and sequential search, priority, dead, busy
//! and unreachable clusters, and coalescing of concurrent misses.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tftproxy::config::{OnUnreachable, Strategy};

use crate::support::daemon::cluster_config;
use crate::support::http_cluster::{refused_url, HangingListener, HttpCluster};
use crate::{
    assert_not_found, assert_retry_later, body, clusters_of, cnf, config, from_cache, from_cluster,
    get, get_from, resolver, source, CONNECT_TIMEOUT, MAC, MARGIN, PHONE, REQUEST_TIMEOUT,
};

/// Three servers, each answering after `delay`, the file on the third only.
async fn three_slow_clusters(delay: Duration) -> [HttpCluster; 3] {
    let servers = HttpCluster::start_many().await;
    for s in &servers {
        s.set_delay(delay);
    }
    servers[2].put("Ringlist-wb.xml", "from c3");
    servers
}

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
