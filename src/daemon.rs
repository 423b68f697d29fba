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
use crate::metrics::{Metrics, ReloadLabels, ReloadResult};
use crate::resolve::{Resolver, SharedResolver};
use crate::shutdown::{self, Trigger};
use crate::systemd;
use crate::tftp::server::{self, Context, Listener, Settings};

/// The TFTP listeners of one configuration generation.
struct TftpGeneration {
    listen: Vec<SocketAddr>,
    bound: Vec<SocketAddr>,
    context: Arc<Context>,
    stop: Trigger,
}

/// A running daemon.
pub struct Daemon {
    config: Mutex<Config>,
    resolver: SharedResolver,
    metrics: Arc<Metrics>,
    tftp: Mutex<TftpGeneration>,
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
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
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
        let http_bound = bind_http(&config, &[])?;
        let admin_bound = bind_admin(&config, None)?;
        let tftp = start_tftp(&config, resolver.clone(), metrics.clone())?;
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
                    .map_err(|source| StartError::Bind {
                        addr: configured,
                        source,
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
        lock(&self.tftp).bound.clone()
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
        let current = lock(&self.tftp).context.active_transfers();
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
        let tftp_changed = lock(&self.config).tftp != new.tftp;
        // Bind the new listeners before letting go of the old ones, so a bad
        // address leaves the daemon exactly as it was.
        let replacement = if tftp_changed {
            let same_addresses = tftp.listen == new.tftp.listen;
            if same_addresses {
                // Same sockets, new settings: stop the old listeners first
                // (the addresses must be free to bind again).
                tftp.stop.fire();
            }
            match start_tftp(&new, self.resolver.clone(), self.metrics.clone()) {
                Ok(generation) => Some(generation),
                Err(error) if same_addresses => {
                    // Could not rebind what we just released: keep serving
                    // with the old settings on fresh sockets.
                    let old = lock(&self.config).clone();
                    *tftp = start_tftp(&old, self.resolver.clone(), self.metrics.clone()).map_err(
                        |e| format!("{error}; and restoring the old listeners failed: {e}"),
                    )?;
                    return Err(error.to_string());
                }
                Err(error) => return Err(error.to_string()),
            }
        } else {
            None
        };
        self.resolver.store(Arc::new(resolver));
        if let Some(generation) = replacement {
            let old = std::mem::replace(&mut *tftp, generation);
            old.stop.fire();
            lock(&self.retired).push(old.context);
        }
        lock(&self.retired).retain(|c| c.active_transfers() > 0);
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
            tftp.stop.fire();
            (tftp.context.clone(), lock(&self.retired).clone())
        };
        for listener in lock(&self.http_listeners).iter() {
            listener.stop();
        }
        let (mut left, http_left) = tokio::join!(current.drain(grace), self.http.drain(grace));
        for context in retired {
            left += context.drain(Duration::ZERO).await;
        }
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
        let listener = http::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
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
                .map_err(|source| StartError::Bind { addr, source })
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
            let listener = http::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
            Ok(Some((addr, listener)))
        }
        _ => Ok(None),
    }
}

fn start_tftp(
    config: &Config,
    resolver: SharedResolver,
    metrics: Arc<Metrics>,
) -> Result<TftpGeneration, StartError> {
    let mut listeners = Vec::new();
    for &addr in &config.tftp.listen {
        let listener = Listener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
        listeners.push(listener);
    }
    let context = Context::new(Settings::from_config(&config.tftp), resolver, metrics);
    let (stop, shutdown) = shutdown::channel();
    let bound = listeners.iter().map(Listener::local_addr).collect();
    for listener in listeners {
        tokio::spawn(server::serve(listener, context.clone(), shutdown.clone()));
    }
    Ok(TftpGeneration {
        listen: config.tftp.listen.clone(),
        bound,
        context,
        stop,
    })
}

/// `tftproxy serve`: runs until SIGTERM or SIGINT, reloading on SIGHUP.
pub async fn run(config_path: PathBuf, config: Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    raise_open_file_limit();
    let grace = config.tftp.shutdown_grace;
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
                        Ok(()) => info!(config = %config_path.display(), "configuration reloaded"),
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
    systemd::stopping();
    info!(grace = ?grace, active = daemon.active_transfers(), "stopping: letting transfers finish");
    let left = daemon.shutdown(grace).await;
    if left > 0 {
        warn!(abandoned = left, "grace time over; abandoning transfers");
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
