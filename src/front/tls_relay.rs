//! The secure-config relay (`[tls_relay]`, ports 6971 and 6972): phones
//! whose trust list allows it fetch their configuration over HTTPS, with
//! TLS that only their cluster can terminate (its TFTP certificate). Each
//! TCP connection is relayed byte for byte, unopened, to the same port on
//! the connecting phone's learned home cluster (its addresses in order).
//! tftproxy never terminates TLS and holds no key: the phone sees the
//! cluster's own certificate.
//!
//! With no learned home the connection is closed at once, so the phone
//! falls back to HTTP 6970 without waiting. Connections are capped
//! (`tls_relay.max_connections`) and closed after `tls_relay.idle_timeout`
//! with no byte either way.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::conn::{accept_until_stopped, start_listener};
use super::slots::Slots;
use super::ListenerHandle;
use crate::config::TlsRelayConfig;
use crate::metrics::{Metrics, RelayLabels, RelayResult};
use crate::resolve::ResolverHandle;

/// Settings a reload may change without rebinding.
#[derive(Clone, Debug)]
struct Settings {
    upstream_port: Option<u16>,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

/// What every relay listener and connection shares, across reloads.
pub(crate) struct TlsRelay {
    resolver: ResolverHandle,
    metrics: Arc<Metrics>,
    settings: ArcSwap<Settings>,
    slots: Slots,
    connections: TaskTracker,
}

impl TlsRelay {
    pub(crate) fn new(
        config: &TlsRelayConfig,
        connect_timeout: Duration,
        resolver: ResolverHandle,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(TlsRelay {
            resolver,
            metrics,
            settings: ArcSwap::from_pointee(settings_of(config, connect_timeout)),
            slots: Slots::new(config.max_connections),
            connections: TaskTracker::new(),
        })
    }

    /// Applies a reloaded `[tls_relay]` (and `remote.connect_timeout`).
    pub(crate) fn update(&self, config: &TlsRelayConfig, connect_timeout: Duration) {
        self.settings
            .store(Arc::new(settings_of(config, connect_timeout)));
        self.slots.resize(config.max_connections);
    }

    /// The relayed connections (to wait for them at shutdown).
    pub(crate) fn connections(&self) -> &TaskTracker {
        &self.connections
    }

    /// Relays connections arriving on `listener` until the handle is dropped.
    pub(crate) fn start(
        self: &Arc<Self>,
        configured: SocketAddr,
        listener: std::net::TcpListener,
    ) -> std::io::Result<ListenerHandle> {
        let relay = self.clone();
        // The cluster port: the one configured (6971, 6972), not the one a
        // port-0 test listener happened to get.
        let port = configured.port();
        start_listener(configured, listener, |listener, stop| async move {
            let slots = &relay.slots;
            accept_until_stopped(listener, "TLS relay", slots, stop, |stream, peer, slot| {
                let this = relay.clone();
                relay
                    .connections
                    .spawn(async move { this.relay(stream, peer, port, slot).await });
            })
            .await;
        })
    }

    async fn relay(
        self: Arc<Self>,
        mut phone: TcpStream,
        peer: SocketAddr,
        arrived_on: u16,
        _slot: OwnedSemaphorePermit,
    ) {
        let client = peer.ip().to_canonical();
        let settings = self.settings.load_full();
        let Some((home, addresses)) = self.resolver.current().home_addresses_of_client(client)
        else {
            // Closing at once sends the phone to HTTP 6970 without a wait.
            debug!(%client, "TLS relay: no learned home cluster; connection closed");
            return self.count(RelayResult::NoHome);
        };
        let port = settings.upstream_port.unwrap_or(arrived_on);
        let Some(mut cluster) = connect_first(&addresses, port, settings.connect_timeout).await
        else {
            info!(%client, cluster = %home, port, "TLS relay: no address of the home cluster answered");
            return self.count(RelayResult::Unreachable);
        };
        self.count(RelayResult::Relayed);
        let _ = phone.set_nodelay(true);
        let _ = cluster.set_nodelay(true);
        let started = Instant::now();
        let ended = relay_until_idle(&mut phone, &mut cluster, settings.idle_timeout).await;
        let ms = started.elapsed().as_millis() as u64;
        match ended {
            Ended::Closed(to_cluster, to_phone) => debug!(%client, cluster = %home, port,
                to_cluster, to_phone, ms, "TLS relay: connection ended"),
            Ended::Broken => debug!(%client, cluster = %home, port, ms,
                "TLS relay: connection broken"),
            Ended::Idle => debug!(%client, cluster = %home, port, ms,
                "TLS relay: idle connection closed (tls_relay.idle_timeout)"),
        }
    }

    fn count(&self, result: RelayResult) {
        self.metrics
            .tls_relay_connections
            .get_or_create(&RelayLabels { result })
            .inc();
    }
}

fn settings_of(config: &TlsRelayConfig, connect_timeout: Duration) -> Settings {
    Settings {
        upstream_port: config.upstream_port,
        idle_timeout: config.idle_timeout,
        connect_timeout,
    }
}

/// The first of the cluster's addresses (base URLs, in order) that accepts
/// a connection on `port`.
async fn connect_first(addresses: &[String], port: u16, timeout: Duration) -> Option<TcpStream> {
    for base_url in addresses {
        let Some(host) = host_of(base_url) else {
            continue;
        };
        let connect = TcpStream::connect((host.as_str(), port));
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(error)) => debug!(%base_url, port, %error, "TLS relay: cannot connect"),
            Err(_) => debug!(%base_url, port, "TLS relay: connect timed out"),
        }
    }
    None
}

/// The host of a cluster base URL (`http://192.0.2.10:6970` → `192.0.2.10`,
/// `http://[2001:db8::1]:6970` → `2001:db8::1`).
fn host_of(base_url: &str) -> Option<String> {
    let url = reqwest::Url::parse(base_url).ok()?;
    let host = url.host_str()?;
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
}

/// How a relayed connection ended.
enum Ended {
    /// A side closed; the bytes relayed towards the cluster and the phone.
    Closed(u64, u64),
    /// A side failed (reset, error).
    Broken,
    /// Nothing moved either way for `tls_relay.idle_timeout`.
    Idle,
}

/// Copies both ways until either side closes or nothing moves for `idle`.
async fn relay_until_idle(phone: &mut TcpStream, cluster: &mut TcpStream, idle: Duration) -> Ended {
    let epoch = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut phone = Activity::new(phone, epoch, last.clone());
    let mut cluster = Activity::new(cluster, epoch, last.clone());
    let copy = tokio::io::copy_bidirectional(&mut phone, &mut cluster);
    tokio::pin!(copy);
    let mut check = tokio::time::interval((idle / 4).max(Duration::from_millis(50)));
    loop {
        tokio::select! {
            copied = &mut copy => {
                return copied.map_or(Ended::Broken, |(up, down)| Ended::Closed(up, down));
            }
            _ = check.tick() => {
                let quiet = epoch.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    return Ended::Idle;
                }
            }
        }
    }
}

/// A stream that notes when bytes last moved through it.
struct Activity<'a> {
    inner: &'a mut TcpStream,
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl<'a> Activity<'a> {
    fn new(inner: &'a mut TcpStream, epoch: Instant, last: Arc<AtomicU64>) -> Self {
        Activity { inner, epoch, last }
    }

    fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Activity<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Activity<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut *self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_cluster_urls() {
        assert_eq!(
            host_of("http://192.0.2.10:6970").as_deref(),
            Some("192.0.2.10")
        );
        assert_eq!(
            host_of("https://[2001:db8::1]:6972/").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            host_of("http://cucm-a.example.com:6970").as_deref(),
            Some("cucm-a.example.com")
        );
        assert_eq!(host_of("not a url"), None);
    }
}
