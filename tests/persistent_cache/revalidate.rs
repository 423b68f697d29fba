//! Revalidation: a copy past its freshness is asked again with
//! `If-None-Match` / `If-Modified-Since`; a 304 keeps it (no body moves), a
//! 200 replaces it, on disk too.

use std::time::Duration;

use super::*;

#[tokio::test]
async fn an_expired_copy_is_revalidated_and_a_304_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let c1 = HttpCluster::with_files([(cnf(), "config v1")]).await;
    let clusters = clusters_of(&[&c1]);
    let before = daemon_with_cache(dir.path(), clusters.clone(), |_| {}).await;
    assert_eq!(tftp(&before, &cnf()).await.unwrap(), b"config v1");
    let first = c1.last_request().unwrap();
    assert_eq!(
        first.header("if-none-match"),
        None,
        "nothing to revalidate yet"
    );
    stop(before).await;

    // After a restart, device_ttl 0: every request revalidates.
    let after = daemon_with_cache(dir.path(), clusters.clone(), |config| {
        config.cache.device_ttl = Duration::ZERO;
    })
    .await;
    c1.reset_counters();
    assert_eq!(tftp(&after, &cnf()).await.unwrap(), b"config v1");
    let asked = c1.last_request().unwrap();
    assert!(asked.header("if-none-match").is_some(), "{asked:?}");
    assert_eq!(
        asked.header("if-modified-since"),
        Some("Mon, 01 Jan 2024 00:00:00 GMT")
    );
    let metrics = after.daemon.metrics().encode();
    assert!(
        metrics.contains("outcome=\"not_modified\"} 1"),
        "a 304 was counted: {metrics}"
    );

    // A changed file: its 200 replaces the copy, in memory and on disk.
    c1.put(cnf(), "config v2");
    assert_eq!(tftp(&after, &cnf()).await.unwrap(), b"config v2");
    assert_eq!(c1.requests_for(&cnf()), 2);
    stop(after).await;
    drop(c1);
    let offline = daemon_with_cache(dir.path(), clusters, |_| {}).await;
    assert_eq!(tftp(&offline, &cnf()).await.unwrap(), b"config v2");
    stop(offline).await;
}
