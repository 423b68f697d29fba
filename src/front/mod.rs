//! The fronts: the protocols phones and operators speak. [`tftp`] (the UDP
//! socket driver around the pure [`crate::tftp`] state machines), `http`
//! (phones' `GET /<name>` on port 6970) and [`admin`] (metrics, health,
//! cluster status, cache purge; `admin_auth` says who may ask). A front knows its protocol and the narrow
//! interface of the resolver ([`crate::resolve::ResolverHandle`]), nothing of
//! clusters or caches. [`conn`] is the HTTP/1 plumbing the two HTTP fronts
//! share; `slots` the resizable limits on transfers and connections.
//!
//! Every listener runs until its `ListenerHandle` is dropped or stopped;
//! the daemon owns the handles (ARCHITECTURE.md, "Lifecycle").

pub mod admin;
pub(crate) mod admin_auth;
pub mod conn;
mod file_body;
pub(crate) mod http;
mod range;
pub(crate) mod slots;
pub mod tftp;
pub(crate) mod tls_relay;

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

/// A running listener of any front: where it was asked to listen, where it
/// is bound. Stops when dropped (or [`ListenerHandle::stop`]ped): the accept
/// loop ends and the socket closes; work it started (transfers, requests in
/// flight) finishes on its own.
#[derive(Debug)]
pub(crate) struct ListenerHandle {
    /// The address as configured (port 0 stays 0).
    pub(crate) configured: SocketAddr,
    /// The address actually bound.
    pub(crate) bound: SocketAddr,
    stop: CancellationToken,
}

impl ListenerHandle {
    pub(crate) fn new(configured: SocketAddr, bound: SocketAddr, stop: CancellationToken) -> Self {
        ListenerHandle {
            configured,
            bound,
            stop,
        }
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Entry points for the fuzz targets (`fuzz/`): what the HTTP front reads
/// of a request before it resolves anything. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use std::ops::Range;

    /// The name in a request path, as the HTTP front decodes it (`None`:
    /// not UTF-8, answered 400).
    pub fn decode_path(path: &str) -> Option<String> {
        super::http::decode_path(path)
    }

    /// The bytes a `Range` header asks of a body of `len` bytes (`None`:
    /// the whole body, or nothing at all).
    pub fn range_of(header: &str, len: u64) -> Option<Range<u64>> {
        match super::range::requested(Some(header), len) {
            super::range::Requested::Part(range) => Some(range),
            _ => None,
        }
    }
}
