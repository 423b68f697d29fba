//! Caches: content, negative and device entries, their TTLs, purges, and
//! lookups from another proxy (answered from the caches only).

use std::sync::Arc;
use std::time::Duration;

use tftproxy::config::Config;
use tftproxy::metrics::Metrics;
use tftproxy::resolve::{Answer, Lookup, Resolver};
use tftproxy::via::Chain;

use crate::support::http_cluster::HttpCluster;
use crate::{
    assert_not_found, body, clusters_of, cnf, config, device_config, from_cache, from_cluster, get,
    get_from, resolver, source, PHONE,
};

fn resolver_with_metrics(config: &Config) -> (Resolver, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    (
        Resolver::new(config, metrics.clone()).expect("resolver"),
        metrics,
    )
}

/// A lookup from another proxy whose `Via` is `via`.
async fn get_with_via(resolver: &Resolver, name: &str, via: &str) -> Answer {
    resolver
        .resolve(&Lookup {
            name,
            client: "192.0.2.200".parse().unwrap(),
            via: Chain::parse([via.as_bytes()]),
        })
        .await
}

/// A lookup whose `Via` chain already names this resolver: a loop.
async fn get_looped(resolver: &Resolver, name: &str) -> Answer {
    let chain = format!("1.1 tftproxy-site, {}", resolver.via_id());
    get_with_via(resolver, name, &chain).await
}

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

// ---- requests from another proxy ------------------------------------------------------

#[tokio::test]
async fn looped_lookups_are_answered_from_caches_only() {
    let a = HttpCluster::start().await;
    a.put("Ringlist.xml", "ring");
    a.put(cnf(), "config");
    let (r, metrics) = resolver_with_metrics(&config(clusters_of([&a])));
    assert_not_found(&get_looped(&r, "Ringlist.xml").await);
    assert_not_found(&get_looped(&r, &cnf()).await);
    assert_eq!(a.requests(), 0);
    assert!(metrics.encode().contains("tftproxy_loops_detected_total 2"));

    // Once a phone's request cached it, a looped lookup gets the cached copy.
    get(&r, "Ringlist.xml").await;
    let answer = get_looped(&r, "Ringlist.xml").await;
    assert_eq!(body(&answer), "ring");
    assert_eq!(source(&answer), from_cache("c1"));
    assert_eq!(a.requests(), 1);
}

/// An old tftproxy's `Via: 1.1 tftproxy` is one hop of a chain, not a
/// reason to stop: the lookup is forwarded with the chain and our entry.
#[tokio::test]
async fn an_old_style_via_is_forwarded_with_our_entry() {
    let a = HttpCluster::start().await;
    a.put("Ringlist.xml", "ring");
    let r = resolver(&config(clusters_of([&a])));
    let answer = get_with_via(&r, "Ringlist.xml", "1.1 tftproxy").await;
    assert_eq!(body(&answer), "ring");
    assert_eq!(
        a.last_header("via"),
        Some(format!("1.1 tftproxy, {}", r.via_id()))
    );
}
