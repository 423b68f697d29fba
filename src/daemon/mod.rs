//! The daemon: binds every front from the configuration, shares one
//! resolver and one set of metrics between them, applies reloads and stops
//! gracefully (ARCHITECTURE.md, "Lifecycle").
//!
//! [`Daemon::start`] is what `tftproxy serve` runs ([`run`], with the
//! signal handling) and what integration tests start in-process (with port
//! 0 listeners: [`Daemon::tftp_addrs`], [`Daemon::http_addrs`] and
//! [`Daemon::admin_addr`] tell the ports actually bound).
//!
//! The daemon owns the listeners (one `ListenerHandle` each; dropping it
//! stops the listener). The work they start is tracked by the fronts: the
//! TFTP front's transfers and the HTTP front's connections are task sets
//! ([`tokio_util::task::TaskTracker`]) that shutdown closes and waits for.

mod listeners;
mod serve;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::config::{Config, HttpConfig, TlsRelayConfig};
use crate::front::admin::{self, AdminState};
use crate::front::admin_auth::{AdminAuth, AdminToken};
use crate::front::http::HttpFront;
use crate::front::tftp::TftpFront;
use crate::front::tls_relay::TlsRelay;
use crate::front::ListenerHandle;
use crate::metrics::{Metrics, ReloadLabels, ReloadResult};
use crate::resolve::{Resolver, ResolverError, ResolverHandle};
use crate::sync::lock;

use listeners::{Bound, Listeners};

pub use serve::run;

/// The daemon could not start, or a reload could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        // Not `source`: the message says it already (see ConfigError::Read).
        error: std::io::Error,
    },
    #[error(transparent)]
    Resolver(#[from] ResolverError),
    #[error("admin.token_file: file {path} {message}")]
    AdminToken {
        path: std::path::PathBuf,
        message: String,
    },
}

/// A running daemon.
pub struct Daemon {
    config: Mutex<Config>,
    resolver: ResolverHandle,
    metrics: Arc<Metrics>,
    tftp: Arc<TftpFront>,
    http: Arc<HttpFront>,
    tls_relay: Arc<TlsRelay>,
    listeners: Mutex<Listeners>,
    started: Instant,
    /// Set once every listener serves (the admin `/readyz`).
    ready: Arc<AtomicBool>,
    /// The admin token in force, read at start and at each reload.
    admin_auth: AdminAuth,
    /// Stops the periodic save of the cache tables when the daemon goes.
    _persist: tokio_util::sync::DropGuard,
}

impl Daemon {
    /// Binds every listener and starts serving.
    pub async fn start(config: Config) -> Result<Arc<Daemon>, DaemonError> {
        let metrics = Arc::new(Metrics::new());
        let admin_auth = Arc::new(ArcSwapOption::from(admin_token(&config)?));
        let resolver = ResolverHandle::new(Resolver::new(&config, metrics.clone())?);
        // Bind every socket before serving on any.
        let bound = Bound::new(&config, &Listeners::default())?;
        let tftp = TftpFront::new(&config.tftp, resolver.clone(), metrics.clone());
        let http = HttpFront::new(http_settings(&config), resolver.clone(), metrics.clone());
        let tls_relay = TlsRelay::new(
            relay_settings(&config),
            config.remote.connect_timeout,
            resolver.clone(),
            metrics.clone(),
        );
        let persist = tokio_util::sync::CancellationToken::new();
        tokio::spawn(persist_every_minute(resolver.clone(), persist.clone()));
        let daemon = Arc::new(Daemon {
            config: Mutex::new(config),
            resolver,
            metrics,
            tftp,
            http,
            tls_relay,
            listeners: Mutex::new(Listeners::default()),
            started: Instant::now(),
            ready: Arc::new(AtomicBool::new(false)),
            admin_auth,
            _persist: persist.drop_guard(),
        });
        let config = daemon.config();
        let mut listeners = lock(&daemon.listeners);
        let fronts = (&daemon.tftp, &daemon.http, &daemon.tls_relay);
        listeners.apply(&config, bound, fronts, || daemon.admin_state());
        drop(listeners);
        // The caches live in memory: loaded as soon as they exist.
        daemon.ready.store(true, Ordering::Release);
        Ok(daemon)
    }

    /// What the admin front reads.
    fn admin_state(&self) -> AdminState {
        AdminState {
            resolver: self.resolver.clone(),
            metrics: self.metrics.clone(),
            http_connections: self.http.connections().clone(),
            started: self.started,
            ready: self.ready.clone(),
            auth: self.admin_auth.clone(),
        }
    }

    /// The TFTP addresses actually bound (ports resolved).
    pub fn tftp_addrs(&self) -> Vec<SocketAddr> {
        lock(&self.listeners).tftp.iter().map(|l| l.bound).collect()
    }

    /// The HTTP front's addresses actually bound (empty without `[http]`).
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        lock(&self.listeners).http.iter().map(|l| l.bound).collect()
    }

    /// The secure-config relay's addresses actually bound (empty without
    /// `[tls_relay]`).
    pub fn tls_relay_addrs(&self) -> Vec<SocketAddr> {
        lock(&self.listeners)
            .tls_relay
            .iter()
            .map(|l| l.bound)
            .collect()
    }

    /// The admin front's address actually bound (without `[admin]`: none).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        lock(&self.listeners).admin.as_ref().map(|a| a.bound)
    }

    /// HTTP connections open now.
    pub fn http_connections(&self) -> usize {
        self.http.connections().len()
    }

    /// TFTP transfers sending now, whatever configuration they started
    /// under (lookups still waiting on the clusters are not transfers).
    pub fn active_transfers(&self) -> usize {
        self.metrics.active_transfers.get().max(0) as usize
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn resolver(&self) -> &ResolverHandle {
        &self.resolver
    }

    pub fn config(&self) -> Config {
        lock(&self.config).clone()
    }

    /// Applies a new configuration without dropping transfers in flight.
    /// On error nothing changes and the running configuration stays.
    pub fn reload(&self, new: Config) -> Result<(), DaemonError> {
        let result = self.try_reload(new);
        let result_label = if result.is_ok() {
            ReloadResult::Applied
        } else {
            ReloadResult::Rejected
        };
        self.metrics
            .config_reloads
            .get_or_create(&ReloadLabels {
                result: result_label,
            })
            .inc();
        result
    }

    fn try_reload(&self, new: Config) -> Result<(), DaemonError> {
        // Caches, home tables and cluster status carry over where they
        // still apply.
        let resolver = Resolver::reconfigure(&new, &self.resolver.current())?;
        let admin_token = admin_token(&new)?;
        let mut listeners = lock(&self.listeners);
        // New addresses are bound before anything changes (and before the
        // old ones are let go).
        let bound = Bound::new(&new, &listeners)?;
        // Every socket is bound: nothing below can fail.
        self.resolver.replace(resolver);
        self.admin_auth.store(admin_token);
        self.tftp.update(&new.tftp);
        self.http.update(http_settings(&new));
        self.tls_relay
            .update(relay_settings(&new), new.remote.connect_timeout);
        let fronts = (&self.tftp, &self.http, &self.tls_relay);
        listeners.apply(&new, bound, fronts, || self.admin_state());
        *lock(&self.config) = new;
        Ok(())
    }

    /// Stops accepting requests and waits up to `grace` for transfers and
    /// HTTP connections to end; returns how many were still running. The
    /// admin front answers until the end.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let admin = {
            let mut listeners = lock(&self.listeners);
            listeners.tftp.clear(); // dropping a handle stops its listener
            listeners.http.clear(); // and tells its connections to close
            listeners.tls_relay.clear();
            listeners.admin.take()
        };
        let (transfers, connections) = (self.tftp.transfers(), self.http.connections());
        let relayed = self.tls_relay.connections();
        transfers.close();
        connections.close();
        relayed.close();
        let all = async { tokio::join!(transfers.wait(), connections.wait(), relayed.wait()) };
        let _ = tokio::time::timeout(grace, all).await;
        // What the persistent cache needs for a warm start.
        self.resolver.current().persist().await;
        drop(admin);
        transfers.len() + connections.len() + relayed.len()
    }

    fn status_line(&self) -> String {
        format!(
            "{} transfers active, {} HTTP connections",
            self.active_transfers(),
            self.http_connections()
        )
    }
}

/// Saves the cache tables every minute until `stop` (a crash loses at most
/// a minute of learned homes; file contents are written as they arrive).
async fn persist_every_minute(resolver: ResolverHandle, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    while stop.run_until_cancelled(tick.tick()).await.is_some() {
        resolver.current().persist().await;
    }
}

/// The settings the HTTP front uses (defaults when there is no `[http]`:
/// there are no HTTP listeners then anyway).
fn http_settings(config: &Config) -> &HttpConfig {
    static DEFAULT: std::sync::OnceLock<HttpConfig> = std::sync::OnceLock::new();
    config
        .http
        .as_ref()
        .unwrap_or_else(|| DEFAULT.get_or_init(HttpConfig::default))
}

/// The settings the relay uses (defaults when there is no `[tls_relay]`:
/// there are no relay listeners then anyway).
fn relay_settings(config: &Config) -> &TlsRelayConfig {
    static DEFAULT: std::sync::OnceLock<TlsRelayConfig> = std::sync::OnceLock::new();
    config
        .tls_relay
        .as_ref()
        .unwrap_or_else(|| DEFAULT.get_or_init(TlsRelayConfig::default))
}

/// The token of `[admin] token_file`, read now (it may have changed since
/// the configuration was checked).
fn admin_token(config: &Config) -> Result<Option<Arc<AdminToken>>, DaemonError> {
    let Some(path) = config.admin.as_ref().and_then(|a| a.token_file.as_ref()) else {
        return Ok(None);
    };
    AdminToken::read(path)
        .map(|token| Some(Arc::new(token)))
        .map_err(|message| DaemonError::AdminToken {
            path: path.clone(),
            message,
        })
}

/// Starts the admin front on a bound listener.
fn start_admin(
    configured: SocketAddr,
    listener: std::net::TcpListener,
    state: AdminState,
) -> Result<ListenerHandle, DaemonError> {
    admin::start(configured, listener, state).map_err(|error| DaemonError::Bind {
        addr: configured,
        error,
    })
}
