//! The HTTP front end (port 6970) on loopback, asked with the `curl` binary
//! and with reqwest: local files (memory and streamed disk bodies), 404,
//! 403, 503 with `Retry-After`, HEAD, `Content-Length`, the wait-then-503
//! path followed by a TFTP hit from the cache, the loop guard (`Via`), and
//! the connection and size bounds.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::http_cluster::HttpCluster;
use tftproxy::config::{ClusterConfig, Config, HttpConfig};
use tftproxy::daemon::Daemon;
use tftproxy::resolve::upstream::VIA;
use tftproxy::tftp::client::{get, GetOptions};

/// Scheduling slack on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(1500);

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Server {
    daemon: Arc<Daemon>,
    _root: tempfile::TempDir,
}

impl Server {
    async fn start(
        files: &[(&str, Vec<u8>)],
        clusters: &[&HttpCluster],
        tweak: impl FnOnce(&mut Config),
    ) -> Server {
        let root = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let path = root.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let mut config = Config::default();
        config.tftp.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.tftp.root = Some(root.path().to_path_buf());
        config.http = Some(HttpConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..HttpConfig::default()
        });
        config.remote.connect_timeout = Duration::from_millis(500);
        config.remote.request_timeout = Duration::from_secs(5);
        config.clusters = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| ClusterConfig {
                id: format!("cluster-{}", i + 1),
                description: String::new(),
                fqdn: String::new(),
                enabled: true,
                addresses: vec![c.base_url()],
            })
            .collect();
        tweak(&mut config);
        let daemon = Daemon::start(config).await.expect("daemon starts");
        Server {
            daemon,
            _root: root,
        }
    }

    fn http(&self) -> SocketAddr {
        self.daemon.http_addrs()[0]
    }

    fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.http())
    }

    fn tftp(&self) -> SocketAddr {
        self.daemon.tftp_addrs()[0]
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Runs `curl` with `args`; returns (status, headers lower-cased, body).
fn curl(args: &[&str]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let headers_file = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "20", "-D"])
        .arg(headers_file.path())
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let head = std::fs::read_to_string(headers_file.path()).unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, output.stdout)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `curl` runs blocking: keep it off the runtime's worker threads.
async fn curl_async(args: Vec<String>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args)
    })
    .await
    .unwrap()
}

// ---- curl ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_get_head_and_not_found() {
    let cnf = b"<device><loadInformation>SIP88xx.14-2-1</loadInformation></device>".to_vec();
    let server = Server::start(&[("SEP001122334455.cnf.xml", cnf.clone())], &[], |_| {}).await;

    let (status, headers, body) = curl_async(vec![server.url("SEP001122334455.cnf.xml")]).await;
    assert_eq!(status, 200);
    assert_eq!(body, cnf);
    assert_eq!(
        header(&headers, "content-length"),
        Some(cnf.len().to_string().as_str())
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));

    // HEAD: the length, no body.
    let (status, headers, body) =
        curl_async(vec!["-I".into(), server.url("SEP001122334455.cnf.xml")]).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-length"),
        Some(cnf.len().to_string().as_str())
    );
    assert!(body.is_empty() || String::from_utf8_lossy(&body).starts_with("HTTP/1.1 200"));

    // Other case, a leading slash (the 7942 asks `/mk-sip.jar`), percent-encoding.
    let (status, _, body) = curl_async(vec![server.url("/sep001122334455.CNF.xml")]).await;
    assert_eq!(status, 200);
    assert_eq!(body, cnf);
    let (status, _, body) = curl_async(vec![server.url("SEP001122334455%2Ecnf.xml")]).await;
    assert_eq!(status, 200);
    assert_eq!(body, cnf);

    let (status, headers, _) = curl_async(vec![server.url("CTLSEP001122334455.tlv")]).await;
    assert_eq!(status, 404);
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));

    // A traversal is refused with 403 and never served.
    let (status, _, _) =
        curl_async(vec!["--path-as-is".into(), server.url("../../etc/passwd")]).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_streams_a_large_disk_file_byte_exact() {
    let firmware = pattern(6 * 1024 * 1024 + 123, 7);
    let server = Server::start(&[("cmterm-88xx.sbn", firmware.clone())], &[], |_| {}).await;
    let (status, headers, body) = curl_async(vec![server.url("cmterm-88xx.sbn")]).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-length"),
        Some(firmware.len().to_string().as_str())
    );
    assert!(header(&headers, "transfer-encoding").is_none());
    assert!(body == firmware, "body differs");
}

// ---- reqwest -----------------------------------------------------------------------

#[tokio::test]
async fn reqwest_statuses_and_lengths() {
    let small = b"ring ring".to_vec();
    let big = pattern(300_000, 3);
    let server = Server::start(
        &[("Ringlist.xml", small.clone()), ("big.loads", big.clone())],
        &[],
        |_| {},
    )
    .await;
    let client = client();

    let response = client.get(server.url("Ringlist.xml")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(small.len() as u64));
    assert_eq!(response.bytes().await.unwrap(), small);

    let response = client.get(server.url("big.loads")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(big.len() as u64));
    assert!(response.bytes().await.unwrap() == big);

    let response = client.head(server.url("big.loads")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"].to_str().unwrap(),
        big.len().to_string()
    );
    assert!(response.bytes().await.unwrap().is_empty());

    let response = client.get(server.url("nope.xml")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let response = client.head(server.url("nope.xml")).send().await.unwrap();
    assert_eq!(response.status(), 404);

    // `\` becomes `/`: a traversal in disguise.
    let response = client
        .get(server.url("..%5C..%5Cetc%5Cpasswd"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // A control character.
    let response = client.get(server.url("a%01b.xml")).send().await.unwrap();
    assert_eq!(response.status(), 403);

    // Not UTF-8.
    let response = client.get(server.url("%ff.xml")).send().await.unwrap();
    assert_eq!(response.status(), 400);

    let response = client
        .post(server.url("Ringlist.xml"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");

    let long = "a".repeat(2000);
    let response = client.get(server.url(&long)).send().await.unwrap();
    assert_eq!(response.status(), 414);

    // Several requests on one keep-alive connection.
    for _ in 0..5 {
        let response = client.get(server.url("Ringlist.xml")).send().await.unwrap();
        assert_eq!(response.bytes().await.unwrap(), small);
    }
}

#[tokio::test]
async fn found_on_a_cluster_is_served_over_http() {
    let cluster = HttpCluster::start().await;
    cluster.put("SEP00AABBCCDDEE.cnf.xml", "<remote/>");
    let server = Server::start(&[], &[&cluster], |_| {}).await;
    let response = client()
        .get(server.url("SEP00AABBCCDDEE.cnf.xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(9));
    assert_eq!(response.bytes().await.unwrap(), "<remote/>");
    assert_eq!(cluster.requests_for("SEP00AABBCCDDEE.cnf.xml"), 1);
    // Our upstream request says it comes from a tftproxy.
    assert_eq!(cluster.last_header("via").as_deref(), Some(VIA));
}

#[tokio::test]
async fn busy_cluster_gives_503_with_retry_after() {
    let cluster = HttpCluster::start().await;
    cluster.set_status(503);
    let server = Server::start(&[], &[&cluster], |_| {}).await;
    let response = client()
        .get(server.url("SEP00AABBCCDDEE.cnf.xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["cache-control"], "no-store");

    // With curl too.
    let (status, headers, _) = curl_async(vec![server.url("SEP00AABBCCDDEE.cnf.xml")]).await;
    assert_eq!(status, 503);
    assert_eq!(header(&headers, "retry-after"), Some("1"));
}

/// CUCM's proxy answers 503 at once and searches in the background; the
/// phone's TFTP retry finds the answer in the table. Here: the cluster
/// answers after 1.5 s, `fetch_wait` is 300 ms.
#[tokio::test]
async fn slow_fetch_gives_503_then_tftp_is_served_from_cache() {
    let cnf = b"<device>slow cluster</device>".to_vec();
    let cluster = HttpCluster::start().await;
    cluster.put("SEP001122AABBCC.cnf.xml", cnf.clone());
    cluster.set_delay(Duration::from_millis(1500));
    let server = Server::start(&[], &[&cluster], |config| {
        config.http.as_mut().unwrap().fetch_wait = Duration::from_millis(300);
    })
    .await;

    let started = Instant::now();
    let response = client()
        .get(server.url("SEP001122AABBCC.cnf.xml"))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(300) + MARGIN,
        "answered after {waited:?}"
    );

    // The phone falls back to TFTP (a TFTP client waits for the fetch that
    // is already under way, or finds it in the cache).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let download = get(
        server.tftp(),
        "SEP001122AABBCC.cnf.xml",
        &GetOptions::default(),
    )
    .await
    .expect("TFTP get");
    assert_eq!(download.data, cnf);
    assert_eq!(cluster.requests_for("SEP001122AABBCC.cnf.xml"), 1);

    // And HTTP now answers at once from the cache.
    let started = Instant::now();
    let response = client()
        .get(server.url("SEP001122AABBCC.cnf.xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < MARGIN, "{:?}", started.elapsed());
    assert_eq!(response.bytes().await.unwrap(), cnf);
    assert_eq!(cluster.requests_for("SEP001122AABBCC.cnf.xml"), 1);

    let metrics = server.daemon.metrics().encode();
    assert!(
        metrics.contains("tftproxy_http_fetch_wait_expired_total 1"),
        "{metrics}"
    );
}

/// A request from another tftproxy (our `Via`) is never forwarded.
#[tokio::test]
async fn via_from_a_proxy_is_answered_locally_only() {
    let cluster = HttpCluster::start().await;
    cluster.put("SEP0000000000AA.cnf.xml", "<remote/>");
    let server = Server::start(&[("local.xml", b"here".to_vec())], &[&cluster], |_| {}).await;
    let client = client();

    let response = client
        .get(server.url("SEP0000000000AA.cnf.xml"))
        .header("via", VIA)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(cluster.requests(), 0);

    // Another proxy in the chain before ours still counts.
    let response = client
        .get(server.url("SEP0000000000AA.cnf.xml"))
        .header("via", format!("1.0 squid, {VIA}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(cluster.requests(), 0);

    // Local files are still served to a proxy.
    let response = client
        .get(server.url("local.xml"))
        .header("via", VIA)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), "here");

    // A phone (no Via) gets it from the cluster...
    let response = client
        .get(server.url("SEP0000000000AA.cnf.xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(cluster.requests(), 1);
    // ...and then a proxy gets it from the cache.
    let response = client
        .get(server.url("SEP0000000000AA.cnf.xml"))
        .header("via", VIA)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), "<remote/>");
    assert_eq!(cluster.requests(), 1);
}

// ---- bounds ----------------------------------------------------------------------------

/// With `max_connections = 1`, a second connection waits until the first
/// one closes.
#[tokio::test]
async fn connections_are_capped() {
    let server = Server::start(&[("a.xml", b"a".to_vec())], &[], |config| {
        config.http.as_mut().unwrap().max_connections = 1;
    })
    .await;
    let addr = server.http();
    // The first connection is open and idle.
    let first = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.daemon.http_connections(), 1);

    let url = server.url("a.xml");
    let second = tokio::spawn(async move { client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!second.is_finished(), "the second connection was served");

    drop(first);
    let response = tokio::time::timeout(MARGIN * 2, second)
        .await
        .expect("served once the first connection closed")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// A client that sends half a request head is cut off after the header
/// read time-out and gives its slot back.
#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    let server = Server::start(&[], &[], |_| {}).await;
    let addr = server.http();
    let stream = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /a.xml HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        stream
            .set_read_timeout(Some(tftproxy::http::HEADER_READ_TIMEOUT + MARGIN * 2))
            .unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        let result = stream.read_to_end(&mut buf);
        (started.elapsed(), result.map(|_| buf))
    });
    let (elapsed, result) = stream.await.unwrap();
    // Closed (possibly with a 408 first), not left hanging.
    let answer = result.expect("the server closed the connection");
    assert!(
        answer.is_empty() || String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(elapsed >= tftproxy::http::HEADER_READ_TIMEOUT - Duration::from_millis(500));
    // The slot is given back as the connection task ends.
    let deadline = Instant::now() + MARGIN;
    while server.daemon.http_connections() != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.daemon.http_connections(), 0);
}

/// Oversized request heads get 431, not unbounded buffering.
#[tokio::test]
async fn huge_headers_are_refused() {
    let server = Server::start(&[("a.xml", b"a".to_vec())], &[], |_| {}).await;
    let response = client()
        .get(server.url("a.xml"))
        .header("x-filler", "f".repeat(64 * 1024))
        .send()
        .await;
    match response {
        Ok(response) => assert_eq!(response.status(), 431),
        // hyper may close before the client finished sending.
        Err(error) => assert!(error.is_request() || error.is_connect(), "{error}"),
    }
}

/// The HTTP front is optional: without `[http]`, nothing listens.
#[tokio::test]
async fn no_http_section_no_listener() {
    let server = Server::start(&[], &[], |config| config.http = None).await;
    assert!(server.daemon.http_addrs().is_empty());
}

/// Reloading with another HTTP address binds the new one and lets the old
/// one go; the same address is kept as it is.
#[tokio::test]
async fn reload_rebinds_changed_http_addresses() {
    let server = Server::start(&[("a.xml", b"a".to_vec())], &[], |_| {}).await;
    let before = server.http();
    let mut config = server.daemon.config();
    config.tftp.max_transfers = 10; // an unrelated change keeps the socket
    server.daemon.reload(config.clone()).unwrap();
    assert_eq!(server.daemon.http_addrs(), vec![before]);

    config.http.as_mut().unwrap().listen = vec!["[::1]:0".parse().unwrap()];
    server.daemon.reload(config.clone()).unwrap();
    let after = server.daemon.http_addrs();
    assert_eq!(after.len(), 1);
    assert!(after[0].is_ipv6());
    let response = client()
        .get(format!("http://{}/a.xml", after[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(before).await.is_err(),
        "the old address still accepts"
    );

    // An address that cannot be bound: the reload fails, nothing changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.http.as_mut().unwrap().listen = vec![taken.local_addr().unwrap()];
    assert!(server.daemon.reload(config.clone()).is_err());
    assert_eq!(server.daemon.http_addrs(), after);

    config.http = None;
    server.daemon.reload(config).unwrap();
    assert!(server.daemon.http_addrs().is_empty());
}
