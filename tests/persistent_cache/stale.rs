//! Stale-if-error for any cached file, bounded by `cache.max_stale`.

use std::time::Duration;

use super::*;

#[tokio::test]
async fn a_copy_older_than_max_stale_is_not_served_while_the_cluster_is_down() {
    const MAX_STALE: Duration = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let files = files();
    let c1 = HttpCluster::with_files(files.clone()).await;
    let clusters = clusters_of(&[&c1]);
    let daemon = daemon_with_cache(dir.path(), clusters, |config| {
        // Nothing is fresh: every answer asks the cluster first.
        config.cache.ttl = Duration::ZERO;
        config.cache.device_ttl = Duration::ZERO;
        config.cache.max_stale = MAX_STALE;
    })
    .await;
    for (name, body) in &files[..2] {
        assert_eq!(&tftp(&daemon, name).await.unwrap(), body);
    }
    drop(c1);
    let served_at = std::time::Instant::now();
    // Within max_stale: the last good copy, device file or not.
    for (name, body) in &files[..2] {
        assert_eq!(&tftp(&daemon, name).await.unwrap(), body, "{name}");
    }
    assert!(
        served_at.elapsed() < MAX_STALE,
        "the machine is too slow for this test"
    );
    assert_eq!(daemon.daemon.metrics().stale_served.get(), 2);

    tokio::time::sleep(MAX_STALE + Duration::from_millis(200)).await;
    for (name, _) in &files[..2] {
        let error = tftp(&daemon, name).await.unwrap_err();
        assert_eq!(error.0, 0, "{name}: busy, retry later: {error:?}");
        assert_eq!(http(&daemon, name).await.0, 503, "{name}");
    }
    assert_eq!(daemon.daemon.metrics().stale_served.get(), 2);
    stop(daemon).await;
}

#[tokio::test]
async fn without_a_cache_dir_stale_if_error_serves_from_memory() {
    let files = files();
    let c1 = HttpCluster::with_files(files.clone()).await;
    let daemon = TestDaemon::builder()
        .remote_timeouts(Duration::from_millis(300), Duration::from_secs(2))
        .clusters(clusters_of(&[&c1]))
        .tweak(|config| {
            config.cache.ttl = Duration::ZERO;
            config.cache.device_ttl = Duration::ZERO;
        })
        .start()
        .await;
    assert_eq!(tftp(&daemon, SIGNED).await.unwrap(), files[1].1);
    drop(c1);
    assert_eq!(tftp(&daemon, SIGNED).await.unwrap(), files[1].1);
    assert_eq!(daemon.daemon.metrics().stale_served.get(), 1);
}
