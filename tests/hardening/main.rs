//! The daemon under abuse (issue 10): only correct bytes are served, the
//! admin API is authenticated, client allow-lists and per-client limits
//! hold, `max_transfers` holds across reloads, and the upstream queues and
//! bodies are bounded.
//!
//! One test binary; the tests are grouped by theme in the modules below, the
//! set-up shared by them lives here.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod allow;
mod encoding;
mod fetch_wait;
mod max_transfers;
mod memory;
mod per_client;
mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use support::daemon::{cluster_config, TestDaemon};
use support::http_cluster::HttpCluster;
use support::server_error;
use tftproxy::client::{get_with_socket, Download, GetError, GetOptions};
use tftproxy::tftp::packet::{Mode, Packet, Request};
use tokio::net::UdpSocket;

/// How long "no answer" is waited for: many times a loopback round trip.
const SILENCE: Duration = Duration::from_millis(1500);

/// Scheduling slack on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(1500);

fn quick() -> GetOptions {
    GetOptions {
        retransmit: Duration::from_millis(300),
        max_retries: 10,
        ..Default::default()
    }
}

/// A phone that does not retransmit while it waits for a slow answer.
fn patient() -> GetOptions {
    GetOptions {
        retransmit: Duration::from_secs(10),
        max_retries: 1,
        ..GetOptions::default()
    }
}

/// A daemon whose only cluster is `cluster` (connect time-out 0.5 s, request
/// 10 s), giving up on it for a phone after `fetch_wait`.
async fn behind(cluster: &HttpCluster, fetch_wait: Duration) -> TestDaemon {
    TestDaemon::builder()
        .remote_timeouts(Duration::from_millis(500), Duration::from_secs(10))
        .clusters(vec![cluster_config("cluster-1", vec![cluster.base_url()])])
        .tweak(move |config| config.tftp.fetch_wait = fetch_wait)
        .start()
        .await
}

/// A TFTP read of `name` from `server`, sent from `source` (port 0).
async fn get_from(
    source: &str,
    server: SocketAddr,
    name: &str,
    options: &GetOptions,
) -> Result<Download, GetError> {
    get_with_socket(&bind(source).await, server, name, options).await
}

/// A UDP socket on `source`, port 0.
async fn bind(source: &str) -> UdpSocket {
    UdpSocket::bind((source.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap()
}

/// An octet-mode RRQ for `name`, encoded.
fn rrq(name: &str) -> Vec<u8> {
    Packet::Rrq(Request {
        filename: name.into(),
        mode: Mode::Octet,
        options: Vec::new(),
    })
    .encode()
}

/// The first datagram `socket` receives within `wait`, decoded.
async fn first_reply(socket: &UdpSocket, wait: Duration) -> Option<Packet> {
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(wait, socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(Packet::decode(&buf[..n]).expect("a TFTP packet"))
}

/// The value of one sample of the daemon's metrics (0 when absent), e.g.
/// `tftproxy_client_refusals_total{front="tftp",reason="not_allowed"}`.
fn metric(server: &TestDaemon, series: &str) -> f64 {
    let text = tftproxy::front::admin::openmetrics_to_prometheus(&server.daemon.metrics().encode());
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}
