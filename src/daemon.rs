//! The daemon: binds every front end from the configuration, shares one
//! resolver and one set of metrics between them, reloads on SIGHUP and stops
//! gracefully on SIGTERM/SIGINT.
//!
//! [`Daemon::start`] is what `tftproxy serve` runs and what integration tests
//! start in-process (with port 0 listeners: [`Daemon::tftp_addrs`] tells the
//! ports actually bound).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::{error, info, warn};

use crate::config::Config;
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
        let tftp = start_tftp(&config, resolver.clone(), metrics.clone())?;
        let daemon = Arc::new(Daemon {
            config: Mutex::new(config),
            resolver,
            metrics,
            tftp: Mutex::new(tftp),
            retired: Mutex::new(Vec::new()),
        });
        Ok(daemon)
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
        let resolver = Resolver::new(&new, self.metrics.clone()).map_err(|e| e.to_string())?;
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
        *lock(&self.config) = new;
        Ok(())
    }

    /// Stops accepting requests and waits up to `grace` for transfers to end.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let (current, retired) = {
            let tftp = lock(&self.tftp);
            tftp.stop.fire();
            (tftp.context.clone(), lock(&self.retired).clone())
        };
        let mut left = current.drain(grace).await;
        for context in retired {
            left += context.drain(Duration::ZERO).await;
        }
        left
    }

    fn status_line(&self) -> String {
        format!("{} transfers active", self.active_transfers())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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
