//! The loop guard: two tftproxy instances in one process, each configured
//! with the other's HTTP front as its only cluster. A request that comes
//! from a proxy (our `Via`) is answered from local files and caches only, so
//! a missing name costs each instance at most one upstream request and the
//! phone gets "not found" at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tftproxy::config::{ClusterConfig, Config, HttpConfig};
use tftproxy::daemon::Daemon;
use tftproxy::tftp::client::{get, GetOptions};

/// "Quickly": far below any time-out in play, with slack for a loaded CI.
const QUICK: Duration = Duration::from_millis(1500);

struct Instance {
    daemon: Arc<Daemon>,
    _root: tempfile::TempDir,
}

impl Instance {
    async fn start(files: &[(&str, &[u8])]) -> Instance {
        let root = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(root.path().join(name), content).unwrap();
        }
        let mut config = Config::default();
        config.tftp.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.tftp.root = Some(root.path().to_path_buf());
        config.http = Some(HttpConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..HttpConfig::default()
        });
        // Generous: a loop would show as slowness long before these expire.
        config.remote.connect_timeout = Duration::from_secs(2);
        config.remote.request_timeout = Duration::from_secs(10);
        let daemon = Daemon::start(config).await.expect("daemon starts");
        Instance {
            daemon,
            _root: root,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.daemon.http_addrs()[0])
    }

    fn tftp(&self) -> SocketAddr {
        self.daemon.tftp_addrs()[0]
    }

    /// Makes `other` this instance's only cluster.
    fn point_at(&self, other: &Instance, id: &str) {
        let mut config = self.daemon.config();
        config.clusters = vec![ClusterConfig {
            id: id.into(),
            description: String::new(),
            fqdn: String::new(),
            enabled: true,
            addresses: vec![other.base_url()],
        }];
        self.daemon.reload(config).expect("reload");
    }

    /// Upstream HTTP requests this instance has made (every outcome).
    fn upstream_requests(&self) -> u64 {
        self.daemon
            .metrics()
            .encode()
            .lines()
            .filter(|l| l.starts_with("tftproxy_upstream_requests_total{"))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum()
    }
}

/// A and B, each the other's cluster. A holds `a.xml`, B holds `b.xml`.
async fn pair() -> (Instance, Instance) {
    let a = Instance::start(&[("a.xml", b"from A")]).await;
    let b = Instance::start(&[("b.xml", b"from B")]).await;
    b.point_at(&a, "instance-a");
    a.point_at(&b, "instance-b");
    (a, b)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn missing_name_over_http_is_404_quickly_with_one_request_each() {
    let (a, b) = pair().await;

    let started = Instant::now();
    let response = client()
        .get(format!("{}/SEP001122334455.cnf.xml", a.base_url()))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 404);
    assert!(took < QUICK, "404 took {took:?}");
    assert_eq!(a.upstream_requests(), 1, "A asked B once");
    assert_eq!(b.upstream_requests(), 0, "B never forwards A's request");

    // The same from B's side.
    let response = client()
        .get(format!("{}/SEP0011223344AA.cnf.xml", b.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(b.upstream_requests(), 1);
    assert_eq!(a.upstream_requests(), 1);
}

#[tokio::test]
async fn missing_name_over_tftp_is_error_1_quickly() {
    let (a, b) = pair().await;
    let started = Instant::now();
    let error = get(a.tftp(), "ITLSEP001122334455.tlv", &GetOptions::default())
        .await
        .expect_err("not found");
    let took = started.elapsed();
    assert_eq!(
        error.server_error().map(|(code, _)| code),
        Some(1),
        "{error}"
    );
    assert!(took < QUICK, "ERROR 1 took {took:?}");
    assert!(a.upstream_requests() <= 1);
    assert_eq!(b.upstream_requests(), 0);

    // Asked again: A remembers "nowhere" and asks nobody.
    let error = get(a.tftp(), "ITLSEP001122334455.tlv", &GetOptions::default())
        .await
        .expect_err("not found");
    assert_eq!(error.server_error().map(|(code, _)| code), Some(1));
    assert_eq!(a.upstream_requests(), 1);
    assert_eq!(b.upstream_requests(), 0);
}

/// The hierarchy still works one level deep: each instance serves the
/// other's local files (fetched over HTTP), without further forwarding.
#[tokio::test]
async fn each_serves_the_others_local_files() {
    let (a, b) = pair().await;
    let download = get(a.tftp(), "b.xml", &GetOptions::default())
        .await
        .expect("A fetches b.xml from B");
    assert_eq!(download.data, b"from B");
    let response = client()
        .get(format!("{}/a.xml", b.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), "from A");
    assert_eq!(a.upstream_requests(), 1);
    assert_eq!(b.upstream_requests(), 1);

    // Many phones asking both for missing names at once: still one request
    // per name per instance, every answer quick.
    let started = Instant::now();
    let mut asks = Vec::new();
    for i in 0..20 {
        let name = format!("SEP0000000000{i:02}.cnf.xml");
        for base in [a.base_url(), b.base_url()] {
            let url = format!("{base}/{name}");
            asks.push(tokio::spawn(async move {
                client().get(url).send().await.unwrap().status().as_u16()
            }));
        }
    }
    for ask in asks {
        assert_eq!(ask.await.unwrap(), 404);
    }
    assert!(started.elapsed() < QUICK * 3, "{:?}", started.elapsed());
    assert!(a.upstream_requests() <= 1 + 20, "{}", a.upstream_requests());
    assert!(b.upstream_requests() <= 1 + 20, "{}", b.upstream_requests());
}
