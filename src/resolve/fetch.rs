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

use futures::future::BoxFuture;
use tracing::debug;

use crate::metrics::CacheKind;
use crate::name::Classified;
use crate::source::upstream::{AddressGate, ClusterReport, Conditional, WaitLine};
use crate::verdict::{Miss, Verdict};

use super::cache::{ContentEntry, Location, Scope};
use super::flights::{fetch_all, fetch_one};
use super::health::ClusterState;
use super::route::Route;
use super::singleflight::Wanted;
use super::{Inner, Served};

/// What the upstream client asks of one flight's walk over a cluster: the
/// cluster's hold-downs and wait line, and whether the flight is still
/// wanted.
struct FlightGate<'a> {
    cluster: &'a ClusterState,
    wanted: &'a Wanted,
}

impl AddressGate for FlightGate<'_> {
    fn held_down(&self, index: usize) -> Option<std::time::Duration> {
        self.cluster.held_down(index)
    }

    fn wait_line(&self) -> Option<&Arc<WaitLine>> {
        Some(&self.cluster.line)
    }

    fn unwanted(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.wanted.unwanted())
    }

    fn withdraw(&self) -> bool {
        self.wanted.withdraw()
    }
}

/// A cluster already asked, what it said, and whether that was partial.
pub(super) type Known = (Arc<str>, Miss, bool);

/// Where step 4 goes, from the tables alone ([`Inner::plan`]).
pub(super) enum Plan {
    /// A device name whose device has a known home: that cluster alone.
    Home(Arc<ClusterState>),
    /// The location cache says the name is on no cluster.
    Nowhere,
    /// The location cache says the name is on this cluster.
    Located(Arc<ClusterState>),
    /// Nothing known: every cluster.
    Unknown,
}

/// Cache hits and misses seen by a lookup, counted once it is known to
/// count (a fast path that gives up counts nothing: the full lookup will).
#[derive(Default)]
pub(super) struct Tally(Vec<(CacheKind, bool)>);

impl Tally {
    pub(super) fn apply(self, inner: &Inner) {
        for (kind, hit) in self.0 {
            inner.count(kind, hit);
        }
    }
}

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
    /// Where step 4 goes for `name`, from the home and location tables
    /// alone, and the location-cache lookup to count (`None`: not asked).
    pub(super) fn plan(&self, name: &Arc<str>, device: Option<&str>) -> (Plan, Option<bool>) {
        if let Some(home) = device
            .and_then(|key| self.homes.device(key))
            .and_then(|id| self.enabled_cluster(&id))
        {
            return (Plan::Home(home), None);
        }
        match self.caches.location(Scope::All, name) {
            Some(Location::Nowhere) => (Plan::Nowhere, Some(true)),
            Some(Location::Cluster(id)) => match self.enabled_cluster(&id) {
                Some(cluster) => (Plan::Located(cluster), Some(true)),
                None => (Plan::Unknown, Some(false)),
            },
            None => (Plan::Unknown, Some(false)),
        }
    }

    /// Steps 4 and 5 for a lookup that may go upstream.
    pub(super) async fn remote(
        self: &Arc<Self>,
        name: &Arc<str>,
        class: &Classified,
        route: &Route,
    ) -> Fetched {
        let device = class.device.as_deref();
        let (plan, location_hit) = self.plan(name, device);
        if let Some(hit) = location_hit {
            self.count(CacheKind::Location, hit);
        }
        match plan {
            Plan::Home(home) => {
                debug!(name = %name, device = ?device, home = %home.id,
                    "device name: asking its home cluster alone");
                let fetched = self.ask_one(&home, name, true, route).await;
                match fetched.verdict {
                    Verdict::NotFound => {
                        debug!(name = %name, home = %home.id,
                            "home cluster says not found: asking every cluster");
                        let known = (home.id.clone(), Verdict::NotFound, fetched.partial);
                        self.fanout_or_stale(name, Some(known), device, route).await
                    }
                    _ => fetched,
                }
            }
            Plan::Nowhere => {
                debug!(name = %name, "location cache: on no cluster");
                Verdict::NotFound.into()
            }
            Plan::Located(cluster) => {
                let id = cluster.id.clone();
                debug!(name = %name, cluster = %id, "location cache: asking its cluster");
                let fetched = self.ask_one(&cluster, name, device.is_some(), route).await;
                let miss = match fetched.verdict.found() {
                    Ok(served) => return Verdict::Found(served).into(),
                    Err(miss) => miss,
                };
                let known = (id, miss, fetched.partial);
                self.fanout_or_stale(name, Some(known), device, route).await
            }
            Plan::Unknown => {
                debug!(name = %name, "location cache: unknown");
                self.fanout_or_stale(name, None, device, route).await
            }
        }
    }

    /// Step 4 without the network ([`super::Resolver::resolve_nearby`]):
    /// the verdict if the tables and a fresh cached copy settle it, `None`
    /// when [`Inner::remote`] would ask a cluster.
    pub(super) async fn remote_nearby(
        &self,
        name: &Arc<str>,
        class: &Classified,
        tally: &mut Tally,
    ) -> Option<Verdict<Served>> {
        let device = class.device.as_deref();
        let (plan, location_hit) = self.plan(name, device);
        if let Some(hit) = location_hit {
            tally.0.push((CacheKind::Location, hit));
        }
        let (cluster, device) = match plan {
            Plan::Nowhere => return Some(Verdict::NotFound),
            Plan::Unknown => return None,
            Plan::Home(home) => (home, true),
            Plan::Located(cluster) => (cluster, device.is_some()),
        };
        // Only a Found settles it: any miss there goes on to a fan-out.
        match self.cached_one(&cluster, name, device, tally).await {
            Ok(found @ Verdict::Found(_)) => Some(found),
            _ => None,
        }
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
        let mut tally = Tally::default();
        let stale = match self.cached_one(cluster, name, device, &mut tally).await {
            Ok(verdict) => {
                tally.apply(self);
                return verdict.into();
            }
            Err(stale) => stale,
        };
        tally.apply(self);
        let id = &cluster.id;
        let generation = self.caches.generation();
        let key = FetchKey::One {
            cluster: id.clone(),
            name: name.clone(),
            generation,
            route: route.key.clone(),
        };
        // A stale copy with validators is revalidated: a 304 keeps it.
        let held = stale.clone().filter(|e| !e.validators.is_empty());
        let (flight, leader) = self.flights.run(key, |wanted| {
            fetch_one(
                self.clone(),
                wanted,
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

    /// The part of [`Inner::ask_one`] that needs no cluster: `Ok` with a
    /// fresh cached copy or a remembered 404 from this cluster, or `Err`
    /// with the copy no longer fresh (if any) when the cluster must be asked.
    pub(super) async fn cached_one(
        &self,
        cluster: &ClusterState,
        name: &Arc<str>,
        device: bool,
        tally: &mut Tally,
    ) -> Result<Verdict<Served>, Option<ContentEntry>> {
        let id = &cluster.id;
        let cached = self.caches.content_tiered(id, name, device).await;
        let fresh = cached.as_ref().is_some_and(|c| c.is_fresh());
        tally.0.push((CacheKind::Content, fresh));
        match cached {
            Some(cached) if cached.is_fresh() => {
                debug!(name = %name, cluster = %id, "content cache: fresh");
                let served = Served::from_cluster(id.clone(), cached.any().body, true);
                Ok(Verdict::Found(served))
            }
            Some(stale) => {
                let entry = stale.any();
                debug!(name = %name, cluster = %id, age_ms = entry.age().as_millis() as u64,
                    "content cache: copy no longer fresh, asking its cluster again");
                Err(Some(entry))
            }
            None => {
                debug!(name = %name, cluster = %id, "content cache: miss");
                if let Some(Location::Nowhere) =
                    self.caches.location(Scope::Cluster(id.clone()), name)
                {
                    tally.0.push((CacheKind::Location, true));
                    debug!(name = %name, cluster = %id, "location cache: not on this cluster");
                    return Ok(Verdict::NotFound);
                }
                Err(None)
            }
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
        let (flight, leader) = self.flights.run(key, |wanted| {
            fetch_all(
                self.clone(),
                wanted,
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
    /// the answers. The fetch waits in the cluster's line while `wanted`.
    pub(super) async fn ask_cluster(
        &self,
        cluster: &ClusterState,
        name: &str,
        route: &Route,
        held: Option<&Conditional>,
        wanted: &Wanted,
    ) -> ClusterReport {
        let gate = FlightGate { cluster, wanted };
        let report = self
            .upstream
            .fetch_cluster_with(&cluster.config.addresses, name, &route.via, &gate, held)
            .await;
        self.record(cluster, &report);
        report
    }
}
