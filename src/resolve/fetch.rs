//! Steps 4 and 5 of the resolution contract: the caches, then the clusters.
//!
//! A device with a known home asks that cluster alone, and fans out to
//! every cluster only if the home says 404. Otherwise the location cache
//! says where the name is (ask that cluster alone), that it is nowhere, or
//! nothing (fan out). Concurrent misses for one key share one upstream fetch
//! ([`super::singleflight`]) that runs in its own task, so a phone that
//! gives up does not cancel it and its retry is served from cache. What a
//! fetch learns goes into the caches unless a purge happened meanwhile.
//!
//! Fetches are coalesced per proxy chain too ([`super::route`]), and a
//! partial "not found" (a tftproxy further on answered from its files and
//! caches only) is cached only by a lookup from a phone: for a proxied one
//! it may be the effect of this very chain, not the truth for the next.

use std::sync::Arc;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use tracing::debug;

use crate::config::Strategy;
use crate::metrics::CacheKind;
use crate::name::Classified;
use crate::source::upstream::{ClusterFound, ClusterReport, ClusterVerdict};
use crate::verdict::{self, Miss, Verdict};

use super::cache::{Location, Scope};
use super::health::ClusterState;
use super::route::Route;
use super::{Inner, Served};

/// A cluster already asked, what it said, and whether that was partial.
type Known = (Arc<str>, Miss, bool);

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
// `generation` is the caches' purge generation when the flight began: a
// request after a purge starts a new flight instead of joining one whose
// answer may be what was purged.

impl Inner {
    /// Steps 4 and 5 for a lookup that may go upstream.
    pub(super) async fn remote(
        self: &Arc<Self>,
        name: &Arc<str>,
        class: &Classified,
        route: &Route,
    ) -> Fetched {
        let device = class.device.is_some();
        if let Some(key) = &class.device {
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
                        self.fanout(name, Some(known), device, route).await
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
                    let fetched = self.ask_one(&cluster, name, device, route).await;
                    let miss = match fetched.verdict.found() {
                        Ok(served) => return Verdict::Found(served).into(),
                        Err(miss) => miss,
                    };
                    let known = (id, miss, fetched.partial);
                    return self.fanout(name, Some(known), device, route).await;
                }
                None => self.count(CacheKind::Location, false),
            },
            None => self.count(CacheKind::Location, false),
        }
        debug!(name = %name, "location cache: unknown");
        self.fanout(name, None, device, route).await
    }

    /// Local root and caches only (a lookup from another proxy, or no
    /// cluster enabled): the first cached copy among the device's home, the
    /// name's known location, then every enabled cluster in order.
    pub(super) fn cached_only(&self, name: &Arc<str>, class: &Classified) -> Verdict<Served> {
        let device = class.device.is_some();
        let mut candidates: Vec<Arc<str>> = Vec::new();
        if let Some(home) = class.device.as_ref().and_then(|d| self.homes.device(d)) {
            candidates.push(home);
        }
        if let Some(Location::Cluster(id)) = self.caches.location(Scope::All, name) {
            candidates.push(id);
        }
        candidates.extend(self.enabled.iter().map(|c| c.id.clone()));
        for id in candidates {
            if let Some(cached) = self.caches.content(&id, name, device) {
                self.count(CacheKind::Content, true);
                debug!(name = %name, cluster = %id, "cache only: serving the cached copy");
                return Verdict::Found(Served::from_cluster(id, cached.any().body, true));
            }
        }
        self.count(CacheKind::Content, false);
        debug!(name = %name, "cache only: not cached");
        Verdict::NotFound
    }

    /// One cluster alone, through the caches: a fresh copy is served; a
    /// stale device copy is re-fetched and served only if the cluster
    /// cannot answer (stale-if-error); a recent 404 from this cluster is
    /// remembered for `negative_ttl`.
    pub(super) async fn ask_one(
        self: &Arc<Self>,
        cluster: &Arc<ClusterState>,
        name: &Arc<str>,
        device: bool,
        route: &Route,
    ) -> Fetched {
        let id = &cluster.id;
        let cached = self.caches.content(id, name, device);
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
                    "content cache: device file older than device_ttl, asking its cluster again");
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
        let (flight, leader) = self.flights.run(key, || {
            fetch_one(
                self.clone(),
                cluster.clone(),
                name.clone(),
                device,
                generation,
                route.clone(),
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
                Some(entry) => {
                    debug!(name = %name, cluster = %id, answer = ?failed,
                        "cluster cannot answer: serving the stale copy");
                    self.count(CacheKind::Content, true);
                    Verdict::Found(Served::from_cluster(id.clone(), entry.body, true)).into()
                }
                None => failed.into(),
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

    /// Asks one cluster (its addresses in order, skipping those held down)
    /// with `route`'s `Via` and records the answers.
    async fn ask_cluster(
        &self,
        cluster: &ClusterState,
        name: &str,
        route: &Route,
    ) -> ClusterReport {
        let report = self
            .upstream
            .fetch_cluster_with(&cluster.config.addresses, name, &route.via, cluster)
            .await;
        self.record(cluster, &report);
        report
    }
}

/// The flight of [`FetchKey::One`].
async fn fetch_one(
    inner: Arc<Inner>,
    cluster: Arc<ClusterState>,
    name: Arc<str>,
    device: bool,
    generation: u64,
    route: Route,
) -> Fetched {
    let id = &cluster.id;
    // A flight that ended between this waiter's cache check and the start
    // of this one has filled the cache: use it.
    if let Some(entry) = inner
        .caches
        .content(id, &name, device)
        .and_then(|c| c.fresh())
    {
        return Verdict::Found(Served::from_cluster(id.clone(), entry.body, true)).into();
    }
    let report = inner.ask_cluster(&cluster, &name, &route).await;
    let partial = route.proxied() && report.is_partial();
    let verdict = match report.verdict {
        Verdict::Found(ClusterFound { body, .. }) => {
            inner.caches.write_since(generation, |caches| {
                caches.put_content(id, &name, body.clone());
                caches.forget_location(Scope::Cluster(id.clone()), &name);
            });
            Verdict::Found(Served::from_cluster(id.clone(), body, false))
        }
        Verdict::NotFound if partial => {
            debug!(name = %name, cluster = %id, "partial not found: not cached");
            Verdict::NotFound
        }
        Verdict::NotFound => {
            inner.caches.write_since(generation, |caches| {
                caches.forget_content(id, &name);
                caches.set_location(Scope::Cluster(id.clone()), &name, Location::Nowhere);
                if caches.location(Scope::All, &name) == Some(Location::Cluster(id.clone())) {
                    caches.forget_location(Scope::All, &name);
                }
            });
            Verdict::NotFound
        }
        Verdict::Busy => Verdict::Busy,
        Verdict::Unreachable => Verdict::Unreachable,
    };
    debug!(name = %name, cluster = %id, answer = ?verdict, "single-cluster fetch done");
    inner.update_gauges();
    Fetched { verdict, partial }
}

/// The flight of [`FetchKey::Fanout`]: every enabled cluster (but the one
/// whose verdict is `known`), in parallel or in sequence, reduced by
/// [`verdict::across_clusters`]; the result goes into the caches.
async fn fetch_all(
    inner: Arc<Inner>,
    name: Arc<str>,
    known: Option<Known>,
    device: bool,
    generation: u64,
    route: Route,
) -> Fetched {
    // A flight that ended between this waiter's cache check and the start
    // of this one has filled the cache: use it.
    if known.is_none() {
        match inner.caches.location(Scope::All, &name) {
            Some(Location::Nowhere) => return Verdict::NotFound.into(),
            Some(Location::Cluster(id)) => {
                if let Some(entry) = inner
                    .caches
                    .content(&id, &name, device)
                    .and_then(|c| c.fresh())
                {
                    return Verdict::Found(Served::from_cluster(id, entry.body, true)).into();
                }
            }
            None => {}
        }
    }
    let clusters = &inner.enabled;
    let mut verdicts: Vec<Option<ClusterVerdict>> = clusters
        .iter()
        .map(|c| match &known {
            Some((id, miss, _)) if *id == c.id => Some(miss.clone().widen()),
            _ => None,
        })
        .collect();
    // Which clusters' "not found" was partial (only a proxied route cares).
    let mut partials: Vec<bool> = clusters
        .iter()
        .map(|c| matches!(&known, Some((id, _, true)) if *id == c.id))
        .collect();
    let started = Instant::now();
    match inner.remote.strategy {
        Strategy::Parallel => {
            // Each cluster in its own task: when a decision is reached,
            // lower-priority clusters still running finish in the
            // background (their answers are recorded) and are ignored.
            let mut pending: FuturesUnordered<_> = clusters
                .iter()
                .enumerate()
                .filter(|(index, _)| verdicts[*index].is_none())
                .map(|(index, cluster)| {
                    let task = tokio::spawn({
                        let inner = inner.clone();
                        let cluster = cluster.clone();
                        let name = name.clone();
                        let route = route.clone();
                        async move {
                            let report = inner.ask_cluster(&cluster, &name, &route).await;
                            let partial = report.is_partial();
                            (report.verdict, partial)
                        }
                    });
                    async move { (index, task.await) }
                })
                .collect();
            while verdict::across_clusters(&verdicts).is_none() {
                let Some((index, answer)) = pending.next().await else {
                    break;
                };
                let (answer, partial) = answer.unwrap_or((Verdict::Unreachable, false));
                verdicts[index] = Some(answer);
                partials[index] = partial;
            }
        }
        Strategy::Sequential => {
            for (index, cluster) in clusters.iter().enumerate() {
                if verdict::across_clusters(&verdicts).is_some() {
                    break;
                }
                if verdicts[index].is_none() {
                    let report = inner.ask_cluster(cluster, &name, &route).await;
                    partials[index] = report.is_partial();
                    verdicts[index] = Some(report.verdict);
                }
            }
        }
    }
    let decided = verdict::across_clusters(&verdicts).unwrap_or(Verdict::Unreachable);
    let partial_before = |end: usize| route.proxied() && partials[..end].iter().any(|p| *p);
    let mut partial = false;
    let verdict = match decided {
        Verdict::Found((index, found)) => {
            let id = clusters[index].id.clone();
            let body = found.body.clone();
            // Busy and Unreachable are never cached, not even as "a lower
            // cluster wins".
            // So is one behind a partial "not found": with another chain,
            // that cluster might have had it.
            let provisional = verdict::is_provisional(&verdicts, index) || partial_before(index);
            inner.caches.write_since(generation, |caches| {
                caches.put_content(&id, &name, body.clone());
                if !provisional {
                    caches.set_location(Scope::All, &name, Location::Cluster(id.clone()));
                }
                caches.forget_location(Scope::Cluster(id.clone()), &name);
            });
            let mut served = Served::from_cluster(id, body, false);
            served.provisional = provisional;
            Verdict::Found(served)
        }
        Verdict::NotFound => {
            partial = partial_before(clusters.len());
            if !partial {
                inner.caches.write_since(generation, |caches| {
                    caches.set_location(Scope::All, &name, Location::Nowhere);
                });
            }
            Verdict::NotFound
        }
        Verdict::Busy => Verdict::Busy,
        Verdict::Unreachable => Verdict::Unreachable,
    };
    debug!(name = %name, answer = ?verdict, elapsed_ms = started.elapsed().as_millis() as u64,
        partial, "cluster fan-out done (Busy and Unreachable are not cached)");
    inner.update_gauges();
    Fetched { verdict, partial }
}
