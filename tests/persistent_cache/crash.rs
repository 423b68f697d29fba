//! The real binary: `kill -9` while fetches write the cache never leaves a
//! torn copy to serve, and a cache directory that cannot be written costs
//! one warning, not the service.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use super::*;
use crate::support::process::{free_port, serve_by_hand, Reaper};

/// Starts `tftproxy serve` with an HTTP front on `http`, one cluster and
/// `[cache] dir`; returns once the HTTP front accepts.
fn serve(work: &Path, http: SocketAddr, cluster: &str, cache_dir: &Path) -> Reaper {
    let config = work.join("tftproxy.toml");
    std::fs::write(
        &config,
        format!(
            "[tftp]\nlisten = [\"127.0.0.1:{}\"]\n\n[http]\nlisten = [\"{http}\"]\n\n\
             [cache]\ndir = \"{}\"\n\n[remote]\nconnect_timeout = \"300ms\"\n\n\
             [[cluster]]\nid = \"c1\"\naddresses = [\"{cluster}\"]\n",
            free_port(),
            cache_dir.display()
        ),
    )
    .unwrap();
    let child = serve_by_hand(&config)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let mut reaper = Reaper(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&http, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "the HTTP front never answered");
        assert!(reaper.try_wait().unwrap().is_none(), "tftproxy exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    reaper
}

async fn get_url(client: &reqwest::Client, url: &str) -> (u16, Vec<u8>) {
    match client.get(url).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.bytes().await {
                Ok(body) => (status, body.to_vec()),
                Err(_) => (0, Vec::new()),
            }
        }
        Err(_) => (0, Vec::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_cache_writes_never_serves_a_torn_copy() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let names: Vec<String> = (0..20).map(|i| format!("firmware-{i:02}.bin")).collect();
    let body = |i: usize| -> Vec<u8> {
        (0..4_000_000 + i * 10_000)
            .map(|j| (j * 7 + i * 13) as u8)
            .collect()
    };
    let c1 =
        HttpCluster::with_files(names.iter().enumerate().map(|(i, n)| (n.clone(), body(i)))).await;
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let client = http_client(Duration::from_secs(20));

    let mut first = serve(work.path(), http, &c1.base_url(), &cache);
    let fetches: Vec<_> = names
        .iter()
        .map(|name| {
            let (client, url) = (client.clone(), format!("http://{http}/{name}"));
            tokio::spawn(async move { get_url(&client, &url).await })
        })
        .collect();
    // Kill as soon as an entry appears under its final name (a write that
    // is not atomic would still be under way), while the other files are
    // still being fetched and written.
    let deadline = Instant::now() + Duration::from_secs(30);
    while entry_files(&cache).is_empty() {
        assert!(Instant::now() < deadline, "nothing was cached");
        std::thread::sleep(Duration::from_micros(200));
    }
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    for fetch in fetches {
        let _ = fetch.await;
    }
    // What a crash in the middle of a write leaves behind.
    let torn = cache
        .join("entries")
        .join(format!("{}.9.tmp", "0".repeat(56)));
    std::fs::write(&torn, b"TFPXCACH torn").unwrap();
    let cached = entry_files(&cache).len();

    // Restart with the cluster down: whatever is served is byte-exact.
    let cluster_url = c1.base_url();
    drop(c1);
    let _second = serve(work.path(), http, &cluster_url, &cache);
    let mut served = 0;
    for (i, name) in names.iter().enumerate() {
        let (status, bytes) = get_url(&client, &format!("http://{http}/{name}")).await;
        match status {
            200 => {
                assert!(
                    bytes == body(i),
                    "{name}: served {} bytes that are not the cluster's",
                    bytes.len()
                );
                served += 1;
            }
            503 => {}
            other => panic!("{name}: HTTP {other}"),
        }
    }
    assert!(
        served >= 5.min(cached),
        "{served} served of {cached} cached"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while torn.exists() {
        assert!(
            Instant::now() < deadline,
            "the leftover temporary file stays"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_cache_directory_costs_one_warning_and_serving_goes_on() {
    let work = tempfile::tempdir().unwrap();
    // A read-only directory; as root (who writes anyway), a path below a
    // plain file, which no one can create.
    let mut cache = work.path().join("read-only");
    std::fs::create_dir_all(cache.join("entries")).unwrap();
    for dir in [cache.join("entries"), cache.clone()] {
        let mut permissions = dir.metadata().unwrap().permissions();
        permissions.set_readonly(true);
        std::fs::set_permissions(&dir, permissions).unwrap();
    }
    if std::fs::write(cache.join("entries").join("probe"), b"x").is_ok() {
        std::fs::write(work.path().join("plain-file"), b"x").unwrap();
        cache = work.path().join("plain-file").join("cache");
    }
    let files = files();
    let c1 = HttpCluster::with_files(files.clone()).await;
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let client = http_client(Duration::from_secs(20));
    let mut daemon = serve(work.path(), http, &c1.base_url(), &cache);
    for _ in 0..3 {
        for (name, body) in &files {
            let (status, bytes) = get_url(&client, &format!("http://{http}/{name}")).await;
            assert_eq!((status, &bytes), (200, body), "{name}");
        }
    }
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    let mut log = String::new();
    daemon
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let warnings = log.matches("cache directory cannot be written").count();
    assert_eq!(warnings, 1, "{log}");
}
