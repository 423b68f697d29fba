//! The daemon's listeners and their reconciliation with a configuration:
//! addresses still configured keep their socket (requests queued in it are
//! not lost, and a port-0 listener keeps its port), new ones are bound
//! before anything changes, removed ones stop.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::error;

use super::{start_admin, DaemonError};
use crate::config::Config;
use crate::front::admin::AdminState;
use crate::front::conn;
use crate::front::http::HttpFront;
use crate::front::tftp::{Listener, TftpFront};
use crate::front::tls_relay::TlsRelay;
use crate::front::ListenerHandle;

/// The running listeners, each front's in the order of its `listen` list.
#[derive(Default)]
pub(super) struct Listeners {
    pub(super) tftp: Vec<ListenerHandle>,
    pub(super) http: Vec<ListenerHandle>,
    pub(super) admin: Option<ListenerHandle>,
    pub(super) tls_relay: Vec<ListenerHandle>,
}

/// Sockets bound for the addresses a configuration adds.
pub(super) struct Bound {
    tftp: Vec<(SocketAddr, Listener)>,
    http: Vec<(SocketAddr, std::net::TcpListener)>,
    admin: Option<(SocketAddr, std::net::TcpListener)>,
    tls_relay: Vec<(SocketAddr, std::net::TcpListener)>,
}

impl Bound {
    /// Binds every address of `config` that `running` does not serve yet.
    pub(super) fn new(config: &Config, running: &Listeners) -> Result<Bound, DaemonError> {
        let served = |handles: &[ListenerHandle]| -> Vec<SocketAddr> {
            handles.iter().map(|h| h.configured).collect()
        };
        let http_listen = config.http.as_ref().map_or(&[][..], |h| &h.listen);
        let relay_listen = config.tls_relay.as_ref().map_or(&[][..], |t| &t.listen);
        let admin = match (&config.admin, &running.admin) {
            (Some(admin), Some(current)) if current.configured == admin.listen => None,
            (Some(admin), _) => Some(bind(admin.listen, conn::bind)?),
            (None, _) => None,
        };
        Ok(Bound {
            tftp: bind_new(&config.tftp.listen, &served(&running.tftp), |addr| {
                Listener::bind(addr, &config.tftp)
            })?,
            http: bind_new(http_listen, &served(&running.http), conn::bind)?,
            admin,
            tls_relay: bind_new(relay_listen, &served(&running.tls_relay), conn::bind)?,
        })
    }
}

fn bind<T>(
    addr: SocketAddr,
    bind: impl Fn(SocketAddr) -> std::io::Result<T>,
) -> Result<(SocketAddr, T), DaemonError> {
    bind(addr)
        .map(|socket| (addr, socket))
        .map_err(|error| DaemonError::Bind { addr, error })
}

/// Binds each address of `wanted` not in `served` (once, however often it
/// is listed).
fn bind_new<T>(
    wanted: &[SocketAddr],
    served: &[SocketAddr],
    binder: impl Fn(SocketAddr) -> std::io::Result<T>,
) -> Result<Vec<(SocketAddr, T)>, DaemonError> {
    let mut bound: Vec<(SocketAddr, T)> = Vec::new();
    for &addr in wanted {
        if served.contains(&addr) || bound.iter().any(|(a, _)| *a == addr) {
            continue;
        }
        bound.push(bind(addr, &binder)?);
    }
    Ok(bound)
}

impl Listeners {
    /// Makes the running listeners those of `config`: keeps the ones still
    /// configured, starts `bound`, stops the rest.
    pub(super) fn apply(
        &mut self,
        config: &Config,
        bound: Bound,
        (tftp, http, relay): (&Arc<TftpFront>, &Arc<HttpFront>, &Arc<TlsRelay>),
        admin_state: impl FnOnce() -> AdminState,
    ) {
        let mut new_tftp = bound.tftp;
        self.tftp = reconcile(
            std::mem::take(&mut self.tftp),
            &config.tftp.listen,
            |addr| {
                let index = new_tftp.iter().position(|(a, _)| *a == addr)?;
                let (configured, listener) = new_tftp.swap_remove(index);
                Some(tftp.start(configured, listener))
            },
        );
        let mut new_http = bound.http;
        let http_listen = config.http.as_ref().map_or(&[][..], |h| &h.listen);
        self.http = reconcile(std::mem::take(&mut self.http), http_listen, |addr| {
            let index = new_http.iter().position(|(a, _)| *a == addr)?;
            let (configured, listener) = new_http.swap_remove(index);
            http.start(configured, listener)
                .inspect_err(
                    |error| error!(listen = %configured, %error, "HTTP listener not started"),
                )
                .ok()
        });
        let mut new_relay = bound.tls_relay;
        let relay_listen = config.tls_relay.as_ref().map_or(&[][..], |t| &t.listen);
        self.tls_relay = reconcile(std::mem::take(&mut self.tls_relay), relay_listen, |addr| {
            let index = new_relay.iter().position(|(a, _)| *a == addr)?;
            let (configured, listener) = new_relay.swap_remove(index);
            relay
                .start(configured, listener)
                .inspect_err(
                    |error| error!(listen = %configured, %error, "TLS relay listener not started"),
                )
                .ok()
        });
        if config.admin.is_none() {
            self.admin = None; // dropping the handle stops it
        } else if let Some((configured, listener)) = bound.admin {
            // The old one (another address) stops when replaced.
            self.admin = start_admin(configured, listener, admin_state())
                .inspect_err(
                    |error| error!(listen = %configured, %error, "admin listener not started"),
                )
                .ok();
        }
    }
}

/// The listeners for `wanted`, in its order: those of `running` still
/// wanted, and new ones from `start`. The rest of `running` is dropped,
/// which stops them.
fn reconcile(
    running: Vec<ListenerHandle>,
    wanted: &[SocketAddr],
    mut start: impl FnMut(SocketAddr) -> Option<ListenerHandle>,
) -> Vec<ListenerHandle> {
    let mut running: Vec<Option<ListenerHandle>> = running.into_iter().map(Some).collect();
    let mut listeners: Vec<ListenerHandle> = Vec::with_capacity(wanted.len());
    for &addr in wanted {
        if listeners.iter().any(|l| l.configured == addr) {
            continue;
        }
        let kept = running
            .iter_mut()
            .find(|l| l.as_ref().is_some_and(|l| l.configured == addr))
            .and_then(Option::take);
        if let Some(listener) = kept.or_else(|| start(addr)) {
            listeners.push(listener);
        }
    }
    listeners
}
