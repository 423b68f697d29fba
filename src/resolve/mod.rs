//! Which bytes answer a name. Everything that decides that lives here; the
//! TFTP and HTTP fronts only speak their protocol and never know about
//! clusters. The order is the resolution contract (ARCHITECTURE.md, "The
//! resolution contract"):
//!
//! 1. normalise and classify the name, refusing unsafe ones (they never
//!    reach a cluster);
//! 2. a cluster-specific name without a MAC (`*.sgn`, ITL/CTL, ring lists,
//!    `SK…`) asked by a client whose home cluster is known: that cluster
//!    first (`remote.prefer_home_cluster`); Found is served, anything else
//!    goes on;
//! 3. the local root;
//! 4. the caches (`cache`): a device name whose device has a known home
//!    (`home`) is asked of that cluster alone; otherwise the location
//!    cache says where the name is, or that it is nowhere;
//! 5. the remote clusters over HTTP, all at once (`parallel`) or one after
//!    another (`sequential`), reduced by `crate::verdict::across_clusters`.
//!
//! The jobs are split: this file is the facade (the [`Resolver`] and its
//! [`ResolverHandle`]) and steps 1–3; `fetch` is steps 4–5 (caches and
//! coalesced upstream fetches); `health` records what each cluster
//! address last answered and holds failed addresses down (`hold`: the
//! back-off arithmetic); `reload` carries what was learned over a
//! configuration change.

mod cache;
mod fetch;
mod flights;
mod health;
mod hold;
mod home;
mod inspect;
mod reload;
mod route;
mod singleflight;
mod stale;
mod store;
mod tables;

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::debug;

use crate::body::{Blob, Body};
use crate::config::{Config, OnUnreachable, RemoteConfig};
use crate::metrics::{CacheKind, CacheLabels, HomeLabels, HomeTable, Metrics};
use crate::name::{self, Classified, NameError};
use crate::source::local::{LocalError, LocalRoot};
use crate::source::upstream::{ClusterReport, Upstream, UpstreamError};
use crate::verdict::Verdict;
use crate::via::{Chain, Partial, ViaId};

use cache::Caches;
use fetch::{FetchKey, Fetched, Tally};
use health::ClusterState;
use home::Homes;
use route::Route;
use singleflight::SingleFlight;

pub use health::{AddressStatus, ClusterStatus};
pub use inspect::{CachedCopy, ClusterCache, Learned, LearnedPlan};

/// One read request, as the resolver sees it.
#[derive(Clone, Debug)]
pub struct Lookup<'a> {
    /// The name as the phone sent it.
    pub name: &'a str,
    /// The phone's address (learns and uses home clusters).
    pub client: IpAddr,
    /// The proxies the request came through (its `Via`; empty for a phone
    /// and for TFTP). Upstream requests carry it plus our entry; a chain
    /// that names us, or is at `remote.max_hops`, is answered from local
    /// files and caches only ([`crate::via::Chain::stop`]).
    pub via: Chain,
}

/// An [`Answer`], and whether it may miss files because the lookup (or one
/// it depended on) was answered from local files and caches only; the
/// HTTP front says so to the hop that asked ([`crate::via::PARTIAL_HEADER`]).
#[derive(Debug)]
pub struct Resolved {
    pub answer: Answer,
    pub partial: Option<Partial>,
}

/// Where an answer came from (for logs and metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Local,
    Cache { cluster: Arc<str> },
    Cluster { cluster: Arc<str> },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Local => f.write_str("local"),
            Source::Cache { cluster } => write!(f, "cache:{cluster}"),
            Source::Cluster { cluster } => write!(f, "cluster:{cluster}"),
        }
    }
}

/// The resolver's verdict on a lookup, as the fronts translate it.
#[derive(Debug)]
pub enum Answer {
    /// Serve this body.
    File { body: Body, source: Source },
    /// Nobody has it (TFTP error 1, HTTP 404).
    NotFound,
    /// Someone who may have it is busy or unreachable: the phone must retry
    /// (TFTP error 0 `busy, retry later`, HTTP 503).
    RetryLater,
    /// The name is unsafe or unreadable here (TFTP error 2, HTTP 403).
    Denied(Denied),
}

/// Why a name is refused.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// Unsafe or malformed: it never reaches the root or a cluster.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The local root refuses it (outside the root, not a file, unreadable).
    #[error(transparent)]
    Local(#[from] LocalError),
}

/// The resolver cannot be built from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("tftp.root {path}: {source}")]
    Root {
        path: String,
        source: std::io::Error,
    },
    #[error("remote clusters: {0}")]
    Upstream(#[from] UpstreamError),
}

/// The resolver in force, shared by every front; a reload replaces it while
/// requests run (each request keeps the one it started with).
#[derive(Clone)]
pub struct ResolverHandle(Arc<ArcSwap<Resolver>>);

impl ResolverHandle {
    pub fn new(resolver: Resolver) -> ResolverHandle {
        ResolverHandle(Arc::new(ArcSwap::from_pointee(resolver)))
    }

    /// The resolver in force now.
    pub fn current(&self) -> Arc<Resolver> {
        self.0.load_full()
    }

    /// Puts `resolver` in force for every later request.
    pub(crate) fn replace(&self, resolver: Resolver) {
        self.0.store(Arc::new(resolver));
    }
}

/// Decides which bytes answer a name.
pub struct Resolver {
    local: Option<LocalRoot>,
    inner: Arc<Inner>,
}

/// The part of a resolver that fetch tasks share.
struct Inner {
    upstream: Upstream,
    remote: RemoteConfig,
    /// Every configured cluster, in priority order.
    clusters: Vec<Arc<ClusterState>>,
    /// The enabled ones, in priority order.
    enabled: Vec<Arc<ClusterState>>,
    caches: Arc<Caches>,
    homes: Arc<Homes>,
    flights: SingleFlight<FetchKey, Fetched>,
    metrics: Arc<Metrics>,
    /// Our name in `Via` entries.
    via_id: ViaId,
}

/// A body the resolver can serve, with where it came from.
#[derive(Clone, Debug)]
struct Served {
    body: Blob,
    source: Source,
    /// A higher-priority cluster was busy or unreachable
    /// ([`crate::verdict::is_provisional`]): served, but learned neither as
    /// the name's location nor as a home.
    provisional: bool,
}

impl Served {
    /// A copy from the content cache, or just fetched from a cluster.
    fn from_cluster(cluster: Arc<str>, body: Blob, cached: bool) -> Served {
        let source = if cached {
            Source::Cache { cluster }
        } else {
            Source::Cluster { cluster }
        };
        Served {
            body,
            source,
            provisional: false,
        }
    }
}

impl Resolver {
    /// A resolver with empty caches and home tables.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Resolver, ResolverError> {
        let caches = Arc::new(Caches::new((&config.cache).into()));
        let homes = Arc::new(Homes::new(config.cache.max_homes));
        let resolver = Resolver::build(config, metrics, caches, homes, &[])?;
        resolver.inner.restore_tables();
        Ok(resolver)
    }

    /// Waits for the cache writes in progress and writes the location and
    /// home tables to the cache directory (nothing without `cache.dir`):
    /// the daemon calls it every minute and at shutdown.
    pub async fn persist(&self) {
        self.inner.caches.flush().await;
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.save_tables()).await;
    }

    /// Answers one lookup. Must run within a tokio runtime (upstream
    /// fetches are spawned). Dropping the future does not cancel a fetch it
    /// started: its result still fills the caches.
    pub async fn resolve(&self, lookup: &Lookup<'_>) -> Answer {
        self.resolve_chained(lookup).await.answer
    }

    /// [`Resolver::resolve`], saying whether a "not found" may miss files
    /// (what the HTTP front tells another tftproxy).
    pub async fn resolve_chained(&self, lookup: &Lookup<'_>) -> Resolved {
        let answer = |answer| Resolved {
            answer,
            partial: None,
        };
        let name = match name::normalise(lookup.name) {
            Ok(name) => name,
            Err(error) => return answer(Answer::Denied(error.into())),
        };
        let class = name::classify(&name);
        let name: Arc<str> = Arc::from(name);
        let inner = &self.inner;
        // The client of a proxied request is a proxy: its address is no
        // phone's, so it neither uses nor teaches client homes.
        let proxied = lookup.via.tftproxy_hops() > 0;
        // Made only for a lookup that asks a cluster (its `Via` is text).
        let route = || Route::new(&lookup.via, &inner.via_id);

        // 2. A cluster-specific name for a client whose home is known.
        if let Some(home) = inner.client_home_first(lookup, &class, proxied) {
            debug!(name = %name, client = %lookup.client, home = %home.id,
                "cluster-specific name: asking the client's home cluster first");
            match inner.ask_one(&home, &name, false, &route()).await.verdict {
                Verdict::Found(served) => return answer(served.into()),
                other => debug!(name = %name, home = %home.id, answer = ?other,
                    "home cluster did not serve it; going on"),
            }
        }

        // 3. The local root.
        if let Some(local) = self.local_answer(&name) {
            return answer(local);
        }

        // 4 and 5. Caches, then the clusters.
        // A loop or a chain at max_hops stops here (counted and logged).
        let (verdict, partial) = if inner.enabled.is_empty() {
            (inner.cached_only(&name, &class).await, None)
        } else if let Some(stop) = inner.stop(&lookup.via, &name) {
            (
                inner.cached_only(&name, &class).await,
                Some(Partial::from(stop)),
            )
        } else {
            let fetched = inner.remote(&name, &class, &route()).await;
            (
                fetched.verdict,
                fetched.partial.then_some(Partial::Upstream),
            )
        };
        inner.learn_home(lookup, &class, proxied, &verdict);
        let answer = match verdict {
            Verdict::Found(served) => return answer(served.into()),
            Verdict::NotFound => Answer::NotFound,
            Verdict::Busy => Answer::RetryLater,
            Verdict::Unreachable => match inner.remote.on_unreachable {
                OnUnreachable::RetryLater => Answer::RetryLater,
                OnUnreachable::NotFound => Answer::NotFound,
            },
        };
        Resolved { answer, partial }
    }

    /// The answer [`Resolver::resolve`] would give, if steps 1–4 settle it
    /// without asking a cluster: an unsafe name, a local file, a fresh
    /// cached copy, a name cached as on no cluster. `None` when `resolve`
    /// would ask a cluster (a lookup that came through a proxy: always).
    /// The TFTP front serves these without holding a `tftp.max_resolving`
    /// permit. Reads the disk cache, never the network.
    pub async fn resolve_nearby(&self, lookup: &Lookup<'_>) -> Option<Answer> {
        let inner = &self.inner;
        if lookup.via.is_empty() && inner.enabled.is_empty() {
            // No cluster to wait on: the full lookup is as quick.
            return Some(self.resolve(lookup).await);
        }
        let name = match name::normalise(lookup.name) {
            Ok(name) => name,
            Err(error) => return Some(Answer::Denied(error.into())),
        };
        if !lookup.via.is_empty() {
            return None;
        }
        let class = name::classify(&name);
        let name: Arc<str> = Arc::from(name);
        let mut tally = Tally::default();
        // 2. The client's home first: only its fresh copy settles it here;
        // a 404 remembered from it goes on, as in `resolve`.
        if let Some(home) = inner.client_home_first(lookup, &class, false) {
            match inner.cached_one(&home, &name, false, &mut tally).await {
                Ok(Verdict::Found(served)) => {
                    tally.apply(inner);
                    return Some(served.into());
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        // 3. The local root.
        if let Some(local) = self.local_answer(&name) {
            tally.apply(inner);
            return Some(local);
        }
        // 4, from the tables and fresh copies only.
        let verdict = inner.remote_nearby(&name, &class, &mut tally).await?;
        tally.apply(inner);
        inner.learn_home(lookup, &class, false, &verdict);
        match verdict {
            Verdict::Found(served) => Some(served.into()),
            _ => Some(Answer::NotFound),
        }
    }

    /// Step 3: the local root's answer, if it has one for `name`.
    fn local_answer(&self, name: &str) -> Option<Answer> {
        match self.local.as_ref()?.open(name) {
            Ok(Some(body)) => Some(Answer::File {
                body,
                source: Source::Local,
            }),
            Ok(None) => None,
            Err(error) => {
                if matches!(error, LocalError::Io { .. }) {
                    tracing::warn!(%error, "local root");
                }
                Some(Answer::Denied(error.into()))
            }
        }
    }

    /// Our name in `Via` entries (`http.via_id`, or the host name).
    pub fn via_id(&self) -> &ViaId {
        &self.inner.via_id
    }

    /// Drops the location and content entries for `name` (as a phone would
    /// ask it; compared without regard to case), or every entry when `None`.
    /// Home tables are kept. Returns how many entries were dropped.
    pub fn purge(&self, name: Option<&str>) -> usize {
        let dropped = match name {
            Some(raw) => {
                let normalised = name::normalise(raw).unwrap_or(Cow::Borrowed(raw));
                self.inner.caches.purge(Some(&normalised))
            }
            None => self.inner.caches.purge(None),
        };
        debug!(name = ?name, dropped, "cache purge");
        self.inner.update_gauges();
        dropped
    }

    /// Brings the cache and home-table gauges up to date (exact counts; the
    /// admin front calls this before encoding the metrics).
    pub fn refresh_gauges(&self) {
        self.inner.caches.run_pending_tasks();
        self.inner.homes.run_pending_tasks();
        self.inner.update_gauges();
    }

    /// The cluster learned as `device`'s home (`SEP001122AABBCC`, …).
    pub fn home_of_device(&self, device: &str) -> Option<String> {
        self.inner.homes.device(device).map(|c| c.to_string())
    }

    /// The cluster learned as the home of phones at `client`.
    pub fn home_of_client(&self, client: IpAddr) -> Option<String> {
        self.inner.homes.client(client).map(|c| c.to_string())
    }

    /// The learned home cluster of phones at `client`, if it is enabled, and
    /// its addresses (base URLs) in order — where the secure-config relay
    /// sends their HTTPS connections.
    pub(crate) fn home_addresses_of_client(
        &self,
        client: IpAddr,
    ) -> Option<(Arc<str>, Vec<String>)> {
        let home = self.inner.homes.client(client)?;
        let cluster = self.inner.enabled_cluster(&home)?;
        Some((cluster.id.clone(), cluster.config.addresses.clone()))
    }

    // ---- what `tftproxy locate` (the diagnose module) reads ----------------------

    /// The local root, if one is configured.
    pub(crate) fn local_root(&self) -> Option<&LocalRoot> {
        self.local.as_ref()
    }

    /// `[remote]` as configured.
    pub(crate) fn remote(&self) -> &RemoteConfig {
        &self.inner.remote
    }

    /// Every configured cluster's id and whether it is enabled, in
    /// priority order.
    pub(crate) fn cluster_ids(&self) -> impl Iterator<Item = (&Arc<str>, bool)> {
        self.inner
            .clusters
            .iter()
            .map(|c| (&c.id, c.config.enabled))
    }

    /// Asks every address of every enabled cluster at once for `name`,
    /// bypassing caches and flights, and records the answers in the cluster
    /// status like any fetch. Enabled clusters in priority order.
    pub(crate) async fn ask_every_address(&self, name: &str) -> Vec<(Arc<str>, ClusterReport)> {
        let inner = &self.inner;
        futures::future::join_all(inner.enabled.iter().map(|cluster| async move {
            let report = inner
                .upstream
                .fetch_every_address(&cluster.config.addresses, name)
                .await;
            inner.record(cluster, &report);
            (cluster.id.clone(), report)
        }))
        .await
    }
}

impl From<Served> for Answer {
    fn from(served: Served) -> Answer {
        Answer::File {
            body: Body::Memory(served.body),
            source: served.source,
        }
    }
}

impl Inner {
    /// Step 2: the cluster to ask first for a cluster-specific name, the
    /// asking phone's known home (a proxied lookup's client is no phone).
    fn client_home_first(
        &self,
        lookup: &Lookup<'_>,
        class: &Classified,
        proxied: bool,
    ) -> Option<Arc<ClusterState>> {
        if proxied || !class.cluster_specific || !self.remote.prefer_home_cluster {
            return None;
        }
        self.homes
            .client(lookup.client)
            .and_then(|id| self.enabled_cluster(&id))
    }

    /// A device name found on a cluster: that cluster is the home of the
    /// device and of the phone asking.
    fn learn_home(
        &self,
        lookup: &Lookup<'_>,
        class: &Classified,
        proxied: bool,
        verdict: &Verdict<Served>,
    ) {
        let (Some(device), Verdict::Found(served)) = (&class.device, verdict) else {
            return;
        };
        let learned = match &served.source {
            Source::Cache { cluster } | Source::Cluster { cluster } if !served.provisional => {
                cluster
            }
            _ => return,
        };
        let client = (!proxied).then_some(lookup.client);
        if self.homes.learn(device, client, learned) {
            debug!(device = %device, client = %lookup.client, home = %learned,
                "learned home cluster");
        }
    }

    fn enabled_cluster(&self, id: &str) -> Option<Arc<ClusterState>> {
        self.enabled.iter().find(|c| *c.id == *id).cloned()
    }

    fn count(&self, kind: CacheKind, hit: bool) {
        let family = if hit {
            &self.metrics.cache_hits
        } else {
            &self.metrics.cache_misses
        };
        family.get_or_create(&CacheLabels { cache: kind }).inc();
    }

    /// The gauges from the caches' current (approximate) counts.
    fn update_gauges(&self) {
        let m = &self.metrics;
        let set = |kind, value: u64| {
            m.cache_entries
                .get_or_create(&CacheLabels { cache: kind })
                .set(value as i64);
        };
        set(CacheKind::Location, self.caches.location_entries());
        set(CacheKind::Content, self.caches.content_entries());
        m.cache_bytes.set(self.caches.content_bytes() as i64);
        m.cache_disk_bytes.set(self.caches.disk_bytes() as i64);
        let homes = |table, value: u64| {
            m.home_entries
                .get_or_create(&HomeLabels { table })
                .set(value as i64);
        };
        homes(HomeTable::Device, self.homes.device_entries());
        homes(HomeTable::ClientIp, self.homes.client_entries());
        for cluster in &self.clusters {
            cluster.publish_queue(m);
        }
    }
}
