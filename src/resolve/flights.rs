//! The two kinds of coalesced upstream fetch, each run in its own task:
//! one cluster alone ([`fetch_one`]) and every enabled cluster
//! ([`fetch_all`], reduced by [`verdict::across_clusters`]). What they
//! learn goes into the caches, unless a purge happened since they began or
//! the answer is partial for a proxied lookup.

use std::sync::Arc;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use tracing::debug;

use crate::config::Strategy;
use crate::source::upstream::{
    AddressOutcome, ClusterFound, ClusterReport, ClusterVerdict, Conditional, Validators,
};
use crate::verdict::{self, Verdict};

use super::cache::{ContentEntry, Location, Scope};
use super::fetch::{Fetched, Known};
use super::health::ClusterState;
use super::route::Route;
use super::singleflight::Wanted;
use super::{Inner, Served};

/// The flight of [`super::fetch::FetchKey::One`]; a `held` copy is asked
/// for conditionally, and a 304 confirms it.
// The flight's parts, each used once: a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub(super) async fn fetch_one(
    inner: Arc<Inner>,
    wanted: Wanted,
    cluster: Arc<ClusterState>,
    name: Arc<str>,
    device: bool,
    generation: u64,
    route: Route,
    held: Option<ContentEntry>,
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
    let conditional = held.as_ref().map(|entry| Conditional {
        validators: entry.validators.clone(),
        body: entry.body.clone(),
    });
    let report = inner
        .ask_cluster(&cluster, &name, &route, conditional.as_ref(), &wanted)
        .await;
    let partial = route.proxied() && report.is_partial();
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

/// What one cluster of a fan-out answered: the validators of its Found, its
/// verdict, and whether its "not found" was partial.
type Answered = (Validators, ClusterVerdict, bool);

/// The flight of [`super::fetch::FetchKey::Fanout`]: every enabled cluster
/// (but the one whose verdict is `known`), in parallel or in sequence,
/// reduced by [`verdict::across_clusters`]; the result goes into the caches.
pub(super) async fn fetch_all(
    inner: Arc<Inner>,
    wanted: Wanted,
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
    let mut validators = vec![Validators::default(); clusters.len()];
    let answered = |report: ClusterReport| -> Answered {
        let partial = report.is_partial();
        (found_details(&report).0, report.verdict, partial)
    };
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
                        let wanted = wanted.clone();
                        async move {
                            let report = inner
                                .ask_cluster(&cluster, &name, &route, None, &wanted)
                                .await;
                            answered(report)
                        }
                    });
                    async move { (index, task.await) }
                })
                .collect();
            while verdict::across_clusters(&verdicts).is_none() {
                let Some((index, answer)) = pending.next().await else {
                    break;
                };
                let (found_validators, verdict, partial) =
                    answer.unwrap_or((Validators::default(), Verdict::Unreachable, false));
                validators[index] = found_validators;
                verdicts[index] = Some(verdict);
                partials[index] = partial;
            }
        }
        Strategy::Sequential => {
            for (index, cluster) in clusters.iter().enumerate() {
                if verdict::across_clusters(&verdicts).is_some() {
                    break;
                }
                if verdicts[index].is_none() {
                    let report = inner
                        .ask_cluster(cluster, &name, &route, None, &wanted)
                        .await;
                    let (found_validators, verdict, partial) = answered(report);
                    validators[index] = found_validators;
                    partials[index] = partial;
                    verdicts[index] = Some(verdict);
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
            // cluster wins"; nor is one behind a partial "not found": with
            // another chain, that cluster might have had it.
            let provisional = verdict::is_provisional(&verdicts, index) || partial_before(index);
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
