//! A damaged cache file (truncated, a flipped byte) is never served: it is
//! deleted and the file fetched again, or refused if its cluster is down.

use std::fs::OpenOptions;

use super::*;

/// Damages the entries of the signed file (cut short) and of the firmware
/// (one body byte flipped); the device file's entry is left intact.
fn damage(dir: &Path, files: &[(String, Vec<u8>)]) -> Vec<PathBuf> {
    let signed = entry_holding(dir, &files[1].1).expect("signed file cached");
    let firmware = entry_holding(dir, &files[2].1).expect("firmware cached");
    let len = signed.metadata().unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&signed)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let mut bytes = std::fs::read(&firmware).unwrap();
    let middle = bytes.len() - 1_000_000;
    bytes[middle] ^= 0x40;
    std::fs::write(&firmware, bytes).unwrap();
    vec![signed, firmware]
}

async fn cache_then_damage(dir: &Path, cluster: &HttpCluster) -> Vec<PathBuf> {
    let files = files();
    let before = daemon_with_cache(dir, clusters_of(&[cluster]), |_| {}).await;
    for (name, body) in &files {
        assert_eq!(&tftp(&before, name).await.unwrap(), body);
    }
    stop(before).await;
    damage(dir, &files)
}

#[tokio::test]
async fn a_damaged_entry_is_dropped_and_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let files = files();
    let c1 = HttpCluster::with_files(files.clone()).await;
    let damaged = cache_then_damage(dir.path(), &c1).await;
    c1.reset_counters();

    let after = daemon_with_cache(dir.path(), clusters_of(&[&c1]), |config| {
        config.cache.device_ttl = std::time::Duration::from_secs(3600);
    })
    .await;
    for (name, body) in &files {
        assert_eq!(&tftp(&after, name).await.unwrap(), body, "{name}");
    }
    assert_eq!(
        c1.requests_for(&cnf()),
        0,
        "the intact entry is served from disk"
    );
    assert_eq!(
        c1.requests_for(SIGNED),
        1,
        "the truncated entry is fetched again"
    );
    assert_eq!(
        c1.requests_for(FIRMWARE),
        1,
        "the altered entry is fetched again"
    );
    after.daemon.resolver().current().persist().await;
    // The damaged files were replaced by good copies.
    for path in damaged {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            files.iter().any(|(_, body)| bytes.ends_with(body)),
            "{path:?}"
        );
    }
    stop(after).await;
}

#[tokio::test]
async fn a_damaged_entry_is_not_served_while_its_cluster_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let files = files();
    let c1 = HttpCluster::with_files(files.clone()).await;
    let damaged = cache_then_damage(dir.path(), &c1).await;
    let clusters = clusters_of(&[&c1]);
    drop(c1);

    let after = daemon_with_cache(dir.path(), clusters, |_| {}).await;
    assert_eq!(tftp(&after, &cnf()).await.unwrap(), files[0].1);
    for name in [SIGNED, FIRMWARE] {
        let error = tftp(&after, name).await.unwrap_err();
        assert_eq!(error.0, 0, "{name}: busy, retry later: {error:?}");
        assert_eq!(http(&after, name).await.0, 503, "{name}");
    }
    for path in damaged {
        assert!(!path.exists(), "{path:?} deleted");
    }
    stop(after).await;
}
