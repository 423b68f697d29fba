//! The HTTP front end (port 6970) on loopback, asked with the `curl` binary
//! and with reqwest: local files (memory and streamed disk bodies), 404,
//! 403, 503 with `Retry-After`, HEAD, `Content-Length`, the wait-then-503
//! path followed by a TFTP hit from the cache, the loop guard (`Via`), and
//! the connection and size bounds.

mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use support::daemon::{cluster_config, http_client, TestDaemon, TestDaemonBuilder};
use support::http_cluster::HttpCluster;
use support::pattern;
use tftproxy::client::{get, GetOptions};
use tftproxy::via::ViaId;

/// Scheduling slack on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(1500);

/// TFTP and HTTP on loopback; `clusters` are the clusters `cluster-1`, … in
/// that order.
fn http_front(clusters: &[&HttpCluster]) -> TestDaemonBuilder {
    let clusters = clusters
        .iter()
        .enumerate()
        .map(|(i, c)| cluster_config(&format!("cluster-{}", i + 1), vec![c.base_url()]))
        .collect();
    TestDaemon::builder()
        .http()
        .remote_timeouts(Duration::from_millis(500), Duration::from_secs(5))
        .clusters(clusters)
}

fn client() -> reqwest::Client {
    http_client(Duration::from_secs(20))
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
    let server = http_front(&[])
        .file("SEP001122334455.cnf.xml", &cnf)
        .start()
        .await;

    let url = server.http_url("SEP001122334455.cnf.xml");
    let (status, headers, body) = curl_async(vec![url.clone()]).await;
    assert_eq!(status, 200);
    assert_eq!(body, cnf);
    assert_eq!(
        header(&headers, "content-length"),
        Some(cnf.len().to_string().as_str())
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));

    // HEAD: the length, no body.
    let (status, headers, body) = curl_async(vec!["-I".into(), url]).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-length"),
        Some(cnf.len().to_string().as_str())
    );
    assert!(body.is_empty() || String::from_utf8_lossy(&body).starts_with("HTTP/1.1 200"));

    // Other case, a leading slash (the 7942 asks `/mk-sip.jar`), percent-encoding.
    let (status, _, body) = curl_async(vec![server.http_url("/sep001122334455.CNF.xml")]).await;
    assert_eq!(status, 200);
    assert_eq!(body, cnf);
    let (status, _, body) = curl_async(vec![server.http_url("SEP001122334455%2Ecnf.xml")]).await;
    assert_eq!(status, 200);
    assert_eq!(body, cnf);

    let (status, headers, _) = curl_async(vec![server.http_url("CTLSEP001122334455.tlv")]).await;
    assert_eq!(status, 404);
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));

    // A traversal is refused with 403 and never served.
    let traversal = server.http_url("../../etc/passwd");
    let (status, _, _) = curl_async(vec!["--path-as-is".into(), traversal]).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_streams_a_large_disk_file_byte_exact() {
    let firmware = pattern(6 * 1024 * 1024 + 123, 7);
    let server = http_front(&[])
        .file("cmterm-88xx.sbn", &firmware)
        .start()
        .await;
    let (status, headers, body) = curl_async(vec![server.http_url("cmterm-88xx.sbn")]).await;
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
    let server = http_front(&[])
        .file("Ringlist.xml", &small)
        .file("big.loads", &big)
        .start()
        .await;
    let client = client();

    let response = server.http_get(&client, "Ringlist.xml").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(small.len() as u64));
    assert_eq!(response.bytes().await.unwrap(), small);

    let response = server.http_get(&client, "big.loads").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(big.len() as u64));
    assert!(response.bytes().await.unwrap() == big);

    let response = client
        .head(server.http_url("big.loads"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"].to_str().unwrap(),
        big.len().to_string()
    );
    assert!(response.bytes().await.unwrap().is_empty());

    let response = server.http_get(&client, "nope.xml").await;
    assert_eq!(response.status(), 404);
    let response = client
        .head(server.http_url("nope.xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // `\` becomes `/`: a traversal in disguise.
    let response = server.http_get(&client, "..%5C..%5Cetc%5Cpasswd").await;
    assert_eq!(response.status(), 403);
    // A control character.
    let response = server.http_get(&client, "a%01b.xml").await;
    assert_eq!(response.status(), 403);

    // Not UTF-8.
    let response = server.http_get(&client, "%ff.xml").await;
    assert_eq!(response.status(), 400);

    let response = client
        .post(server.http_url("Ringlist.xml"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");

    let long = "a".repeat(2000);
    let response = server.http_get(&client, &long).await;
    assert_eq!(response.status(), 414);

    // Several requests on one keep-alive connection.
    for _ in 0..5 {
        let response = server.http_get(&client, "Ringlist.xml").await;
        assert_eq!(response.bytes().await.unwrap(), small);
    }
}

#[tokio::test]
async fn found_on_a_cluster_is_served_over_http() {
    let cluster = HttpCluster::start().await;
    cluster.put("SEP00AABBCCDDEE.cnf.xml", "<remote/>");
    let server = http_front(&[&cluster]).start().await;
    let response = server.http_get(&client(), "SEP00AABBCCDDEE.cnf.xml").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(9));
    assert_eq!(response.bytes().await.unwrap(), "<remote/>");
    assert_eq!(cluster.requests_for("SEP00AABBCCDDEE.cnf.xml"), 1);
    // Our upstream request says it comes from a tftproxy.
    // Our upstream request names this instance (the host name by default).
    assert_eq!(
        cluster.last_header("via"),
        Some(ViaId::from_host_name().to_string())
    );
}

#[tokio::test]
async fn busy_cluster_gives_503_with_retry_after() {
    let cluster = HttpCluster::start().await;
    cluster.set_status(503);
    let server = http_front(&[&cluster]).start().await;
    let response = server.http_get(&client(), "SEP00AABBCCDDEE.cnf.xml").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["cache-control"], "no-store");

    // With curl too.
    let (status, headers, _) = curl_async(vec![server.http_url("SEP00AABBCCDDEE.cnf.xml")]).await;
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
    let server = http_front(&[&cluster])
        .tweak(|config| config.http.as_mut().unwrap().fetch_wait = Duration::from_millis(300))
        .start()
        .await;

    let started = Instant::now();
    let response = server.http_get(&client(), "SEP001122AABBCC.cnf.xml").await;
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
        server.tftp_v4(),
        "SEP001122AABBCC.cnf.xml",
        &GetOptions::default(),
    )
    .await
    .expect("TFTP get");
    assert_eq!(download.data, cnf);
    assert_eq!(cluster.requests_for("SEP001122AABBCC.cnf.xml"), 1);

    // And HTTP now answers at once from the cache.
    let started = Instant::now();
    let response = server.http_get(&client(), "SEP001122AABBCC.cnf.xml").await;
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

/// GETs `url` as a proxy would, with `via` as its `Via` header.
async fn get_via(client: &reqwest::Client, url: String, via: &str) -> reqwest::Response {
    client.get(url).header("via", via).send().await.unwrap()
}

/// A request whose `Via` already names this instance is a loop: answered
/// from local files and caches only, and the response says so.
#[tokio::test]
async fn a_via_naming_this_instance_is_answered_locally_only() {
    let cluster = HttpCluster::start().await;
    cluster.put("SEP0000000000AA.cnf.xml", "<remote/>");
    let server = http_front(&[&cluster])
        .file("local.xml", b"here")
        .tweak(|config| config.http.as_mut().unwrap().via_id = Some("front".into()))
        .start()
        .await;
    let client = client();
    let ours = "1.1 tftproxy-front";

    let response = get_via(&client, server.http_url("SEP0000000000AA.cnf.xml"), ours).await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["tftproxy-partial"], "loop");
    assert_eq!(response.headers()["via"], ours);
    assert_eq!(cluster.requests(), 0);

    // Anywhere in the chain, in any case, with a port and a comment.
    let chain = "1.0 squid, 1.1 TFTProxy-Front:6970 (tftproxy/0.1.0), 1.1 tftproxy-site";
    let response = get_via(&client, server.http_url("SEP0000000000AA.cnf.xml"), chain).await;
    assert_eq!(response.status(), 404);
    assert_eq!(cluster.requests(), 0);

    // A comment with a non-ASCII byte (obs-text) does not hide the hop.
    let obs_text =
        reqwest::header::HeaderValue::from_bytes(b"1.1 tftproxy-front (caf\xe9)").unwrap();
    let response = client
        .get(server.http_url("SEP0000000000AA.cnf.xml"))
        .header("via", obs_text)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(cluster.requests(), 0);

    // Local files are still served to a looped request.
    let response = get_via(&client, server.http_url("local.xml"), ours).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["tftproxy-source"], "local");
    assert_eq!(response.bytes().await.unwrap(), "here");

    // A phone (no Via) gets it from the cluster...
    let response = server.http_get(&client, "SEP0000000000AA.cnf.xml").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["tftproxy-source"], "cluster:cluster-1");
    assert_eq!(cluster.requests(), 1);
    // ...and then a looped request gets it from the cache.
    let response = get_via(&client, server.http_url("SEP0000000000AA.cnf.xml"), ours).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["tftproxy-source"], "cache:cluster-1");
    assert_eq!(response.bytes().await.unwrap(), "<remote/>");
    assert_eq!(cluster.requests(), 1);

    let metrics = server.daemon.metrics().encode();
    assert!(
        metrics.contains("tftproxy_loops_detected_total 4"),
        "{metrics}"
    );
}

/// Another instance's entry, or an old tftproxy's `1.1 tftproxy`, is one
/// hop of a chain: the request is forwarded with the chain and our entry.
#[tokio::test]
async fn a_chain_of_other_hops_is_forwarded_with_our_entry() {
    let cluster = HttpCluster::start().await;
    cluster.put("SEP0000000000AA.cnf.xml", "<remote/>");
    let server = http_front(&[&cluster])
        .tweak(|config| config.http.as_mut().unwrap().via_id = Some("front".into()))
        .start()
        .await;
    let response = get_via(
        &client(),
        server.http_url("SEP0000000000AA.cnf.xml"),
        "1.1 tftproxy (tftproxy/0.0.9), 1.1 squid",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["server"]
        .to_str()
        .unwrap()
        .starts_with("tftproxy/"));
    assert_eq!(response.bytes().await.unwrap(), "<remote/>");
    assert_eq!(
        cluster.last_header("via").as_deref(),
        Some("1.1 tftproxy (tftproxy/0.0.9), 1.1 squid, 1.1 tftproxy-front")
    );
}

// ---- bounds ----------------------------------------------------------------------------

/// With `max_connections = 1`, a second connection waits until the first
/// one closes.
#[tokio::test]
async fn connections_are_capped() {
    let server = http_front(&[])
        .file("a.xml", b"a")
        .tweak(|config| config.http.as_mut().unwrap().max_connections = 1)
        .start()
        .await;
    let addr = server.http_addr();
    // The first connection is open and idle.
    let first = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.daemon.http_connections(), 1);

    let url = server.http_url("a.xml");
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
    let server = http_front(&[]).start().await;
    let addr = server.http_addr();
    let stream = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /a.xml HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        stream
            .set_read_timeout(Some(
                tftproxy::front::conn::HEADER_READ_TIMEOUT + MARGIN * 2,
            ))
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
    assert!(elapsed >= tftproxy::front::conn::HEADER_READ_TIMEOUT - Duration::from_millis(500));
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
    let server = http_front(&[]).file("a.xml", b"a").start().await;
    let response = client()
        .get(server.http_url("a.xml"))
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
    let server = http_front(&[])
        .tweak(|config| config.http = None)
        .start()
        .await;
    assert!(server.daemon.http_addrs().is_empty());
}

/// Reloading with another HTTP address binds the new one and lets the old
/// one go; the same address is kept as it is.
#[tokio::test]
async fn reload_rebinds_changed_http_addresses() {
    let server = http_front(&[]).file("a.xml", b"a").start().await;
    let before = server.http_addr();
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

/// `curl -r` resumes a firmware download: `206` with `Content-Range` and
/// exactly the bytes asked, from a streamed disk body (over 256 KiB) and a
/// memory body; a range past the end is `416` naming the length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ranges_are_served_for_resumed_downloads() {
    let firmware = pattern(700_000, 7);
    let small = pattern(1000, 8);
    let server = http_front(&[])
        .file("firmware.loads", &firmware)
        .file("small.xml", &small)
        .start()
        .await;
    let url = |name: &str| server.http_url(name);

    let (status, headers, body) =
        curl_async(vec!["-r".into(), "0-99".into(), url("firmware.loads")]).await;
    assert_eq!(status, 206);
    assert_eq!(body, &firmware[..100]);
    assert_eq!(header(&headers, "content-range"), Some("bytes 0-99/700000"));
    assert_eq!(header(&headers, "content-length"), Some("100"));

    let (status, headers, body) =
        curl_async(vec!["-r".into(), "500000-".into(), url("firmware.loads")]).await;
    assert_eq!(status, 206);
    assert_eq!(body, &firmware[500_000..]);
    assert_eq!(
        header(&headers, "content-range"),
        Some("bytes 500000-699999/700000")
    );

    let (status, _, body) = curl_async(vec!["-r".into(), "-10".into(), url("small.xml")]).await;
    assert_eq!(status, 206);
    assert_eq!(body, &small[990..]);

    let (status, headers, body) = curl_async(vec![url("small.xml")]).await;
    assert_eq!(status, 200);
    assert_eq!(body, small);
    assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));

    let response = client()
        .get(url("small.xml"))
        .header("Range", "bytes=5000-")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);
    assert_eq!(
        response.headers()["content-range"].to_str().unwrap(),
        "bytes */1000"
    );
}
