//! Client allow-lists: `tftp.allow` (others get no answer at all) and
//! `http.allow` (others get 403), IPv4 and IPv6, counted in
//! `tftproxy_client_refusals_total{reason="not_allowed"}`, applied on
//! reload.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tftproxy::config::AllowList;

use crate::support::daemon::{http_client, TestDaemon};
use crate::{bind, first_reply, get_from, metric, quick, rrq, SILENCE};

const FILE: &str = "SEP001122334455.cnf.xml";
const CONTENT: &[u8] = b"<device/>";
const TFTP_DENIED: &str = r#"tftproxy_client_refusals_total{front="tftp",reason="not_allowed"}"#;
const HTTP_DENIED: &str = r#"tftproxy_client_refusals_total{front="http",reason="not_allowed"}"#;

fn allow(prefixes: &[&str]) -> AllowList {
    AllowList::new(prefixes.iter().map(|p| p.parse::<IpNet>().unwrap()))
}

/// Whether a TFTP read from `source` is answered at all (one RRQ, then
/// [`SILENCE`]).
async fn tftp_answers(server: &TestDaemon, source: &str) -> bool {
    let addr = if source.contains(':') {
        server.tftp_v6()
    } else {
        server.tftp_v4()
    };
    let socket = bind(source).await;
    socket.send_to(&rrq(FILE), addr).await.unwrap();
    first_reply(&socket, SILENCE).await.is_some()
}

#[tokio::test]
async fn tftp_strangers_get_no_answer_v4_and_v6_and_a_reload_applies() {
    let server = TestDaemon::builder()
        .tftp_ipv6()
        .file(FILE, CONTENT)
        .tweak(|config| config.tftp.allow = allow(&["127.0.0.2/32", "::1/128"]))
        .start()
        .await;
    let download = get_from("127.0.0.2", server.tftp_v4(), FILE, &quick()).await;
    assert_eq!(download.unwrap().data, CONTENT);
    let download = get_from("::1", server.tftp_v6(), FILE, &quick()).await;
    assert_eq!(download.unwrap().data, CONTENT);

    assert!(
        !tftp_answers(&server, "127.0.0.3").await,
        "127.0.0.3 answered"
    );
    assert_eq!(metric(&server, TFTP_DENIED), 1.0);

    // Reloaded: IPv6 loopback out, 127.0.0.0/8 in.
    let mut config = server.daemon.config();
    config.tftp.allow = allow(&["127.0.0.0/8"]);
    server.daemon.reload(config).unwrap();
    assert!(
        !tftp_answers(&server, "::1").await,
        "::1 answered after the reload"
    );
    assert_eq!(metric(&server, TFTP_DENIED), 2.0);
    let download = get_from("127.0.0.3", server.tftp_v4(), FILE, &quick()).await;
    assert_eq!(download.unwrap().data, CONTENT);

    // Empty: everyone.
    let mut config = server.daemon.config();
    config.tftp.allow = AllowList::default();
    server.daemon.reload(config).unwrap();
    assert!(tftp_answers(&server, "::1").await);
}

#[tokio::test]
async fn http_strangers_get_403_v4_and_v6_and_a_reload_applies() {
    let server = TestDaemon::builder()
        .http()
        .file(FILE, CONTENT)
        .tweak(|config| {
            let http = config.http.as_mut().unwrap();
            http.listen.push("[::1]:0".parse().unwrap());
            http.allow = allow(&["127.0.0.2/32", "::1/128"]);
        })
        .start()
        .await;
    let status = |source: &'static str| {
        let server = &server;
        async move {
            let source: IpAddr = source.parse().unwrap();
            let front = server.daemon.http_addrs()[if source.is_ipv4() { 0 } else { 1 }];
            let client = reqwest::Client::builder()
                .no_proxy()
                .local_address(source)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let response = client
                .get(format!("http://{front}/{FILE}"))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            if status == 200 {
                assert_eq!(response.bytes().await.unwrap(), CONTENT);
            }
            status
        }
    };
    assert_eq!(status("127.0.0.2").await, 200);
    assert_eq!(status("::1").await, 200);
    assert_eq!(status("127.0.0.3").await, 403);
    assert_eq!(metric(&server, HTTP_DENIED), 1.0);

    let mut config = server.daemon.config();
    config.http.as_mut().unwrap().allow = allow(&["127.0.0.3/32"]);
    server.daemon.reload(config).unwrap();
    assert_eq!(status("::1").await, 403);
    assert_eq!(status("127.0.0.2").await, 403);
    assert_eq!(status("127.0.0.3").await, 200);
    assert_eq!(metric(&server, HTTP_DENIED), 3.0);
    // The default client (127.0.0.1) is a stranger too.
    let response = server
        .http_get(&http_client(Duration::from_secs(10)), FILE)
        .await;
    assert_eq!(response.status(), 403);
}
