//! The client itself: odd names encoded, dot segments never sent, pooled
//! connections, concurrent fetches, the per-address request cap.

use std::time::{Duration, Instant};

use tftproxy::config::RemoteConfig;
use tftproxy::source::upstream::{FailReason, Upstream};

use crate::support::http_cluster::HttpCluster;
use crate::{failed, found, remote, upstream, CNF};

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
