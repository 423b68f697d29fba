//! Steps 4 and 5 of the resolution contract: the caches, then the clusters.
//!
//! A device with a known home asks that cluster alone, and fans out to
//! every cluster only if the home says 404. Otherwise the location cache
//! says where the name is (ask that cluster alone), that it is nowhere, or
//! nothing (fan out). Concurrent misses for one key share one upstream fetch
//! ([`super::singleflight`], the flights in [`super::flights`]) that runs in
//! its own task, so a phone that gives up does not cancel it and its retry
//! is served from cache. When the clusters that would answer are busy or
//! unreachable, the last good copy may be served ([`super::stale`]).
//!
//! Fetches are coalesced per proxy chain too ([`super::route`]), and a
//! partial "not found" (a tftproxy further on answered from its files and
//! caches only) is cached only by a lookup from a phone: for a proxied one
//! it may be the effect of this very chain, not the truth for the next.

use std::sync::Arc;

use tracing::debug;

use crate::metrics::CacheKind;
use crate::name::Classified;
use crate::source::upstream::{ClusterReport, Conditional};
use crate::verdict::{Miss, Verdict};

use super::cache::{Location, Scope};
use super::flights::{fetch_all, fetch_one};
use super::health::ClusterState;
use super::route::Route;
use super::{Inner, Served};

/// A cluster already asked, what it said, and whether that was partial.
pub(super) type Known = (Arc<str>, Miss, bool);

/// One coalesced upstream fetch.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(super) enum FetchKey {
    /// One cluster alone (home cluster first, known location, device
    /// refresh).
    One {
        cluster: Arc<str>,
        name: Arc<str>,
        generation: u64,
        route: Arc<[String]>,
    },
    /// Every enabled cluster, one of them possibly already asked.
    Fanout {
        name: Arc<str>,
        known: Option<Known>,
        generation: u64,
        route: Arc<[String]>,
    },
}
// `generation` is the caches' purge generation when the flight began: a
// request after a purge starts a new flight instead of joining one whose
// answer may be what was purged.

/// What a fetch brings back: its verdict, and whether a "not found" may
/// miss files (a tftproxy further on answered from its files and caches
/// only, and this lookup's route cannot absorb that).
#[derive(Clone, Debug)]
pub(super) struct Fetched {
    pub(super) verdict: Verdict<Served>,
    pub(super) partial: bool,
}

impl From<Verdict<Served>> for Fetched {
    fn from(verdict: Verdict<Served>) -> Fetched {
        Fetched {
            verdict,
            partial: false,
        }
    }
}

impl Inner {
    /// Steps 4 and 5 for a lookup that may go upstream.
    pub(super) async fn remote(
        self: &Arc<Self>,
        name: &Arc<str>,
        class: &Classified,
        route: &Route,
    ) -> Fetched {
        let device = class.device.as_deref();
        if let Some(key) = device {
            if let Some(home) = self
                .homes
                .device(key)
                .and_then(|id| self.enabled_cluster(&id))
            {
                debug!(name = %name, device = %key, home = %home.id,
                    "device name: asking its home cluster alone");
                let fetched = self.ask_one(&home, name, true, route).await;
                return match fetched.verdict {
                    Verdict::NotFound => {
                        debug!(name = %name, home = %home.id,
                            "home cluster says not found: asking every cluster");
                        let known = (home.id.clone(), Verdict::NotFound, fetched.partial);
                        self.fanout_or_stale(name, Some(known), device, route).await
                    }
                    _ => fetched,
                };
            }
        }
        match self.caches.location(Scope::All, name) {
            Some(Location::Nowhere) => {
                self.count(CacheKind::Location, true);
                debug!(name = %name, "location cache: on no cluster");
                return Verdict::NotFound.into();
            }
            Some(Location::Cluster(id)) => match self.enabled_cluster(&id) {
                Some(cluster) => {
                    self.count(CacheKind::Location, true);
                    debug!(name = %name, cluster = %id, "location cache: asking its cluster");
                    let fetched = self.ask_one(&cluster, name, device.is_some(), route).await;
                    let miss = match fetched.verdict.found() {
                        Ok(served) => return Verdict::Found(served).into(),
                        Err(miss) => miss,
                    };
                    let known = (id, miss, fetched.partial);
                    return self.fanout_or_stale(name, Some(known), device, route).await;
                }
                None => self.count(CacheKind::Location, false),
            },
            None => self.count(CacheKind::Location, false),
        }
        debug!(name = %name, "location cache: unknown");
        self.fanout_or_stale(name, None, device, route).await
    }

    /// One cluster alone, through the caches (memory, then disk): a fresh
    /// copy is served; a stale copy is re-fetched (conditionally, when it
    /// has validators) and served only if the cluster cannot answer, within
    /// `cache.max_stale` (stale-if-error); a recent 404 from this cluster is
    /// remembered for `negative_ttl`.
    pub(super) async fn ask_one(
        self: &Arc<Self>,
        cluster: &Arc<ClusterState>,
        name: &Arc<str>,
        device: bool,
        route: &Route,
    ) -> Fetched {
        let id = &cluster.id;
        let cached = self.caches.content_tiered(id, name, device).await;
        self.count(
            CacheKind::Content,
            cached.as_ref().is_some_and(|c| c.is_fresh()),
        );
        let stale = match cached {
            Some(cached) if cached.is_fresh() => {
                debug!(name = %name, cluster = %id, "content cache: fresh");
                let served = Served::from_cluster(id.clone(), cached.any().body, true);
                return Verdict::Found(served).into();
            }
            Some(stale) => {
                let entry = stale.any();
                debug!(name = %name, cluster = %id, age_ms = entry.age().as_millis() as u64,
                    "content cache: copy no longer fresh, asking its cluster again");
                Some(entry)
            }
            None => {
                debug!(name = %name, cluster = %id, "content cache: miss");
                if let Some(Location::Nowhere) =
                    self.caches.location(Scope::Cluster(id.clone()), name)
                {
                    self.count(CacheKind::Location, true);
                    debug!(name = %name, cluster = %id, "location cache: not on this cluster");
                    return Verdict::NotFound.into();
                }
                None
            }
        };
        let generation = self.caches.generation();
        let key = FetchKey::One {
            cluster: id.clone(),
            name: name.clone(),
            generation,
            route: route.key.clone(),
        };
        // A stale copy with validators is revalidated: a 304 keeps it.
        let held = stale.clone().filter(|e| !e.validators.is_empty());
        let (flight, leader) = self.flights.run(key, || {
            fetch_one(
                self.clone(),
                cluster.clone(),
                name.clone(),
                device,
                generation,
                route.clone(),
                held,
            )
        });
        if !leader {
            debug!(name = %name, cluster = %id, "joining a fetch in flight");
        }
        let fetched = flight.await.unwrap_or_else(|| Verdict::Unreachable.into());
        match fetched.verdict {
            // A partial "not found" is not the cluster's word: like a
            // failure, it lets a stale copy be served.
            Verdict::Found(_) => fetched,
            Verdict::NotFound if !fetched.partial || stale.is_none() => fetched,
            failed => match stale {
                Some(entry) if self.caches.within_max_stale(&entry) => {
                    self.serve_stale(id.clone(), name, entry, &failed).into()
                }
                _ => Fetched {
                    verdict: failed,
                    partial: fetched.partial,
                },
            },
        }
    }

    /// Every enabled cluster, coalesced.
    pub(super) async fn fanout(
        self: &Arc<Self>,
        name: &Arc<str>,
        known: Option<Known>,
        device: bool,
        route: &Route,
    ) -> Fetched {
        let generation = self.caches.generation();
        let key = FetchKey::Fanout {
            name: name.clone(),
            known: known.clone(),
            generation,
            route: route.key.clone(),
        };
        let (flight, leader) = self.flights.run(key, || {
            fetch_all(
                self.clone(),
                name.clone(),
                known,
                device,
                generation,
                route.clone(),
            )
        });
        debug!(name = %name, leader, "asking the clusters");
        flight.await.unwrap_or_else(|| Verdict::Unreachable.into())
    }

    /// [`Inner::fanout`], then stale-if-error when the clusters are busy or
    /// unreachable.
    pub(super) async fn fanout_or_stale(
        self: &Arc<Self>,
        name: &Arc<str>,
        known: Option<Known>,
        device: Option<&str>,
        route: &Route,
    ) -> Fetched {
        let fetched = self.fanout(name, known, device.is_some(), route).await;
        match fetched.verdict {
            failed @ (Verdict::Busy | Verdict::Unreachable) => Fetched {
                verdict: self.stale_if_error(name, device, failed).await,
                partial: fetched.partial,
            },
            _ => fetched,
        }
    }

    /// Asks one cluster (its addresses in order, skipping those held down)
    /// with `route`'s `Via`, conditionally if a copy is `held`, and records
    /// the answers.
    pub(super) async fn ask_cluster(
        &self,
        cluster: &ClusterState,
        name: &str,
        route: &Route,
        held: Option<&Conditional>,
    ) -> ClusterReport {
        let report = self
            .upstream
            .fetch_cluster_with(&cluster.config.addresses, name, &route.via, cluster, held)
            .await;
        self.record(cluster, &report);
        report
    }
}
