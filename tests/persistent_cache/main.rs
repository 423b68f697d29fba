//! The persistent cache (`[cache] dir`): what survives a restart, a
//! `kill -9` and a damaged file, what bounds it, and stale-if-error
//! (`cache.max_stale`). Clusters are real HTTP servers on loopback; one is
//! stopped by dropping it.
//!
//! One test binary; the tests are grouped by theme in the modules below, the
//! shared set-up lives here.

#[path = "../support/mod.rs"]
mod support;

mod crash;
mod damage;
mod restart;
mod revalidate;
mod stale;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::daemon::{cluster_config, http_client, TestDaemon};
use support::http_cluster::HttpCluster;
use tftproxy::client::{get, GetOptions};
use tftproxy::config::ClusterConfig;

const MAC: &str = "001122AABBCC";

fn cnf() -> String {
    format!("SEP{MAC}.cnf.xml")
}

/// A signed common file (served from a cluster, not a device's).
const SIGNED: &str = "dialplan.xml.sgn";
/// A firmware image, large enough for many TFTP blocks and HTTP chunks.
const FIRMWARE: &str = "sip88xx.14-2-1-0001-14.loads";

fn firmware_body() -> Vec<u8> {
    (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect()
}

/// The device file, the signed common file and the firmware, as a cluster
/// holds them.
fn files() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            cnf(),
            b"<device><name>SEP001122AABBCC</name></device>".to_vec(),
        ),
        (SIGNED.to_owned(), b"signed dial plan \x00\x01\x02".to_vec()),
        (FIRMWARE.to_owned(), firmware_body()),
    ]
}

/// One cluster per server, ids c1, c2, …
fn clusters_of(servers: &[&HttpCluster]) -> Vec<ClusterConfig> {
    servers
        .iter()
        .enumerate()
        .map(|(i, s)| cluster_config(&format!("c{}", i + 1), vec![s.base_url()]))
        .collect()
}

/// A daemon with an HTTP front, these clusters and `[cache] dir = dir`;
/// short remote time-outs so that a stopped cluster is noticed at once.
async fn daemon_with_cache(
    dir: &Path,
    clusters: Vec<ClusterConfig>,
    tweak: impl FnOnce(&mut tftproxy::config::Config),
) -> TestDaemon {
    let dir = dir.to_path_buf();
    TestDaemon::builder()
        .http()
        .admin()
        .remote_timeouts(Duration::from_millis(300), Duration::from_secs(2))
        .clusters(clusters)
        .tweak(move |config| {
            config.cache.dir = Some(dir);
            // A 3 MB entry is verified (SHA-256) when read; on a loaded CI
            // machine in a debug build that is slow, and these tests are
            // not about the wait limit.
            config.tftp.fetch_wait = Duration::from_secs(30);
            tweak(config);
        })
        .start()
        .await
}

/// Stops a daemon the way SIGTERM does (the cache tables are saved).
async fn stop(daemon: TestDaemon) {
    daemon.daemon.shutdown(Duration::from_secs(5)).await;
    drop(daemon);
}

/// `name` over TFTP: the bytes, or the server's TFTP error.
async fn tftp(daemon: &TestDaemon, name: &str) -> Result<Vec<u8>, (u16, String)> {
    let options = GetOptions {
        block_size: Some(1428),
        window_size: Some(8),
        ..GetOptions::default()
    };
    match get(daemon.tftp_v4(), name, &options).await {
        Ok(download) => Ok(download.data),
        Err(error) => Err(error
            .server_error()
            .map(|(code, message)| (code, message.to_owned()))
            .unwrap_or_else(|| panic!("{name}: no answer: {error}"))),
    }
}

/// `name` over HTTP: the status and the body.
async fn http(daemon: &TestDaemon, name: &str) -> (u16, Vec<u8>) {
    let response = daemon
        .http_get(&http_client(Duration::from_secs(20)), name)
        .await;
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// The cache entry files (not temporary ones) under `dir`.
fn entry_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("entries"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| !p.to_string_lossy().ends_with(".tmp"));
    files.sort();
    files
}

/// The entry file holding `body` (found by its last bytes), if any.
fn entry_holding(dir: &Path, body: &[u8]) -> Option<PathBuf> {
    entry_files(dir).into_iter().find(|p| {
        let bytes = std::fs::read(p).unwrap();
        bytes.len() > body.len() && bytes.ends_with(body)
    })
}
