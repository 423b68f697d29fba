//! The proxy chain of one lookup, as the resolver uses it: whether it may
//! be forwarded at all (a loop, or a chain at `remote.max_hops`, is not:
//! counted and logged here), the `Via` its upstream requests carry, and the
//! part of it that keys coalesced fetches.
//!
//! Why the chain is in the fetch key: what another tftproxy answers depends
//! on the chain it receives (it stops at its own name). A phone's request
//! joining a fetch that carries a chain naming the next hop would get that
//! hop's cache-only "not found" instead of its real answer; a proxied
//! request joining a phone's fetch would send a chain without the hops it
//! came through, and a loop would go round once more. Only tftproxy entries
//! are in the key: other proxies change nothing downstream.

use std::sync::Arc;

use reqwest::header::HeaderValue;
use tracing::info;

use crate::source::upstream::Upstream;
use crate::via::{Chain, Stop, ViaId};

use super::Inner;

/// How a lookup's upstream requests go.
#[derive(Clone, Debug)]
pub(super) struct Route {
    /// The incoming chain's tftproxy entries (lower-cased): part of every
    /// [`super::FetchKey`].
    pub(super) key: Arc<[String]>,
    /// The `Via` value its upstream requests carry: the incoming chain and
    /// our entry.
    pub(super) via: HeaderValue,
}

impl Route {
    pub(super) fn new(chain: &Chain, us: &ViaId) -> Route {
        Route {
            key: chain.tftproxy_key().into(),
            via: Upstream::via_value(&chain.forward(us)),
        }
    }

    /// The lookup came through another tftproxy. Its fetches may then get
    /// partial answers they cannot absorb: a hop that found itself in the
    /// chain may be one before us, and a shorter chain would have gone
    /// further. A phone's lookup (empty chain) absorbs them: nothing it
    /// could reach was left out.
    pub(super) fn proxied(&self) -> bool {
        !self.key.is_empty()
    }
}

impl Inner {
    /// Whether a lookup with `chain` must stop at the caches; counts and logs
    /// the ones that do.
    pub(super) fn stop(&self, chain: &Chain, name: &str) -> Option<Stop> {
        let stop = chain.stop(&self.via_id, self.remote.max_hops)?;
        match stop {
            Stop::Loop => {
                self.metrics.loops_detected.inc();
                info!(name, via = %chain, us = %self.via_id.pseudonym(),
                    "proxy loop: the Via chain already names this instance; \
                     answering from local files and caches only");
            }
            Stop::MaxHops => {
                self.metrics.max_hops_reached.inc();
                info!(name, via = %chain, hops = chain.tftproxy_hops(),
                    max_hops = self.remote.max_hops,
                    "proxy chain at remote.max_hops; answering from local files and caches only");
            }
        }
        Some(stop)
    }
}
