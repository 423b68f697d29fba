//! `tftproxy serve`: the daemon under the service manager — signals
//! (SIGHUP reloads, SIGTERM/SIGINT stop, a second one stops at once),
//! systemd notifications and the watchdog.

use std::path::PathBuf;
use std::time::Duration;

use tracing::{error, info, warn};

use super::Daemon;
use crate::config::Config;
use crate::logging::Logging;
use crate::metrics::{ReloadLabels, ReloadResult};
use crate::systemd;

/// `tftproxy serve`: runs until SIGTERM or SIGINT, reloading on SIGHUP.
pub async fn run(config_path: PathBuf, config: Config, logging: Logging) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    raise_open_file_limit();
    let daemon = Daemon::start(config).await?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let via = daemon.resolver().current().via_id().to_string();
    info!(config = %config_path.display(), via = %via, "tftproxy started");
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
                            let via = daemon.resolver().current().via_id().to_string();
                            info!(config = %config_path.display(), via = %via, "configuration reloaded");
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

/// A boot storm holds a file open per transfer being sent and an HTTP
/// connection per fetch: lift the soft descriptor limit to the hard one.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(error) => warn!(%error, "cannot raise the open file limit"),
    }
}
