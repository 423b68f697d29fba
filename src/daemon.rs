//! The daemon: binds every front end from the configuration, shares one
//! resolver and one set of metrics between them, reloads on SIGHUP and stops
//! gracefully on SIGTERM/SIGINT.
//!
//! [`Daemon::start`] is what `tftproxy serve` runs and what integration tests
//! start in-process (with port 0 listeners: [`Daemon::tftp_addrs`],
//! [`Daemon::http_addrs`] and [`Daemon::admin_addr`] tell the ports actually
//! bound).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tracing::{error, info, warn};

use crate::admin::AdminServer;
use crate::config::{Config, HttpConfig};
use crate::http::{self, HttpListener, HttpShared};
use crate::logging::Logging;
use crate::metrics::{Metrics, ReloadLabels, ReloadResult};
use crate::resolve::{Resolver, SharedResolver};
use crate::shutdown::{self, Trigger};
use crate::systemd;
use crate::tftp::server::{self, Context, Listener, Settings, SharedContext};

/// The TFTP front: listener sockets, and the context they hand requests to.
///
/// A reload keeps the sockets of addresses still configured (requests queued
/// in them are not lost, and a port-0 listener keeps its port) and swaps the
/// context, so new requests get the new settings while running transfers
/// finish under the ones they started with.
struct TftpFront {
    context: SharedContext,
    /// In the order of `tftp.listen`.
    listeners: Vec<TftpListener>,
}

/// One running TFTP listener.
struct TftpListener {
    configured: SocketAddr,
    bound: SocketAddr,
    /// Fired, or dropped, to stop the listener.
    stop: Trigger,
}

/// A running daemon.
pub struct Daemon {
    config: Mutex<Config>,
    resolver: SharedResolver,
    metrics: Arc<Metrics>,
    tftp: Mutex<TftpFront>,
    /// Earlier generations whose transfers may still be running.
    retired: Mutex<Vec<Arc<Context>>>,
    /// Shared by every HTTP listener, across reloads (connection count).
    http: Arc<HttpShared>,
    http_listeners: Mutex<Vec<HttpListener>>,
    admin: Mutex<Option<AdminServer>>,
    started: Instant,
    /// Itself, for the admin front (which must not keep the daemon alive).
    this: std::sync::Weak<Daemon>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        // Not `source`: the message says it already (see ConfigError::Read).
        error: std::io::Error,
    },
    #[error(transparent)]
    Resolver(#[from] crate::resolve::ResolverError),
}

impl Daemon {
    /// Binds every listener and starts serving.
    pub async fn start(config: Config) -> Result<Arc<Daemon>, StartError> {
        let metrics = Arc::new(Metrics::new());
        let resolver: SharedResolver = Arc::new(ArcSwap::from_pointee(Resolver::new(
            &config,
            metrics.clone(),
        )?));
        // Bind every socket before serving on any.
        let tftp_bound = bind_tftp(&config, &[])?;
        let http_bound = bind_http(&config, &[])?;
        let admin_bound = bind_admin(&config, None)?;
        let context: SharedContext = Arc::new(ArcSwap::new(Context::new(
            Settings::from_config(&config.tftp),
            resolver.clone(),
            metrics.clone(),
        )));
        let tftp = TftpFront {
            listeners: start_tftp(&config, Vec::new(), tftp_bound, &context),
            context,
        };
        let http = HttpShared::new(http_settings(&config), resolver.clone(), metrics.clone());
        let http_listeners = start_http(http_bound, &http)?;
        let daemon = Arc::new_cyclic(|this| Daemon {
            config: Mutex::new(config),
            resolver,
            metrics,
            tftp: Mutex::new(tftp),
            retired: Mutex::new(Vec::new()),
            http,
            http_listeners: Mutex::new(http_listeners),
            admin: Mutex::new(None),
            started: Instant::now(),
            this: this.clone(),
        });
        if let Some((configured, listener)) = admin_bound {
            let server =
                AdminServer::start(configured, listener, daemon.this.clone(), daemon.started)
                    .map_err(|error| StartError::Bind {
                        addr: configured,
                        error,
                    })?;
            *lock(&daemon.admin) = Some(server);
        }
        Ok(daemon)
    }

    /// The HTTP front's addresses actually bound (empty without `[http]`).
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        lock(&self.http_listeners).iter().map(|l| l.bound).collect()
    }

    /// The admin front's address actually bound (without `[admin]`: none).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        lock(&self.admin).as_ref().map(|a| a.bound)
    }

    /// HTTP connections open now.
    pub fn http_connections(&self) -> usize {
        self.http.connections()
    }

    /// The TFTP addresses actually bound (ports resolved).
    pub fn tftp_addrs(&self) -> Vec<SocketAddr> {
        lock(&self.tftp).listeners.iter().map(|l| l.bound).collect()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn resolver(&self) -> &SharedResolver {
        &self.resolver
    }

    pub fn config(&self) -> Config {
        lock(&self.config).clone()
    }

    /// TFTP transfers running now, across configuration generations.
    pub fn active_transfers(&self) -> usize {
        let current = lock(&self.tftp).context.load().active_transfers();
        current
            + lock(&self.retired)
                .iter()
                .map(|c| c.active_transfers())
                .sum::<usize>()
    }

    /// Applies a new configuration without dropping transfers in flight.
    /// On error nothing changes and the running configuration stays.
    pub fn reload(&self, new: Config) -> Result<(), String> {
        let result = self.try_reload(new);
        let label = ReloadLabels {
            result: if result.is_ok() {
                ReloadResult::Applied
            } else {
                ReloadResult::Rejected
            },
        };
        self.metrics.config_reloads.get_or_create(&label).inc();
        result
    }

    fn try_reload(&self, new: Config) -> Result<(), String> {
        // Caches, home tables and cluster status carry over where they
        // still apply.
        let resolver =
            Resolver::reconfigure(&new, &self.resolver.load()).map_err(|e| e.to_string())?;
        // New HTTP and admin addresses are bound before anything changes
        // (and before the old ones are let go).
        let kept_http: Vec<SocketAddr> = lock(&self.http_listeners)
            .iter()
            .map(|l| l.configured)
            .collect();
        let http_bound = bind_http(&new, &kept_http).map_err(|e| e.to_string())?;
        let current_admin = lock(&self.admin).as_ref().map(|a| a.configured);
        let admin_bound = bind_admin(&new, current_admin).map_err(|e| e.to_string())?;
        let mut tftp = lock(&self.tftp);
        let kept_tftp: Vec<SocketAddr> = tftp.listeners.iter().map(|l| l.configured).collect();
        let tftp_bound = bind_tftp(&new, &kept_tftp).map_err(|e| e.to_string())?;
        // Every socket is bound: nothing below can fail.
        self.resolver.store(Arc::new(resolver));
        if lock(&self.config).tftp != new.tftp {
            let old = tftp.context.load_full();
            tftp.context
                .store(old.successor(Settings::from_config(&new.tftp)));
            lock(&self.retired).push(old);
        }
        let running = std::mem::take(&mut tftp.listeners);
        tftp.listeners = start_tftp(&new, running, tftp_bound, &tftp.context);
        // Kept while anything still holds a context: a transfer, or a listener
        // that loaded it just before the swap and may still start one on it.
        lock(&self.retired).retain(|c| Arc::strong_count(c) > 1 || c.active_transfers() > 0);
        self.swap_http(&new, http_bound);
        self.swap_admin(&new, admin_bound);
        *lock(&self.config) = new;
        Ok(())
    }

    /// Applies the new `[http]` section: starts listeners bound by
    /// [`bind_http`], stops those no longer configured (their connections
    /// finish the response in flight), updates `fetch_wait` and
    /// `max_connections`.
    fn swap_http(&self, new: &Config, bound: Vec<(SocketAddr, std::net::TcpListener)>) {
        self.http.update(http_settings(new));
        let wanted: &[SocketAddr] = new.http.as_ref().map_or(&[], |h| &h.listen);
        let mut listeners = lock(&self.http_listeners);
        listeners.retain(|l| wanted.contains(&l.configured)); // dropping stops
        for (configured, listener) in bound {
            match HttpListener::start(configured, listener, self.http.clone()) {
                Ok(listener) => listeners.push(listener),
                Err(error) => error!(listen = %configured, %error, "HTTP listener not started"),
            }
        }
    }

    /// Applies the new `[admin]` section with the listener bound by
    /// [`bind_admin`] (if the address changed).
    fn swap_admin(&self, new: &Config, bound: Option<(SocketAddr, std::net::TcpListener)>) {
        let mut admin = lock(&self.admin);
        if new.admin.is_none() {
            *admin = None;
            return;
        }
        let Some((configured, listener)) = bound else {
            return; // same address: keep serving
        };
        match AdminServer::start(configured, listener, self.this.clone(), self.started) {
            Ok(server) => *admin = Some(server), // the old one stops when dropped
            Err(error) => error!(listen = %configured, %error, "admin listener not started"),
        }
    }

    /// Stops accepting requests and waits up to `grace` for transfers to end.
    /// HTTP connections are counted with transfers; the admin front answers
    /// until the end.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let (current, retired) = {
            let tftp = lock(&self.tftp);
            for listener in &tftp.listeners {
                listener.stop.fire();
            }
            (tftp.context.load_full(), lock(&self.retired).clone())
        };
        for listener in lock(&self.http_listeners).iter() {
            listener.stop();
        }
        // Transfers started before a reload get the same grace as the rest.
        let deadline = tokio::time::Instant::now() + grace;
        let tftp_drained = async {
            let mut left = 0;
            for context in std::iter::once(current).chain(retired) {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                left += context.drain(remaining).await;
            }
            left
        };
        let (left, http_left) = tokio::join!(tftp_drained, self.http.drain(grace));
        lock(&self.http_listeners).clear();
        if let Some(admin) = lock(&self.admin).take() {
            admin.stop();
        }
        left + http_left
    }

    fn status_line(&self) -> String {
        format!(
            "{} transfers active, {} HTTP connections",
            self.active_transfers(),
            self.http_connections()
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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

/// Binds the configured HTTP addresses not in `keep` (those already served).
fn bind_http(
    config: &Config,
    keep: &[SocketAddr],
) -> Result<Vec<(SocketAddr, std::net::TcpListener)>, StartError> {
    let Some(http) = &config.http else {
        return Ok(Vec::new());
    };
    let mut bound = Vec::new();
    for &addr in &http.listen {
        if keep.contains(&addr) || bound.iter().any(|(a, _)| *a == addr) {
            continue;
        }
        let listener = http::bind(addr).map_err(|error| StartError::Bind { addr, error })?;
        bound.push((addr, listener));
    }
    Ok(bound)
}

fn start_http(
    bound: Vec<(SocketAddr, std::net::TcpListener)>,
    shared: &Arc<HttpShared>,
) -> Result<Vec<HttpListener>, StartError> {
    bound
        .into_iter()
        .map(|(addr, listener)| {
            HttpListener::start(addr, listener, shared.clone())
                .map_err(|error| StartError::Bind { addr, error })
        })
        .collect()
}

/// Binds the admin address unless it is `current` (already served).
fn bind_admin(
    config: &Config,
    current: Option<SocketAddr>,
) -> Result<Option<(SocketAddr, std::net::TcpListener)>, StartError> {
    match &config.admin {
        Some(admin) if Some(admin.listen) != current => {
            let addr = admin.listen;
            let listener = http::bind(addr).map_err(|error| StartError::Bind { addr, error })?;
            Ok(Some((addr, listener)))
        }
        _ => Ok(None),
    }
}

/// Binds the configured TFTP addresses not in `keep` (those already served).
fn bind_tftp(config: &Config, keep: &[SocketAddr]) -> Result<Vec<Listener>, StartError> {
    config
        .tftp
        .listen
        .iter()
        .filter(|addr| !keep.contains(addr))
        .map(|&addr| Listener::bind(addr).map_err(|error| StartError::Bind { addr, error }))
        .collect()
}

/// The listeners for `config.tftp.listen`, in its order: those of `running`
/// still configured, and the `bound` ones started. The rest of `running`
/// stop (their transfers finish).
fn start_tftp(
    config: &Config,
    running: Vec<TftpListener>,
    bound: Vec<Listener>,
    context: &SharedContext,
) -> Vec<TftpListener> {
    let mut running: Vec<Option<TftpListener>> = running.into_iter().map(Some).collect();
    let mut bound = bound.into_iter();
    let listeners = config
        .tftp
        .listen
        .iter()
        .filter_map(|&configured| {
            let kept = running
                .iter_mut()
                .find(|l| l.as_ref().is_some_and(|l| l.configured == configured));
            if let Some(kept) = kept {
                return kept.take();
            }
            let listener = bound.next()?;
            let (stop, shutdown) = shutdown::channel();
            let bound = listener.local_addr();
            tokio::spawn(server::serve(listener, context.clone(), shutdown));
            Some(TftpListener {
                configured,
                bound,
                stop,
            })
        })
        .collect();
    for removed in running.into_iter().flatten() {
        removed.stop.fire();
    }
    listeners
}

/// `tftproxy serve`: runs until SIGTERM or SIGINT, reloading on SIGHUP.
pub async fn run(config_path: PathBuf, config: Config, logging: Logging) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    raise_open_file_limit();
    let daemon = Daemon::start(config).await?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    info!(config = %config_path.display(), "tftproxy started");
    systemd::ready(&daemon.status_line());
    let watchdog = systemd::watchdog_interval();
    let mut ticker = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(5)));
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                systemd::reloading();
                match Config::load(&config_path) {
                    Ok(new) => match daemon.reload(new) {
                        Ok(()) => {
                            logging.apply(&daemon.config().log);
                            info!(config = %config_path.display(), "configuration reloaded");
                        }
                        Err(e) => error!(error = %e, "reload failed; the running configuration stays"),
                    },
                    Err(e) => {
                        daemon.metrics.config_reloads.get_or_create(&ReloadLabels { result: ReloadResult::Rejected }).inc();
                        error!(error = %e, "new configuration rejected; the running configuration stays");
                    }
                }
                systemd::ready(&daemon.status_line());
            }
            _ = ticker.tick() => {
                if watchdog.is_some() {
                    systemd::watchdog();
                }
                systemd::status(&daemon.status_line());
            }
        }
    }
    // The grace of the configuration in force (a reload may have changed it).
    let grace = daemon.config().tftp.shutdown_grace;
    systemd::stopping(grace);
    info!(grace = ?grace, active = daemon.active_transfers(), "stopping: letting transfers finish");
    let shutdown = daemon.shutdown(grace);
    tokio::pin!(shutdown);
    let left = loop {
        tokio::select! {
            left = &mut shutdown => break left,
            // A second SIGTERM or Ctrl-C: the operator does not want to wait.
            _ = terminate.recv() => break daemon.active_transfers(),
            _ = interrupt.recv() => break daemon.active_transfers(),
            _ = ticker.tick() => if watchdog.is_some() {
                systemd::watchdog();
            },
        }
    };
    if left > 0 {
        warn!(abandoned = left, "abandoning transfers");
    }
    info!("tftproxy stopped");
    Ok(())
}

/// A boot storm needs a socket per transfer: lift the soft descriptor limit
/// to the hard one.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(error) => warn!(%error, "cannot raise the open file limit"),
    }
}
