//! Warm start: what was served before a restart is served after it, with
//! the clusters stopped, and known devices go to their home cluster at once.

use std::time::Duration;

use super::*;

#[tokio::test]
async fn restart_with_every_cluster_stopped_serves_every_file_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let files = files();
    let c1 = HttpCluster::with_files(files.clone()).await;
    let c2 = HttpCluster::start().await;
    let clusters = clusters_of(&[&c2, &c1]);
    let before = daemon_with_cache(dir.path(), clusters.clone(), |_| {}).await;
    for (name, body) in &files {
        assert_eq!(&tftp(&before, name).await.unwrap(), body, "{name} before");
        assert_eq!(
            http(&before, name).await,
            (200, body.clone()),
            "{name} before"
        );
    }
    stop(before).await;
    drop((c1, c2));

    // Every copy older than its freshness too: served because the
    // clusters cannot answer (stale-if-error), and counted.
    for fresh in [true, false] {
        let after = daemon_with_cache(dir.path(), clusters.clone(), |config| {
            if fresh {
                config.cache.device_ttl = Duration::from_secs(3600);
            } else {
                config.cache.ttl = Duration::ZERO;
                config.cache.device_ttl = Duration::ZERO;
            }
        })
        .await;
        for (name, body) in &files {
            assert_eq!(&tftp(&after, name).await.unwrap(), body, "{name} over TFTP");
            assert_eq!(
                http(&after, name).await,
                (200, body.clone()),
                "{name} over HTTP"
            );
        }
        let stale = after.daemon.metrics().stale_served.get();
        if fresh {
            assert_eq!(stale, 0, "fresh copies are not stale");
        } else {
            assert!(
                stale >= files.len() as u64,
                "stale answers counted: {stale}"
            );
        }
        // A name never fetched is not invented.
        assert!(tftp(&after, "never-seen.xml").await.is_err());
        stop(after).await;
    }
}

#[tokio::test]
async fn restart_with_clusters_up_sends_a_known_device_to_its_home_only() {
    let dir = tempfile::tempdir().unwrap();
    let itl = format!("ITLSEP{MAC}.tlv");
    let (c1, c2, c3) = (
        HttpCluster::start().await,
        HttpCluster::with_files([(cnf(), "home config"), (itl.clone(), "home itl")]).await,
        HttpCluster::start().await,
    );
    let clusters = clusters_of(&[&c1, &c2, &c3]);
    let before = daemon_with_cache(dir.path(), clusters.clone(), |_| {}).await;
    assert_eq!(tftp(&before, &cnf()).await.unwrap(), b"home config");
    assert!(
        c1.requests() > 0 && c3.requests() > 0,
        "the first time fans out"
    );
    stop(before).await;
    for cluster in [&c1, &c2, &c3] {
        cluster.reset_counters();
    }

    // device_ttl 0: the cached config is asked again, of its home alone.
    let after = daemon_with_cache(dir.path(), clusters, |config| {
        config.cache.device_ttl = Duration::ZERO;
    })
    .await;
    assert_eq!(
        after
            .daemon
            .resolver()
            .current()
            .home_of_device(&format!("SEP{MAC}"))
            .as_deref(),
        Some("c2")
    );
    assert_eq!(tftp(&after, &cnf()).await.unwrap(), b"home config");
    assert_eq!(tftp(&after, &itl).await.unwrap(), b"home itl");
    assert_eq!(c2.requests(), 2, "both names asked of the home cluster");
    assert_eq!((c1.requests(), c3.requests()), (0, 0), "no fan-out");
    stop(after).await;
}

#[tokio::test]
async fn disk_max_bytes_holds_under_a_stream_of_new_files() {
    const LIMIT: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..40).map(|i| format!("common-{i:02}.bin")).collect();
    let body = |i: usize| vec![i as u8; 9_000];
    let c1 =
        HttpCluster::with_files(names.iter().enumerate().map(|(i, n)| (n.clone(), body(i)))).await;
    let daemon = daemon_with_cache(dir.path(), clusters_of(&[&c1]), |config| {
        config.cache.disk_max_bytes = LIMIT;
    })
    .await;
    for (i, name) in names.iter().enumerate() {
        assert_eq!(tftp(&daemon, name).await.unwrap(), body(i));
        daemon.daemon.resolver().current().persist().await;
        let on_disk: u64 = entry_files(dir.path())
            .iter()
            .map(|p| p.metadata().unwrap().len())
            .sum();
        assert!(on_disk <= LIMIT, "{on_disk} bytes after {name}");
    }
    let kept = entry_files(dir.path()).len();
    assert!(
        (9..=11).contains(&kept),
        "{kept} entries of ~9 KB in 100 KB"
    );
    // The most recent ones are what is kept.
    assert!(entry_holding(dir.path(), &body(39)).is_some());
    assert!(entry_holding(dir.path(), &body(0)).is_none());
    stop(daemon).await;
}
