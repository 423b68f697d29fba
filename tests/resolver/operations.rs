//! Operations: cluster status, reconfiguration keeping caches, and
//! `diagnose::locate` explaining what a phone would get.

use tftproxy::diagnose::{locate, LocateVerdict};
use tftproxy::resolve::{Answer, Resolver};
use tftproxy::source::upstream::ClusterVerdict;

use crate::support::daemon::cluster_config;
use crate::support::http_cluster::{refused_url, HttpCluster};
use crate::{
    assert_not_found, body, clusters_of, cnf, config, from_cache, get, get_from, resolver, source,
    MAC, PHONE,
};

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
