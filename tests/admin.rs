//! The admin front on loopback: Prometheus metrics after a known sequence of
//! requests (parsed, not grepped), health, cluster status, cache purge.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::daemon::{cluster_config, http_client, TestDaemon, TestDaemonBuilder};
use support::http_cluster::{refused_url, HttpCluster};
use tftproxy::client::{get, GetOptions};
use tftproxy::config::{AdminConfig, ClusterConfig};

/// TFTP, HTTP and admin fronts on loopback, with `clusters`.
fn admin_server(clusters: Vec<ClusterConfig>) -> TestDaemonBuilder {
    TestDaemon::builder()
        .http()
        .admin()
        .remote_timeouts(Duration::from_millis(300), Duration::from_secs(3))
        .clusters(clusters)
}

/// A cluster with a description and an FQDN, which the admin front shows.
fn described_cluster(id: &str, addresses: Vec<String>) -> ClusterConfig {
    ClusterConfig {
        description: format!("{id} description"),
        fqdn: format!("{id}.example.com"),
        ..cluster_config(id, addresses)
    }
}

fn client() -> reqwest::Client {
    http_client(Duration::from_secs(10))
}

type Labels = HashMap<String, String>;

/// The samples of a Prometheus text exposition, by name and label set.
struct Samples {
    samples: HashMap<String, Vec<(Labels, f64)>>,
    text: String,
}

impl Samples {
    /// Scrapes the admin front's `/metrics` (the classic text format).
    async fn scrape(server: &TestDaemon) -> Samples {
        let response = server.admin_get(&client(), "/metrics").await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        Samples::parse(&response.text().await.unwrap())
    }

    fn parse(text: &str) -> Samples {
        let mut samples: HashMap<String, Vec<_>> = HashMap::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let value: f64 = value.parse().expect("numeric value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').expect("labels close");
                    let labels = rest
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label pair");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, HashMap::new()),
            };
            samples
                .entry(name.to_owned())
                .or_default()
                .push((labels, value));
        }
        Samples {
            samples,
            text: text.to_owned(),
        }
    }

    /// The value of `name` with exactly these labels (0 when absent: a
    /// counter never incremented is not exported).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .get(name)
            .and_then(|list| {
                list.iter().find(|(l, _)| {
                    l.len() == labels.len()
                        && labels
                            .iter()
                            .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
                })
            })
            .map_or(0.0, |(_, v)| *v)
    }

    /// Sum of `name` over every series whose labels include these.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples.get(name).map_or(0.0, |list| {
            list.iter()
                .filter(|(l, _)| {
                    labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
                })
                .map(|(_, v)| v)
                .sum()
        })
    }
}

#[tokio::test]
async fn counters_follow_a_known_sequence() {
    let cluster = HttpCluster::start().await;
    cluster.put("SEP001122334455.cnf.xml", "<remote/>");
    let cluster_a = described_cluster("cluster-a", vec![cluster.base_url()]);
    let server = admin_server(vec![cluster_a])
        .file("AppDialRules.xml", b"0123456789")
        .start()
        .await;
    let http = client();

    // TFTP: local file served twice (10 bytes each), one miss.
    for _ in 0..2 {
        let download = get(server.tftp_v4(), "AppDialRules.xml", &GetOptions::default())
            .await
            .unwrap();
        assert_eq!(download.data, b"0123456789");
    }
    let missing = get(server.tftp_v4(), "nothing-here.xml", &GetOptions::default()).await;
    assert!(missing.is_err());
    // HTTP: served from the cluster (9 bytes), then from the cache; a miss
    // (asks the cluster: one upstream not_found); a denied name; a local file.
    for _ in 0..2 {
        let response = server.http_get(&http, "SEP001122334455.cnf.xml").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.bytes().await.unwrap(), "<remote/>");
    }
    let response = server.http_get(&http, "CTLSEP001122334455.tlv").await;
    assert_eq!(response.status(), 404);
    let response = server.http_get(&http, "a%01b").await;
    assert_eq!(response.status(), 403);
    let response = server.http_get(&http, "AppDialRules.xml").await;
    assert_eq!(response.bytes().await.unwrap(), "0123456789");

    let m = Samples::scrape(&server).await;
    // Classic Prometheus text: counter families carry `_total`, no `# EOF`.
    assert!(m.text.contains("# TYPE tftproxy_requests_total counter\n"));
    assert!(!m.text.contains("# EOF"));
    let requests = "tftproxy_requests_total";
    for (front, result, count) in [
        ("tftp", "served", 2.0),
        ("tftp", "not_found", 1.0),
        ("http", "served", 3.0),
        ("http", "not_found", 1.0),
        ("http", "denied", 1.0),
        ("http", "busy", 0.0),
    ] {
        assert_eq!(
            m.get(requests, &[("front", front), ("result", result)]),
            count,
            "{front} {result}\n{}",
            m.text
        );
    }
    assert_eq!(
        m.get("tftproxy_sent_bytes_total", &[("front", "tftp")]),
        20.0
    );
    assert_eq!(
        m.get("tftproxy_sent_bytes_total", &[("front", "http")]),
        9.0 * 2.0 + 10.0
    );
    assert_eq!(m.get("tftproxy_active_transfers", &[]), 0.0);
    assert_eq!(m.get("tftproxy_busy_rejections_total", &[]), 0.0);
    assert_eq!(
        m.get("tftproxy_transfers_total", &[("outcome", "completed")]),
        2.0
    );
    // Upstream: the cluster was asked for the cnf (found) and the CTL (not
    // found) over HTTP, and for nothing-here.xml (not found) over TFTP.
    let upstream = "tftproxy_upstream_requests_total";
    assert_eq!(
        m.sum(upstream, &[("cluster", "cluster-a"), ("outcome", "found")]),
        1.0
    );
    assert_eq!(
        m.sum(
            upstream,
            &[("cluster", "cluster-a"), ("outcome", "not_found")]
        ),
        2.0
    );
    assert_eq!(
        m.sum(upstream, &[("address", cluster.base_url().as_str())]),
        3.0,
        "{}",
        m.text
    );
    assert_eq!(cluster.requests(), 3);
    assert_eq!(
        m.sum(
            "tftproxy_upstream_duration_seconds_count",
            &[("cluster", "cluster-a")]
        ),
        3.0
    );
    // The content cache holds the cnf.
    assert_eq!(
        m.get("tftproxy_cache_entries", &[("cache", "content")]),
        1.0,
        "{}",
        m.text
    );
    // The body, plus its key's share of the weight.
    assert!(m.get("tftproxy_cache_content_bytes", &[]) >= 9.0);
    assert!(m.sum("tftproxy_cache_hits_total", &[]) >= 1.0);
    // The cnf taught the phone's home cluster.
    assert_eq!(
        m.get("tftproxy_home_entries", &[("table", "device")]),
        1.0,
        "{}",
        m.text
    );
    // The test's keep-alive connections (one per unread error body).
    assert!(m.get("tftproxy_http_connections", &[]) >= 1.0);

    // A scraper asking for OpenMetrics gets that content type.
    let response = http
        .get(server.admin_url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
}

#[tokio::test]
async fn purge_sends_the_next_request_upstream() {
    let cluster = HttpCluster::start().await;
    cluster.put("SEP00AABBCCDDEE.cnf.xml", "<v1/>");
    cluster.put("XMLDefault.cnf.xml", "<default/>");
    let cluster_a = described_cluster("cluster-a", vec![cluster.base_url()]);
    let server = admin_server(vec![cluster_a]).start().await;
    let http = client();
    let fetch = |name: &'static str| {
        let http = http.clone();
        let url = server.http_url(name);
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.bytes().await.unwrap())
        }
    };
    assert_eq!(fetch("SEP00AABBCCDDEE.cnf.xml").await.1, "<v1/>");
    assert_eq!(fetch("XMLDefault.cnf.xml").await.1, "<default/>");
    // A phone not yet added: not found, remembered.
    assert_eq!(fetch("SEP00AABBCCDDFF.cnf.xml").await.0, 404);
    assert_eq!(fetch("SEP00AABBCCDDFF.cnf.xml").await.0, 404);
    assert_eq!(cluster.requests_for("SEP00AABBCCDDFF.cnf.xml"), 1);
    // Cached.
    let _ = fetch("XMLDefault.cnf.xml").await;
    assert_eq!(cluster.requests_for("XMLDefault.cnf.xml"), 1);

    // The engineer adds the phone; without a purge the negative entry holds.
    cluster.put("SEP00AABBCCDDFF.cnf.xml", "<new/>");
    let response = purge(&server, &http, "/cache/SEP00AABBCCDDFF.cnf.xml").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json_body().await;
    assert_eq!(body["name"], "SEP00AABBCCDDFF.cnf.xml");
    assert!(body["purged"].as_u64().unwrap() >= 1, "{body}");
    assert_eq!(
        fetch("SEP00AABBCCDDFF.cnf.xml").await,
        (200, "<new/>".into())
    );
    assert_eq!(cluster.requests_for("SEP00AABBCCDDFF.cnf.xml"), 2);
    // The other names stayed cached.
    let _ = fetch("XMLDefault.cnf.xml").await;
    assert_eq!(cluster.requests_for("XMLDefault.cnf.xml"), 1);

    // The edit of a cached file shows after a purge of that name (in any case).
    cluster.put("XMLDefault.cnf.xml", "<default v2/>");
    let response = purge(&server, &http, "/cache/xmldefault.CNF.xml").await;
    assert_eq!(response.status(), 200);
    assert_eq!(fetch("XMLDefault.cnf.xml").await.1, "<default v2/>");
    assert_eq!(cluster.requests_for("XMLDefault.cnf.xml"), 2);

    // Purge everything: every name goes upstream again.
    let before = cluster.requests();
    let response = purge(&server, &http, "/cache").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json_body().await;
    assert!(body["purged"].as_u64().unwrap() >= 2, "{body}");
    let _ = fetch("XMLDefault.cnf.xml").await;
    assert_eq!(cluster.requests(), before + 1);

    let m = Samples::scrape(&server).await;
    assert!(
        m.get("tftproxy_cache_purged_entries_total", &[]) >= 3.0,
        "{}",
        m.text
    );

    // Only DELETE purges.
    let response = server.admin_get(&http, "/cache").await;
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn healthz_and_clusters() {
    let up = HttpCluster::start().await;
    up.put("SEP001122334455.cnf.xml", "<a/>");
    let busy = HttpCluster::start().await;
    busy.set_status(503);
    let server = admin_server(vec![
        described_cluster("cluster-a", vec![up.base_url()]),
        described_cluster("cluster-b", vec![refused_url(), busy.base_url()]),
        ClusterConfig {
            enabled: false,
            ..described_cluster("cluster-c", vec!["http://192.0.2.1:6970".into()])
        },
    ])
    .start()
    .await;
    let http = client();

    let response = server.admin_get(&http, "/healthz").await;
    assert_eq!(response.status(), 200);
    let health: serde_json::Value = response.json_body().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["active_transfers"], 0);

    // Before any request: every address up, never asked.
    let clusters = server.admin_get(&http, "/clusters").await.json_body().await;
    let list = clusters["clusters"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{clusters}");
    assert_eq!(list[0]["id"], "cluster-a");
    assert_eq!(list[0]["fqdn"], "cluster-a.example.com");
    assert_eq!(list[2]["enabled"], false);
    assert!(list[0]["addresses"][0]["last_status"].is_null());

    // One request: a found on cluster-a; cluster-b's first address refuses,
    // its second is busy (the fan-out asks both clusters at once).
    let response = server.http_get(&http, "SEP001122334455.cnf.xml").await;
    assert_eq!(response.status(), 200);
    // Let cluster-b's fetch finish (it runs on after cluster-a answered).
    tokio::time::sleep(Duration::from_millis(800)).await;

    let clusters = server.admin_get(&http, "/clusters").await.json_body().await;
    let list = clusters["clusters"].as_array().unwrap();
    let a = &list[0];
    assert_eq!(a["up"], true, "{clusters}");
    assert_eq!(a["addresses"][0]["address"], up.base_url());
    assert_eq!(a["addresses"][0]["last_status"], 200);
    assert_eq!(a["addresses"][0]["last_outcome"], "found");
    assert!(a["addresses"][0]["last_latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(a["addresses"][0]["last_checked"].is_string());
    let b = &list[1];
    assert_eq!(b["addresses"][0]["up"], false, "{clusters}");
    assert_eq!(b["addresses"][0]["last_outcome"], "failed");
    assert!(b["addresses"][0]["last_error"].is_string());
    assert_eq!(b["addresses"][1]["last_status"], 503);
    assert_eq!(b["addresses"][1]["last_outcome"], "busy");
    assert_eq!(b["up"], true, "a busy address is up");

    // Unknown paths: 404 and a pointer to the index.
    let response = server.admin_get(&http, "/nope").await;
    assert_eq!(response.status(), 404);
    let index = server.admin_get(&http, "/").await.text().await.unwrap();
    assert!(index.contains("/metrics") && index.contains("/clusters"));
}

#[tokio::test]
async fn admin_is_optional_and_rebinds_on_reload() {
    let server = admin_server(vec![])
        .tweak(|config| config.admin = None)
        .start()
        .await;
    assert_eq!(server.daemon.admin_addr(), None);

    let mut config = server.daemon.config();
    config.admin = Some(AdminConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..AdminConfig::default()
    });
    server.daemon.reload(config.clone()).unwrap();
    let first = server.daemon.admin_addr().expect("admin started by reload");
    let response = client()
        .get(format!("http://{first}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Same address: the same socket goes on serving.
    server.daemon.reload(config.clone()).unwrap();
    assert_eq!(server.daemon.admin_addr(), Some(first));

    config.admin = Some(AdminConfig {
        listen: "[::1]:0".parse().unwrap(),
        ..AdminConfig::default()
    });
    server.daemon.reload(config.clone()).unwrap();
    let second = server.daemon.admin_addr().unwrap();
    assert!(second.is_ipv6());
    let response = client()
        .get(format!("http://{second}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(first).await.is_err());

    config.admin = None;
    server.daemon.reload(config).unwrap();
    assert_eq!(server.daemon.admin_addr(), None);
}

/// DELETE on the admin front: `/cache` purges every name, `/cache/NAME` one.
async fn purge(server: &TestDaemon, client: &reqwest::Client, path: &str) -> reqwest::Response {
    client.delete(server.admin_url(path)).send().await.unwrap()
}

/// reqwest without its `json` feature: parse the body with serde_json.
trait JsonBody {
    async fn json_body(self) -> serde_json::Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> serde_json::Value {
        let text = self.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

/// Idle admin connections are closed after the header time-out and at most
/// `MAX_ADMIN_CONNECTIONS` are served at once, so nobody can pin the
/// descriptors the TFTP and HTTP fronts need through the admin port.
#[tokio::test]
async fn idle_admin_connections_are_bounded_and_closed() {
    use std::io::Read;
    use std::time::Instant;
    use tftproxy::front::admin::MAX_ADMIN_CONNECTIONS;
    use tftproxy::front::conn::HEADER_READ_TIMEOUT;

    let server = admin_server(vec![]).start().await;
    let addr = server.daemon.admin_addr().unwrap();
    let margin = Duration::from_secs(5);
    // Every slot taken by an idle connection, and one more waiting.
    let idle: Vec<std::net::TcpStream> = (0..=MAX_ADMIN_CONNECTIONS)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let started = Instant::now();
    let patient = http_client(HEADER_READ_TIMEOUT + margin * 2);
    let healthz = patient.get(server.admin_url("/healthz")).send();
    let response = tokio::time::timeout(HEADER_READ_TIMEOUT + margin, healthz)
        .await
        .expect("healthz waited for ever behind idle connections")
        .unwrap();
    assert_eq!(response.status(), 200);
    // It had to wait for the idle ones to be cut off.
    assert!(started.elapsed() >= HEADER_READ_TIMEOUT - Duration::from_secs(1));
    let closed = tokio::task::spawn_blocking(move || {
        idle.into_iter()
            .filter_map(|mut stream| {
                // The last one got its slot only when the others were cut.
                stream
                    .set_read_timeout(Some(HEADER_READ_TIMEOUT + margin))
                    .unwrap();
                let mut buf = Vec::new();
                stream.read_to_end(&mut buf).ok()
            })
            .count()
    })
    .await
    .unwrap();
    assert_eq!(
        closed,
        MAX_ADMIN_CONNECTIONS + 1,
        "idle connections left open"
    );
}

/// What an operator graphs besides the request counters: the version, the
/// process (memory, descriptors, CPU, start), latency histograms per front,
/// and a phone that vanished counted as `client_gone`, not as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_process_latency_and_vanished_phones() {
    let server = admin_server(vec![])
        .file("SEP001122334455.cnf.xml", support::pattern(3000, 1))
        .start()
        .await;
    get(
        server.tftp_v4(),
        "SEP001122334455.cnf.xml",
        &GetOptions::default(),
    )
    .await
    .expect("served");
    // A phone that asks and vanishes: its port is closed before the first
    // DATA, so the transfer socket gets "port unreachable".
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rrq = b"\x00\x01SEP001122334455.cnf.xml\x00octet\x00";
    phone.send_to(rrq, server.tftp_v4()).unwrap();
    drop(phone);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let samples = loop {
        let samples = Samples::scrape(&server).await;
        let gone = samples.get(
            "tftproxy_requests_total",
            &[("front", "tftp"), ("result", "client_gone")],
        );
        if gone >= 1.0 || std::time::Instant::now() > deadline {
            break samples;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = &samples.text;
    assert_eq!(
        samples.get(
            "tftproxy_requests_total",
            &[("front", "tftp"), ("result", "client_gone")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        samples.get(
            "tftproxy_requests_total",
            &[("front", "tftp"), ("result", "error")]
        ),
        0.0,
        "{text}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        samples.get("tftproxy_build_info", &[("version", version)]),
        1.0
    );
    assert!(samples.get("tftproxy_process_resident_memory_bytes", &[]) > 1e6);
    assert!(samples.get("tftproxy_process_open_fds", &[]) >= 3.0);
    assert!(samples.get("tftproxy_process_start_time_seconds", &[]) > 1.7e9);
    assert!(samples
        .samples
        .contains_key("tftproxy_process_cpu_seconds_total"));
    assert_eq!(
        samples.get("tftproxy_first_byte_seconds_count", &[("front", "tftp")]),
        2.0,
        "both requests reached their first DATA: {text}"
    );
    assert_eq!(
        samples.get("tftproxy_transfer_duration_seconds_count", &[]),
        2.0
    );
}
