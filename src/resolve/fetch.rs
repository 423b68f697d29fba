//! Steps 4 and 5 of the resolution contract: the caches, then the clusters.
//!
//! A device with a known home asks that cluster alone, and fans out to
//! every cluster only if the home says 404. Otherwise the location cache
//! says where the name is (ask that cluster alone), that it is nowhere, or
//! nothing (fan out). Concurrent misses for one key share one upstream fetch
//! ([`super::singleflight`]) that runs in its own task, so a phone that
//! gives up does not cancel it and its retry is served from cache. What a
//! fetch learns goes into the caches unless a purge happened meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tracing::{debug, info};

use crate::config::Strategy;
use crate::metrics::CacheKind;
use crate::name::Classified;
use crate::source::upstream::{
    AddressOutcome, ClusterFound, ClusterReport, ClusterVerdict, Conditional, Validators,
};
use crate::verdict::{self, Miss, Verdict};

use super::cache::{ContentEntry, Location, Scope};
use super::health::ClusterState;
use super::{Inner, Served};

/// One coalesced upstream fetch.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(super) enum FetchKey {
    /// One cluster alone (home cluster first, known location, device
    /// refresh).
    One {
        cluster: Arc<str>,
        name: Arc<str>,
        generation: u64,
    },
    /// Every enabled cluster, one of them possibly already asked.
    Fanout {
        name: Arc<str>,
        known: Option<(Arc<str>, Miss)>,
        generation: u64,
    },
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
    ) -> Verdict<Served> {
        let device = class.device.is_some();
        if let Some(key) = &class.device {
            if let Some(home) = self
                .homes
                .device(key)
                .and_then(|id| self.enabled_cluster(&id))
            {
                debug!(name = %name, device = %key, home = %home.id,
                    "device name: asking its home cluster alone");
                return match self.ask_one(&home, name, true).await {
                    Verdict::NotFound => {
                        debug!(name = %name, home = %home.id,
                            "home cluster says not found: asking every cluster");
                        self.fanout_or_stale(
                            name,
                            Some((home.id.clone(), Verdict::NotFound)),
                            Some(key),
                        )
                        .await
                    }
                    other => other,
                };
            }
        }
        match self.caches.location(Scope::All, name) {
            Some(Location::Nowhere) => {
                self.count(CacheKind::Location, true);
                debug!(name = %name, "location cache: on no cluster");
                return Verdict::NotFound;
            }
            Some(Location::Cluster(id)) => match self.enabled_cluster(&id) {
                Some(cluster) => {
                    self.count(CacheKind::Location, true);
                    debug!(name = %name, cluster = %id, "location cache: asking its cluster");
                    let miss = match self.ask_one(&cluster, name, device).await.found() {
                        Ok(served) => return Verdict::Found(served),
                        Err(miss) => miss,
                    };
                    return self
                        .fanout_or_stale(name, Some((id, miss)), class.device.as_deref())
                        .await;
                }
                None => self.count(CacheKind::Location, false),
            },
            None => self.count(CacheKind::Location, false),
        }
        debug!(name = %name, "location cache: unknown");
        self.fanout_or_stale(name, None, class.device.as_deref())
            .await
    }

    /// Local root and caches only (a lookup from another proxy, or no
    /// cluster enabled): the first cached copy among the device's home, the
    /// name's known location, then every enabled cluster in order.
    pub(super) async fn cached_only(&self, name: &Arc<str>, class: &Classified) -> Verdict<Served> {
        let device = class.device.is_some();
        for id in self.candidates(name, class.device.as_deref()) {
            if let Some(entry) = self.caches.content_tiered(&id, name, device).await {
                let entry = entry.any();
                if self.caches.cache_only_servable(&entry) {
                    self.count(CacheKind::Content, true);
                    debug!(name = %name, cluster = %id, "cache only: serving the cached copy");
                    return Verdict::Found(Served::from_cluster(id, entry.body, true));
                }
            }
        }
        self.count(CacheKind::Content, false);
        debug!(name = %name, "cache only: not cached");
        Verdict::NotFound
    }

    /// The clusters whose cached copy of `name` is worth serving without
    /// asking, best first: the device's home, the name's known location,
    /// then every enabled cluster in order.
    fn candidates(&self, name: &Arc<str>, device: Option<&str>) -> Vec<Arc<str>> {
        let mut candidates: Vec<Arc<str>> = Vec::new();
        if let Some(home) = device.and_then(|d| self.homes.device(d)) {
            candidates.push(home);
        }
        if let Some(Location::Cluster(id)) = self.caches.location(Scope::All, name) {
            candidates.push(id);
        }
        for cluster in &self.enabled {
            if !candidates.contains(&cluster.id) {
                candidates.push(cluster.id.clone());
            }
        }
        candidates
    }

    /// Stale-if-error: the clusters that would answer `name` said `failed`
    /// (busy or unreachable); the best cached copy confirmed within
    /// `cache.max_stale` is served instead, logged and counted.
    pub(super) async fn stale_if_error(
        &self,
        name: &Arc<str>,
        device: Option<&str>,
        failed: Verdict<Served>,
    ) -> Verdict<Served> {
        for id in self.candidates(name, device) {
            let Some(cached) = self
                .caches
                .content_tiered(&id, name, device.is_some())
                .await
            else {
                continue;
            };
            let entry = cached.any();
            if self.caches.within_max_stale(&entry) {
                return self.serve_stale(id, name, entry, &failed);
            }
        }
        failed
    }

    fn serve_stale(
        &self,
        id: Arc<str>,
        name: &Arc<str>,
        entry: ContentEntry,
        failed: &Verdict<Served>,
    ) -> Verdict<Served> {
        info!(name = %name, cluster = %id, answer = ?failed,
            age = %humantime::format_duration(Duration::from_secs(entry.age().as_secs())),
            "clusters cannot answer: serving the last good copy (stale-if-error)");
        self.metrics.stale_served.inc();
        self.count(CacheKind::Content, true);
        Verdict::Found(Served::from_cluster(id, entry.body, true))
    }

    /// One cluster alone, through the caches (memory, then disk): a fresh
    /// copy is served; a stale copy is re-fetched and served only if the
    /// cluster cannot answer, within `cache.max_stale` (stale-if-error); a
    /// recent 404 from this cluster is remembered for `negative_ttl`.
    pub(super) async fn ask_one(
        self: &Arc<Self>,
        cluster: &Arc<ClusterState>,
        name: &Arc<str>,
        device: bool,
    ) -> Verdict<Served> {
        let id = &cluster.id;
        let cached = self.caches.content_tiered(id, name, device).await;
        self.count(
            CacheKind::Content,
            cached.as_ref().is_some_and(|c| c.is_fresh()),
        );
        let stale = match cached {
            Some(cached) if cached.is_fresh() => {
                debug!(name = %name, cluster = %id, "content cache: fresh");
                return Verdict::Found(Served::from_cluster(id.clone(), cached.any().body, true));
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
                    return Verdict::NotFound;
                }
                None
            }
        };
        let generation = self.caches.generation();
        let key = FetchKey::One {
            cluster: id.clone(),
            name: name.clone(),
            generation,
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
                held,
            )
        });
        if !leader {
            debug!(name = %name, cluster = %id, "joining a fetch in flight");
        }
        match flight.await.unwrap_or(Verdict::Unreachable) {
            answered @ (Verdict::Found(_) | Verdict::NotFound) => answered,
            failed => match stale {
                Some(entry) if self.caches.within_max_stale(&entry) => {
                    self.serve_stale(id.clone(), name, entry, &failed)
                }
                _ => failed,
            },
        }
    }

    /// Every enabled cluster, coalesced.
    pub(super) async fn fanout(
        self: &Arc<Self>,
        name: &Arc<str>,
        known: Option<(Arc<str>, Miss)>,
        device: bool,
    ) -> Verdict<Served> {
        let generation = self.caches.generation();
        let key = FetchKey::Fanout {
            name: name.clone(),
            known: known.clone(),
            generation,
        };
        let (flight, leader) = self.flights.run(key, || {
            fetch_all(self.clone(), name.clone(), known, device, generation)
        });
        debug!(name = %name, leader, "asking the clusters");
        flight.await.unwrap_or(Verdict::Unreachable)
    }

    /// [`Inner::fanout`], then stale-if-error when the clusters are busy or
    /// unreachable.
    pub(super) async fn fanout_or_stale(
        self: &Arc<Self>,
        name: &Arc<str>,
        known: Option<(Arc<str>, Miss)>,
        device: Option<&str>,
    ) -> Verdict<Served> {
        match self.fanout(name, known, device.is_some()).await {
            failed @ (Verdict::Busy | Verdict::Unreachable) => {
                self.stale_if_error(name, device, failed).await
            }
            answered => answered,
        }
    }

    /// Asks one cluster (its addresses in order), conditionally if a copy
    /// is `held`, and records the answers.
    async fn ask_cluster(
        &self,
        cluster: &ClusterState,
        name: &str,
        held: Option<&Conditional>,
    ) -> ClusterReport {
        let report = self
            .upstream
            .fetch_cluster_if(&cluster.config.addresses, name, held)
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
    held: Option<ContentEntry>,
) -> Verdict<Served> {
    let id = &cluster.id;
    // A flight that ended between this waiter's cache check and the start
    // of this one has filled the cache: use it.
    if let Some(entry) = inner
        .caches
        .content(id, &name, device)
        .and_then(|c| c.fresh())
    {
        return Verdict::Found(Served::from_cluster(id.clone(), entry.body, true));
    }
    let conditional = held.as_ref().map(|entry| Conditional {
        validators: entry.validators.clone(),
        body: entry.body.clone(),
    });
    let report = inner
        .ask_cluster(&cluster, &name, conditional.as_ref())
        .await;
    let (validators, not_modified) = found_details(&report);
    let verdict = match report.verdict {
        Verdict::Found(ClusterFound { body, .. }) => {
            inner.caches.write_since(generation, |caches| {
                match held.as_ref().filter(|_| not_modified) {
                    Some(entry) => caches.confirm(id, &name, entry),
                    None => caches.put_fetched(id, &name, body.clone(), validators),
                }
                caches.forget_location(Scope::Cluster(id.clone()), &name);
            });
            if not_modified {
                debug!(name = %name, cluster = %id, "not modified (304): the cached copy is current");
            }
            Verdict::Found(Served::from_cluster(id.clone(), body, not_modified))
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
    verdict
}

/// The flight of [`FetchKey::Fanout`]: every enabled cluster (but the one
/// whose verdict is `known`), in parallel or in sequence, reduced by
/// [`verdict::across_clusters`]; the result goes into the caches.
async fn fetch_all(
    inner: Arc<Inner>,
    name: Arc<str>,
    known: Option<(Arc<str>, Miss)>,
    device: bool,
    generation: u64,
) -> Verdict<Served> {
    // A flight that ended between this waiter's cache check and the start
    // of this one has filled the cache: use it.
    if known.is_none() {
        match inner.caches.location(Scope::All, &name) {
            Some(Location::Nowhere) => return Verdict::NotFound,
            Some(Location::Cluster(id)) => {
                if let Some(entry) = inner
                    .caches
                    .content(&id, &name, device)
                    .and_then(|c| c.fresh())
                {
                    return Verdict::Found(Served::from_cluster(id, entry.body, true));
                }
            }
            None => {}
        }
    }
    let clusters = &inner.enabled;
    let mut verdicts: Vec<Option<ClusterVerdict>> = clusters
        .iter()
        .map(|c| match &known {
            Some((id, miss)) if *id == c.id => Some(miss.clone().widen()),
            _ => None,
        })
        .collect();
    let mut validators = vec![Validators::default(); clusters.len()];
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
                        async move {
                            let report = inner.ask_cluster(&cluster, &name, None).await;
                            (found_details(&report).0, report.verdict)
                        }
                    });
                    async move { (index, task.await) }
                })
                .collect();
            while verdict::across_clusters(&verdicts).is_none() {
                let Some((index, answer)) = pending.next().await else {
                    break;
                };
                let (found_validators, verdict) =
                    answer.unwrap_or((Validators::default(), Verdict::Unreachable));
                validators[index] = found_validators;
                verdicts[index] = Some(verdict);
            }
        }
        Strategy::Sequential => {
            for (index, cluster) in clusters.iter().enumerate() {
                if verdict::across_clusters(&verdicts).is_some() {
                    break;
                }
                if verdicts[index].is_none() {
                    let report = inner.ask_cluster(cluster, &name, None).await;
                    validators[index] = found_details(&report).0;
                    verdicts[index] = Some(report.verdict);
                }
            }
        }
    }
    let decided = verdict::across_clusters(&verdicts).unwrap_or(Verdict::Unreachable);
    let verdict = match decided {
        Verdict::Found((index, found)) => {
            let id = clusters[index].id.clone();
            let body = found.body.clone();
            // Busy and Unreachable are never cached, not even as "a lower
            // cluster wins".
            let provisional = verdict::is_provisional(&verdicts, index);
            inner.caches.write_since(generation, |caches| {
                caches.put_fetched(&id, &name, body.clone(), validators[index].clone());
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
            inner.caches.write_since(generation, |caches| {
                caches.set_location(Scope::All, &name, Location::Nowhere);
            });
            Verdict::NotFound
        }
        Verdict::Busy => Verdict::Busy,
        Verdict::Unreachable => Verdict::Unreachable,
    };
    debug!(name = %name, answer = ?verdict, elapsed_ms = started.elapsed().as_millis() as u64,
        "cluster fan-out done (Busy and Unreachable are not cached)");
    inner.update_gauges();
    verdict
}

/// The validators the address that decided a Found sent, and whether it
/// said 304 (the copy held is current).
fn found_details(report: &ClusterReport) -> (Validators, bool) {
    let Verdict::Found(found) = &report.verdict else {
        return (Validators::default(), false);
    };
    match report.addresses.get(found.address) {
        Some((_, answer)) => (
            answer.validators.clone(),
            matches!(answer.outcome, AddressOutcome::NotModified(_)),
        ),
        None => (Validators::default(), false),
    }
}
