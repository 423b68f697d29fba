//! Cluster addresses held down (`remote.hold_down`): a failed address is
//! skipped without waiting, tried again once its hold runs out, and comes
//! back; a `503` with `Retry-After` holds it down that long; one warning
//! per address that goes down; the state survives a reload and shows in
//! `/clusters`, the `tftproxy_upstream_address_up` gauge, `locate` and
//! `/readyz`. Real daemons and real HTTP clusters on loopback.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tftproxy::client::{get, GetOptions};

use support::daemon::{cluster_config, http_client, TestDaemon};
use support::http_cluster::{refused_url, HttpCluster};
use support::server_error;

/// How long the blackholed address keeps a request waiting.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Generous bound for "did not wait for the time-out".
const NO_WAIT: Duration = Duration::from_millis(1000);

fn name(i: usize) -> String {
    format!("firmware/part-{i}.bin")
}

fn content(i: usize) -> String {
    format!("content of part {i}")
}

/// Every log line of this test binary (a global subscriber: a scoped one
/// misses lines when tests run in parallel). Tests tell their lines apart
/// by the cluster address, whose port is theirs.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn capture() -> &'static Logs {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            tracing_subscriber::fmt()
                .with_writer(logs.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .init();
            logs
        })
    }

    /// Lines at `level` (`WARN`, `INFO`) containing `text` about `address`.
    fn count(&self, level: &str, text: &str, address: &str) -> usize {
        let bytes = self.0.lock().unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(level) && l.contains(text))
            .filter(|l| l.contains(&format!("upstream={address}")))
            .count()
    }
}

/// The value of a metric sample, e.g. `tftproxy_upstream_address_up`.
fn sample(server: &TestDaemon, metric: &str, cluster: &str, address: &str) -> Option<i64> {
    let prefix = format!("{metric}{{cluster=\"{cluster}\",address=\"{address}\"}} ");
    server
        .daemon
        .metrics()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
}

fn address_up(server: &TestDaemon, cluster: &str, address: &str) -> Option<i64> {
    sample(server, "tftproxy_upstream_address_up", cluster, address)
}

fn downs(server: &TestDaemon, cluster: &str, address: &str) -> i64 {
    sample(
        server,
        "tftproxy_upstream_address_downs_total",
        cluster,
        address,
    )
    .unwrap_or(0)
}

/// `GET /clusters`: the first cluster's addresses.
async fn addresses(server: &TestDaemon) -> Vec<Value> {
    let response = server
        .admin_get(&http_client(Duration::from_secs(5)), "/clusters")
        .await;
    let json: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    json["clusters"][0]["addresses"].as_array().unwrap().clone()
}

/// GETs `name` from the HTTP front: the status, the body and how long it took.
async fn fetch(server: &TestDaemon, name: &str) -> (u16, String, Duration) {
    let start = Instant::now();
    let response = server
        .http_get(&http_client(Duration::from_secs(15)), name)
        .await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap(), start.elapsed())
}

/// Two addresses, both with every file: `first` hangs (requests time out),
/// the second serves.
async fn two_addresses(hold_down: Duration) -> (HttpCluster, HttpCluster, TestDaemon) {
    let [first, second] = HttpCluster::start_many().await;
    for i in 0..40 {
        first.put(name(i), content(i));
        second.put(name(i), content(i));
    }
    first.set_hang(true);
    let server = TestDaemon::builder()
        .http()
        .admin()
        .remote_timeouts(Duration::from_secs(1), REQUEST_TIMEOUT)
        .tweak(|c| c.remote.hold_down = hold_down)
        .clusters(vec![cluster_config(
            "c",
            vec![first.base_url(), second.base_url()],
        )])
        .start()
        .await;
    (first, second, server)
}

#[tokio::test]
async fn a_blackholed_first_address_is_skipped_then_tried_again_and_comes_back() {
    let logs = Logs::capture();
    let hold = Duration::from_secs(2);
    let (first, second, server) = two_addresses(hold).await;
    let url = first.base_url();
    assert_eq!(address_up(&server, "c", &url), Some(1));

    // The first fetch waits for the time-out, then the second address serves.
    let (status, body, took) = fetch(&server, &name(0)).await;
    assert_eq!((status, body.as_str()), (200, content(0).as_str()));
    assert!(took >= REQUEST_TIMEOUT, "{took:?}");
    let failed_at = Instant::now();

    // The next fetches skip it: no waiting, served by the second address.
    for i in 1..6 {
        let (status, body, took) = fetch(&server, &name(i)).await;
        assert_eq!((status, body.as_str()), (200, content(i).as_str()));
        assert!(took < NO_WAIT, "fetch {i} waited {took:?}");
        assert_eq!(second.requests_for(&name(i)), 1);
    }
    assert_eq!(first.requests(), 1, "a held-down address is not asked");
    let status = &addresses(&server).await[0];
    assert_eq!(status["up"], false, "{status}");
    assert!(status["held_down_until"].is_string(), "{status}");
    assert_eq!(address_up(&server, "c", &url), Some(0));

    // It recovers; once the hold is over one request tries it again.
    first.set_hang(false);
    tokio::time::sleep((failed_at + hold + Duration::from_millis(300)) - Instant::now()).await;
    let (status, body, _) = fetch(&server, &name(6)).await;
    assert_eq!((status, body.as_str()), (200, content(6).as_str()));
    assert_eq!(first.requests_for(&name(6)), 1, "tried again");
    assert_eq!(second.requests_for(&name(6)), 0, "and it answered");
    let status = &addresses(&server).await[0];
    assert_eq!(status["up"], true, "{status}");
    assert!(status["held_down_until"].is_null(), "{status}");
    assert_eq!(address_up(&server, "c", &url), Some(1));
    assert_eq!(logs.count("WARN", "cluster address down", &url), 1);
    assert_eq!(logs.count("INFO", "cluster address is back", &url), 1);
}

#[tokio::test]
async fn one_warning_per_down_transition_not_one_per_request() {
    let logs = Logs::capture();
    let (first, _second, server) = two_addresses(Duration::from_secs(30)).await;
    let url = first.base_url();
    // Eight phones at once while the address still looks up: all eight
    // wait on it and fail, one warning.
    let names: Vec<String> = (0..8).map(name).collect();
    let fetches = names.iter().map(|n| fetch(&server, n));
    for (status, _, _) in futures::future::join_all(fetches).await {
        assert_eq!(status, 200);
    }
    assert_eq!(first.requests(), 8);
    // Eight more while it is held down: no request, no warning.
    for i in 8..16 {
        assert_eq!(fetch(&server, &name(i)).await.0, 200);
    }
    assert_eq!(first.requests(), 8);
    assert_eq!(logs.count("WARN", "cluster address down", &url), 1);
    assert_eq!(downs(&server, "c", &url), 1);
}

#[tokio::test]
async fn an_answer_unusable_for_one_name_does_not_hold_the_address_down() {
    let [first, second] = HttpCluster::start_many().await;
    for i in 0..2 {
        first.put(name(i), content(i));
        second.put(name(i), content(i));
    }
    first.set_status_for(name(0), 500);
    let server = TestDaemon::builder()
        .http()
        .clusters(vec![cluster_config(
            "c",
            vec![first.base_url(), second.base_url()],
        )])
        .start()
        .await;
    assert_eq!(fetch(&server, &name(0)).await.1, content(0));
    assert_eq!(second.requests_for(&name(0)), 1);
    let (status, body, _) = fetch(&server, &name(1)).await;
    assert_eq!((status, body.as_str()), (200, content(1).as_str()));
    assert_eq!(first.requests_for(&name(1)), 1, "still asked");
    assert_eq!(second.requests_for(&name(1)), 0);
    assert_eq!(address_up(&server, "c", &first.base_url()), Some(1));
}

#[tokio::test]
async fn a_cluster_whose_only_address_is_held_down_is_unreachable_at_once() {
    let lone = HttpCluster::start().await;
    lone.put(name(0), content(0));
    lone.set_hang(true);
    let server = TestDaemon::builder()
        .remote_timeouts(Duration::from_secs(1), REQUEST_TIMEOUT)
        .clusters(vec![cluster_config("c", vec![lone.base_url()])])
        .start()
        .await;
    let options = GetOptions::default();
    let retry_later = (0, "busy, retry later".to_string());

    let start = Instant::now();
    assert_eq!(
        server_error(get(server.tftp_v4(), "a.bin", &options).await),
        retry_later
    );
    assert!(start.elapsed() >= REQUEST_TIMEOUT);
    assert_eq!(lone.requests(), 1);

    let start = Instant::now();
    assert_eq!(
        server_error(get(server.tftp_v4(), "b.bin", &options).await),
        retry_later
    );
    assert!(start.elapsed() < NO_WAIT, "waited {:?}", start.elapsed());
    assert_eq!(lone.requests(), 1, "no request reaches a held-down address");

    // A reload keeps the hold of an address still configured.
    let mut config = server.daemon.config();
    config.cache.max_homes += 1;
    server.daemon.reload(config).unwrap();
    let start = Instant::now();
    assert_eq!(
        server_error(get(server.tftp_v4(), "c.bin", &options).await),
        retry_later
    );
    assert!(start.elapsed() < NO_WAIT, "waited {:?}", start.elapsed());
    assert_eq!(lone.requests(), 1);

    // `locate` asks it anyway and says that phones do not.
    lone.set_hang(false);
    let resolver = server.daemon.resolver().current();
    let report = tftproxy::diagnose::locate(&resolver, &name(0)).await;
    assert_eq!(lone.requests(), 2);
    let held = &report.clusters[0].held_down;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].0, lone.base_url());
    let text = tftproxy::diagnose::render(&report);
    assert!(
        text.contains("[held down: phones do not ask it for"),
        "{text}"
    );
    // Its answer brought it back.
    assert_eq!(address_up(&server, "c", &lone.base_url()), Some(1));
}

#[tokio::test]
async fn a_503_with_retry_after_holds_the_address_that_long() {
    let [busy, other] = HttpCluster::start_many().await;
    for i in 0..3 {
        busy.put(name(i), content(i));
        other.put(name(i), content(i));
    }
    busy.set_status(503);
    busy.add_header("Retry-After", "2");
    let server = TestDaemon::builder()
        .http()
        .admin()
        .clusters(vec![cluster_config(
            "c",
            vec![busy.base_url(), other.base_url()],
        )])
        .start()
        .await;

    assert_eq!(fetch(&server, &name(0)).await.0, 200);
    let answered_at = SystemTime::now();
    assert_eq!(busy.requests(), 1);
    assert_eq!(fetch(&server, &name(1)).await.0, 200);
    assert_eq!(busy.requests(), 1, "held down: not asked");
    let status = &addresses(&server).await[0];
    let until = humantime::parse_rfc3339(status["held_down_until"].as_str().unwrap()).unwrap();
    let held = until.duration_since(answered_at).unwrap_or_default();
    assert!(
        held > Duration::from_millis(1500) && held <= Duration::from_millis(2050),
        "held down for {held:?}"
    );

    busy.reset_behaviour();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(fetch(&server, &name(2)).await.0, 200);
    assert_eq!(
        busy.requests_for(&name(2)),
        1,
        "asked again after Retry-After"
    );
    assert_eq!(other.requests_for(&name(2)), 0);
}

#[tokio::test]
async fn readyz_is_200_with_the_clusters_state_while_every_cluster_is_down() {
    let server = TestDaemon::builder()
        .http()
        .admin()
        .clusters(vec![
            cluster_config("a", vec![refused_url()]),
            cluster_config("b", vec![refused_url(), refused_url()]),
        ])
        .start()
        .await;
    let client = http_client(Duration::from_secs(5));
    let response = server.admin_get(&client, "/readyz").await;
    assert_eq!(response.status(), 200);
    let json: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(
        json["clusters"][0]["reachable"], true,
        "never asked: {json}"
    );

    assert_eq!(fetch(&server, &name(0)).await.0, 503);
    let response = server.admin_get(&client, "/readyz").await;
    assert_eq!(response.status(), 200);
    let json: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(json["status"], "ready", "{json}");
    let clusters = json["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 2, "{json}");
    for cluster in clusters {
        assert_eq!(cluster["reachable"], false, "{json}");
        for address in cluster["addresses"].as_array().unwrap() {
            assert_eq!(address["up"], false, "{json}");
            assert!(address["held_down_until"].is_string(), "{json}");
        }
    }
    assert_eq!(server.admin_get(&client, "/healthz").await.status(), 200);
    let index = server.admin_get(&client, "/").await.text().await.unwrap();
    assert!(index.contains("GET    /readyz"), "{index}");
}
