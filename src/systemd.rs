//! Talking to systemd (`Type=notify`): readiness, reload and stop
//! notifications, a status line with live counts, and watchdog pings. Every
//! call is a no-op when the daemon was not started by systemd.

use std::time::Duration;

use sd_notify::NotifyState;

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::debug!(%error, "sd_notify failed");
    }
}

/// Start-up is complete: listeners are bound.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload has begun; call [`ready`] when it is done.
pub fn reloading() {
    notify(&[NotifyState::Reloading]);
}

/// Stopping, for up to `grace`: systemd's stop time-out is extended to
/// cover it, so a grace longer than `TimeoutStopSec` is not cut short.
pub fn stopping(grace: Duration) {
    let usec = (grace + STOP_SLACK).as_micros();
    let usec = u32::try_from(usec).unwrap_or(u32::MAX);
    notify(&[NotifyState::Stopping, NotifyState::ExtendTimeoutUsec(usec)]);
}

/// Time to finish after the grace (abandon transfers, close sockets).
const STOP_SLACK: Duration = Duration::from_secs(5);

pub fn status(text: &str) {
    notify(&[NotifyState::Status(text)]);
}

pub fn watchdog() {
    notify(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog (half its time-out), if one is set.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec / 2))
    } else {
        None
    }
}
