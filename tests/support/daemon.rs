//! An in-process daemon for integration tests: `Daemon::start` on loopback
//! port-0 listeners, serving a temporary root directory.
//!
//! ```ignore
//! let server = TestDaemon::builder()
//!     .file("SEP001122334455.cnf.xml", b"<device/>")
//!     .http()
//!     .clusters(vec![cluster_config("cluster-a", vec![cluster.base_url()])])
//!     .tweak(|config| config.tftp.max_transfers = 2)
//!     .start()
//!     .await;
//! let download = get(server.tftp_v4(), "SEP001122334455.cnf.xml", &options).await;
//! let response = server.http_get(&client, "SEP001122334455.cnf.xml").await;
//! ```
//!
//! The root directory is removed when the handle drops.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tftproxy::config::{AdminConfig, ClusterConfig, Config, HttpConfig};
use tftproxy::daemon::Daemon;

/// A running daemon and the temporary directory it serves as `tftp.root`.
pub struct TestDaemon {
    pub daemon: Arc<Daemon>,
    root: tempfile::TempDir,
}

/// The configuration and root of a [`TestDaemon`] not started yet. Every
/// method applies at once, in call order (a later `tweak` sees what an
/// earlier `http` set).
pub struct TestDaemonBuilder {
    config: Config,
    root: tempfile::TempDir,
}

impl TestDaemon {
    /// TFTP on `127.0.0.1:0` serving a new, empty temporary root; the rest
    /// of the configuration is `Config::default()` (no HTTP, no admin, no
    /// clusters) but for the per-client TFTP limits, lifted: most tests
    /// play many phones from 127.0.0.1. [`TestDaemonBuilder::client_limits`]
    /// puts them back.
    pub fn builder() -> TestDaemonBuilder {
        let root = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.tftp.max_transfers_per_client = 100_000;
        config.tftp.client_request_rate = 1_000_000;
        config.tftp.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.tftp.root = Some(root.path().to_path_buf());
        TestDaemonBuilder { config, root }
    }

    /// The directory served as `tftp.root`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The TFTP listener's IPv4 address.
    pub fn tftp_v4(&self) -> SocketAddr {
        self.daemon
            .tftp_addrs()
            .into_iter()
            .find(SocketAddr::is_ipv4)
            .expect("a TFTP listener on IPv4")
    }

    /// The TFTP listener's IPv6 address.
    pub fn tftp_v6(&self) -> SocketAddr {
        self.daemon
            .tftp_addrs()
            .into_iter()
            .find(SocketAddr::is_ipv6)
            .expect("a TFTP listener on IPv6")
    }

    /// The (first) HTTP front address.
    pub fn http_addr(&self) -> SocketAddr {
        self.daemon.http_addrs()[0]
    }

    /// `http://ADDR` of the HTTP front (no trailing slash), as a cluster
    /// address for another instance.
    pub fn http_base_url(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    /// `http://ADDR/name` on the HTTP front (`name` taken as it is).
    pub fn http_url(&self, name: &str) -> String {
        format!("{}/{name}", self.http_base_url())
    }

    /// `http://ADDR/path` on the admin front (`path` starts with `/`).
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.daemon.admin_addr().unwrap())
    }

    /// GETs `name` from the HTTP front; panics when no response arrives.
    pub async fn http_get(&self, client: &reqwest::Client, name: &str) -> reqwest::Response {
        client.get(self.http_url(name)).send().await.unwrap()
    }

    /// A counter's value in the metrics (the sum over its label sets; 0
    /// when absent), e.g. `tftproxy_loops_detected_total`.
    pub fn counter(&self, name: &str) -> u64 {
        self.daemon
            .metrics()
            .encode()
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// GETs `path` from the admin front; panics when no response arrives.
    pub async fn admin_get(&self, client: &reqwest::Client, path: &str) -> reqwest::Response {
        client.get(self.admin_url(path)).send().await.unwrap()
    }
}

impl TestDaemonBuilder {
    /// Writes `content` as `name` under the root (directories created).
    pub fn file(self, name: &str, content: impl AsRef<[u8]>) -> Self {
        let path = self.root.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    /// [`file`](Self::file) for each `(name, content)`.
    pub fn files<N: AsRef<str>, C: AsRef<[u8]>>(self, files: &[(N, C)]) -> Self {
        files.iter().fold(self, |builder, (name, content)| {
            builder.file(name.as_ref(), content)
        })
    }

    /// The per-client TFTP limits of a real configuration (the defaults).
    pub fn client_limits(mut self) -> Self {
        let defaults = tftproxy::config::TftpConfig::default();
        self.config.tftp.max_transfers_per_client = defaults.max_transfers_per_client;
        self.config.tftp.client_request_rate = defaults.client_request_rate;
        self
    }

    /// TFTP listens on `[::1]:0` as well.
    pub fn tftp_ipv6(mut self) -> Self {
        self.config.tftp.listen.push("[::1]:0".parse().unwrap());
        self
    }

    /// An HTTP front on `127.0.0.1:0` (otherwise default `[http]` settings).
    pub fn http(mut self) -> Self {
        self.config.http = Some(HttpConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..HttpConfig::default()
        });
        self
    }

    /// `http.via_id` (after [`http`](Self::http)): instances of one process
    /// share a host name, so chained ones need distinct ids.
    pub fn via_id(mut self, id: &str) -> Self {
        self.config
            .http
            .as_mut()
            .expect("via_id after http()")
            .via_id = Some(id.into());
        self
    }

    /// An admin front on `127.0.0.1:0`.
    pub fn admin(mut self) -> Self {
        self.config.admin = Some(AdminConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..AdminConfig::default()
        });
        self
    }

    /// `remote.connect_timeout` and `remote.request_timeout`.
    pub fn remote_timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.config.remote.connect_timeout = connect;
        self.config.remote.request_timeout = request;
        self
    }

    pub fn clusters(mut self, clusters: Vec<ClusterConfig>) -> Self {
        self.config.clusters = clusters;
        self
    }

    /// Any other change to the configuration.
    pub fn tweak(mut self, tweak: impl FnOnce(&mut Config)) -> Self {
        tweak(&mut self.config);
        self
    }

    pub async fn start(self) -> TestDaemon {
        log_if_asked();
        let daemon = Daemon::start(self.config).await.expect("daemon starts");
        TestDaemon {
            daemon,
            root: self.root,
        }
    }
}

/// With `TFTPROXY_TEST_LOG` set (a `RUST_LOG`-style filter), the daemons'
/// logs go to the test's output: for finding out why a test failed.
fn log_if_asked() {
    if let Ok(filter) = std::env::var("TFTPROXY_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

/// An enabled cluster with these addresses, no description, no FQDN.
pub fn cluster_config(id: &str, addresses: Vec<String>) -> ClusterConfig {
    ClusterConfig {
        id: id.into(),
        description: String::new(),
        fqdn: String::new(),
        enabled: true,
        addresses,
    }
}

/// A reqwest client that ignores proxy settings and gives up after `timeout`.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}
