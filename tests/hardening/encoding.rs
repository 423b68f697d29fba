//! Correct bytes only: a cluster answering with a `Content-Encoding` other
//! than `identity` (we ask for `identity`) is a failed address; its bytes
//! are never served nor cached, over TFTP or HTTP.

use std::time::Duration;

use crate::support::daemon::{cluster_config, http_client, TestDaemon};
use crate::support::http_cluster::HttpCluster;
use crate::{get_from, quick, server_error};

const PLAIN: &[u8] = b"<device><loadInformation>SIP88xx.14-1-1</loadInformation></device>";

/// `PLAIN`, gzip-compressed (what a misconfigured web server in front of a
/// cluster sends although we ask for `identity`).
const GZIPPED: &[u8] = &[
    31, 139, 8, 0, 0, 0, 0, 0, 2, 3, 179, 73, 73, 45, 203, 76, 78, 181, 179, 201, 201, 79, 76, 241,
    204, 75, 203, 47, 202, 77, 44, 201, 204, 207, 179, 11, 246, 12, 176, 176, 168, 168, 208, 51,
    52, 209, 53, 212, 53, 180, 209, 71, 151, 183, 209, 135, 234, 4, 0, 81, 78, 100, 223, 66, 0, 0,
    0,
];

const TFTP_NAME: &str = "SEP001122334455.cnf.xml";
const HTTP_NAME: &str = "SEP00112233AABB.cnf.xml";

async fn gzip_server() -> HttpCluster {
    let server = HttpCluster::with_files([(TFTP_NAME, GZIPPED), (HTTP_NAME, GZIPPED)]).await;
    server.set_content_encoding("gzip");
    server
}

#[tokio::test]
async fn a_gzip_body_is_never_served_and_the_next_address_is_used() {
    let gzip = gzip_server().await;
    let good = HttpCluster::with_files([(TFTP_NAME, PLAIN), (HTTP_NAME, PLAIN)]).await;
    let server = TestDaemon::builder()
        .http()
        .remote_timeouts(Duration::from_millis(500), Duration::from_secs(5))
        .clusters(vec![cluster_config(
            "cluster-1",
            vec![gzip.base_url(), good.base_url()],
        )])
        .start()
        .await;

    let download = get_from("127.0.0.1", server.tftp_v4(), TFTP_NAME, &quick())
        .await
        .unwrap();
    assert_eq!(download.data, PLAIN);
    assert_eq!(
        gzip.requests_for(TFTP_NAME),
        1,
        "the gzip address was asked"
    );
    assert_eq!(good.requests_for(TFTP_NAME), 1, "then the next address");

    let response = server
        .http_get(&http_client(Duration::from_secs(20)), HTTP_NAME)
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-encoding").is_none());
    assert_eq!(response.bytes().await.unwrap(), PLAIN);
    assert_eq!(gzip.requests_for(HTTP_NAME), 1);
    assert_eq!(good.requests_for(HTTP_NAME), 1);
}

#[tokio::test]
async fn a_cluster_that_only_sends_gzip_is_retry_later_and_nothing_is_cached() {
    let gzip = gzip_server().await;
    let server = TestDaemon::builder()
        .http()
        .remote_timeouts(Duration::from_millis(500), Duration::from_secs(5))
        .clusters(vec![cluster_config("cluster-1", vec![gzip.base_url()])])
        .start()
        .await;
    let client = http_client(Duration::from_secs(20));
    for round in 1..=2 {
        let (code, message) =
            server_error(get_from("127.0.0.1", server.tftp_v4(), TFTP_NAME, &quick()).await);
        assert_eq!(
            (code, message.as_str()),
            (0, "busy, retry later"),
            "round {round}"
        );
        let response = server.http_get(&client, HTTP_NAME).await;
        assert_eq!(response.status(), 503, "round {round}");
        assert_ne!(response.bytes().await.unwrap(), GZIPPED);
        // Not cached: every request asks the cluster again.
        assert_eq!(gzip.requests_for(TFTP_NAME), round);
        assert_eq!(gzip.requests_for(HTTP_NAME), round);
    }
}
