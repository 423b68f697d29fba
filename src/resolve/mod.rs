//! Which bytes answer a name. Everything that decides that lives here; the
//! TFTP and HTTP front ends only speak their protocol and never know about
//! clusters.
//!
//! The order (DESIGN.md "Resolution semantics"):
//!
//! 1. normalise and classify the name, refusing unsafe ones (they never
//!    reach a cluster);
//! 2. a cluster-specific name without a MAC (`*.sgn`, ITL/CTL, ring lists,
//!    `SK…`) asked by a client whose home cluster is known: that cluster
//!    first (`remote.prefer_home_cluster`); Found is served, anything else
//!    goes on;
//! 3. the local root;
//! 4. the caches ([`cache`]): a device name whose device has a known home
//!    ([`home`]) is asked of that cluster alone (fresh content served,
//!    stale content re-fetched after `cache.device_ttl` and served if the
//!    cluster cannot answer); otherwise the location cache says where the
//!    name is, or that it is nowhere;
//! 5. the remote clusters over HTTP ([`upstream`]), all at once (`parallel`)
//!    or one after another (`sequential`), reduced by the cross-cluster rule
//!    ([`decide`]): the highest-priority Found as soon as every
//!    higher-priority cluster has answered; else Busy → retry later; else
//!    Unreachable → `remote.on_unreachable`; else not found.
//!
//! A device name asked of its home cluster fans out to every cluster only if
//! the home says 404. A lookup that came from another proxy is answered from
//! the local root and caches only. Concurrent misses for one key share one
//! upstream fetch ([`singleflight`]) that runs in its own task, so a phone
//! that gives up does not cancel it and its retry is served from cache.

pub mod cache;
pub mod home;
pub mod singleflight;
pub mod upstream;

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use tracing::debug;

use crate::body::Body;
use crate::config::{ClusterConfig, Config, OnUnreachable, RemoteConfig, Strategy};
use crate::local::{LocalError, LocalRoot};
use crate::metrics::{
    CacheKind, CacheLabels, ClusterLabels, Front, HomeLabels, HomeTable, Metrics, UpstreamLabels,
    UpstreamOutcome,
};
use crate::name::{self, Classified, NameError};

use cache::{CacheSettings, Cached, Caches, Location, Scope};
use home::Homes;
use singleflight::SingleFlight;
use upstream::{AddressOutcome, ClusterReport, ClusterVerdict, Upstream};

/// One read request, as the resolver sees it.
#[derive(Clone, Debug)]
pub struct Lookup<'a> {
    /// The name as the phone sent it.
    pub name: &'a str,
    /// The phone's address (learns and uses home clusters).
    pub client: IpAddr,
    pub front: Front,
    /// The request came from another proxy (it carried our `Via`): answer
    /// from local files and caches only, never forward (no loops).
    pub from_proxy: bool,
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

/// The resolver's verdict on a lookup.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Serve this body.
    File { body: Body, source: Source },
    /// Nobody has it (TFTP error 1, HTTP 404).
    NotFound,
    /// Someone who may have it is busy or unreachable: the phone must retry
    /// (TFTP error 0 `busy, retry later`, HTTP 503).
    RetryLater,
    /// The name is unsafe or unreadable here (TFTP error 2, HTTP 403).
    Denied(String),
}

/// A resolver that a config reload can replace while requests run.
pub type SharedResolver = Arc<ArcSwap<Resolver>>;

/// The resolver cannot be built from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("tftp.root {path}: {source}")]
    Root {
        path: String,
        source: std::io::Error,
    },
    #[error("remote clusters: {0}")]
    Upstream(String),
}

/// What the resolver knows about one cluster (admin status page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    pub id: String,
    pub description: String,
    pub fqdn: String,
    pub enabled: bool,
    /// Some address is up (see [`AddressStatus::up`]).
    pub up: bool,
    pub addresses: Vec<AddressStatus>,
}

/// The last answer of one cluster address, recorded from every fetch
/// (phone requests and `locate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressStatus {
    /// `http://192.0.2.10:6970`.
    pub base_url: String,
    /// What the address last answered; `None` if never asked.
    pub last_outcome: Option<UpstreamOutcome>,
    /// The HTTP status of the last answer, if a response arrived.
    pub last_status: Option<u16>,
    /// How long the last answer took.
    pub last_latency: Option<Duration>,
    /// When the address was last asked.
    pub last_checked: Option<SystemTime>,
    /// The most recent failure or 503, with its time (kept after later
    /// successes, so an operator sees what went wrong last).
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    /// False when its last answer was a failure (connect error, time-out,
    /// bad status or body). True when never asked, or when it last answered
    /// 200/404/503 (a busy address is up).
    pub up: bool,
}

impl AddressStatus {
    fn new(base_url: &str) -> AddressStatus {
        AddressStatus {
            base_url: base_url.to_owned(),
            last_outcome: None,
            last_status: None,
            last_latency: None,
            last_checked: None,
            last_error: None,
            last_error_at: None,
            up: true,
        }
    }
}

/// What `tftproxy locate NAME` found: every enabled cluster's every
/// address, asked at once and bypassing the caches, and what a phone would
/// get.
#[derive(Clone, Debug)]
pub struct LocateReport {
    /// The name as given.
    pub name: String,
    /// The name as tftproxy asks clusters for it (`None` when refused).
    pub normalised: Option<String>,
    /// How the name was classified (`None` when refused).
    pub classified: Option<Classified>,
    /// Size of the local root's copy, if there is one.
    pub local: Option<u64>,
    /// Why the local root could not be read, if it could not.
    pub local_error: Option<String>,
    /// Every configured cluster in priority order.
    pub clusters: Vec<ClusterLocate>,
    pub strategy: Strategy,
    pub on_unreachable: OnUnreachable,
    /// What a phone (with no known home cluster) would get.
    pub verdict: LocateVerdict,
    /// Why, in words.
    pub reason: String,
    /// Wall time of the whole lookup.
    pub elapsed: Duration,
}

/// One cluster in a [`LocateReport`].
#[derive(Clone, Debug)]
pub struct ClusterLocate {
    pub id: String,
    pub enabled: bool,
    /// Every address's answer in the configured order, and the verdict the
    /// cluster's replicas give together; `None` for a disabled cluster (or
    /// a refused name).
    pub report: Option<ClusterReport>,
}

/// What a phone would get, as `locate` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocateVerdict {
    Denied(String),
    Local { size: u64 },
    Cluster { id: String, size: u64 },
    NotFound,
    RetryLater,
}

/// The cross-cluster rule applied to the clusters' verdicts so far, in
/// priority order (`None` = not answered yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A higher-priority cluster has not answered and no decision is
    /// possible without it.
    Pending,
    /// Serve the body of the cluster at this index.
    Found(usize),
    NotFound,
    Busy,
    Unreachable,
}

/// DESIGN.md, across clusters: the highest-priority Found, as soon as every
/// higher-priority cluster has answered (lower ones are never waited for);
/// once all answered without a Found: any Busy → Busy; else any Unreachable
/// → Unreachable; else NotFound.
pub fn decide(verdicts: &[Option<ClusterVerdict>]) -> Decision {
    for (index, verdict) in verdicts.iter().enumerate() {
        match verdict {
            None => return Decision::Pending,
            Some(ClusterVerdict::Found { .. }) => return Decision::Found(index),
            Some(_) => {}
        }
    }
    let any = |wanted: fn(&ClusterVerdict) -> bool| verdicts.iter().flatten().any(wanted);
    if any(|v| matches!(v, ClusterVerdict::Busy)) {
        Decision::Busy
    } else if any(|v| matches!(v, ClusterVerdict::Unreachable)) {
        Decision::Unreachable
    } else {
        Decision::NotFound
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
}

struct ClusterState {
    id: Arc<str>,
    config: ClusterConfig,
    status: Mutex<Vec<AddressStatus>>,
}

/// One coalesced upstream fetch.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum FetchKey {
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
        known: Option<(Arc<str>, Known)>,
        generation: u64,
    },
}
// `generation` is the caches' purge generation when the flight began: a
// request after a purge starts a new flight instead of joining one whose
// answer may be what was purged.

/// A verdict already obtained from one cluster before a fan-out.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Known {
    NotFound,
    Busy,
    Unreachable,
}

impl From<Known> for ClusterVerdict {
    fn from(known: Known) -> Self {
        match known {
            Known::NotFound => ClusterVerdict::NotFound,
            Known::Busy => ClusterVerdict::Busy,
            Known::Unreachable => ClusterVerdict::Unreachable,
        }
    }
}

/// The result of a coalesced fetch, as every waiter receives it.
#[derive(Clone)]
enum Fetched {
    Found {
        cluster: Arc<str>,
        body: Bytes,
        /// Another flight had just filled the cache (no request made).
        cached: bool,
        /// A higher-priority cluster was busy or unreachable: served, but
        /// remembered neither as the name's location nor as a home.
        provisional: bool,
    },
    NotFound,
    Busy,
    Unreachable,
}

/// A step's outcome inside the resolver.
#[derive(Clone)]
enum Outcome {
    Served {
        body: Bytes,
        source: Source,
        /// See [`Fetched::Found`]: not a basis for learning a home.
        provisional: bool,
    },
    NotFound,
    Busy,
    Unreachable,
}

// Debug output (in `debug!` lines) shows sizes, never the bodies.
impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fetched::Found {
                cluster,
                body,
                cached,
                provisional,
            } => write!(
                f,
                "Found {{ cluster: {cluster}, body: <{} bytes>, cached: {cached}, provisional: {provisional} }}",
                body.len()
            ),
            Fetched::NotFound => f.write_str("NotFound"),
            Fetched::Busy => f.write_str("Busy"),
            Fetched::Unreachable => f.write_str("Unreachable"),
        }
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Served {
                body,
                source,
                provisional,
            } => {
                write!(
                    f,
                    "Served {{ source: {source}, body: <{} bytes>, provisional: {provisional} }}",
                    body.len()
                )
            }
            Outcome::NotFound => f.write_str("NotFound"),
            Outcome::Busy => f.write_str("Busy"),
            Outcome::Unreachable => f.write_str("Unreachable"),
        }
    }
}

impl From<Fetched> for Outcome {
    fn from(fetched: Fetched) -> Self {
        match fetched {
            Fetched::Found {
                cluster,
                body,
                cached,
                provisional,
            } => Outcome::Served {
                body,
                provisional,
                source: if cached {
                    Source::Cache { cluster }
                } else {
                    Source::Cluster { cluster }
                },
            },
            Fetched::NotFound => Outcome::NotFound,
            Fetched::Busy => Outcome::Busy,
            Fetched::Unreachable => Outcome::Unreachable,
        }
    }
}

impl Resolver {
    /// A resolver with empty caches and home tables.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Resolver, ResolverError> {
        let caches = Arc::new(Caches::new(CacheSettings::from(&config.cache)));
        let homes = Arc::new(Homes::new(config.cache.max_homes));
        Resolver::build(config, metrics, caches, homes, &[])
    }

    /// A resolver for a reloaded configuration that keeps what `previous`
    /// learned, as far as it still holds:
    ///
    /// - a cluster is identified by its `id` (its addresses are replicas and
    ///   may change);
    /// - content and per-cluster location entries of clusters that are still
    ///   configured and enabled are kept, those of the others dropped;
    /// - a cross-cluster location "found on X" is kept when X is still
    ///   enabled and the clusters before it are unchanged (X still wins);
    ///   "nowhere" is kept when no cluster was added;
    /// - home entries pointing to clusters still enabled are kept;
    /// - the caches start empty if `[cache]` sizes or lifetimes changed, the
    ///   home tables if `cache.max_homes` changed;
    /// - each address's last status is kept (same cluster id and URL).
    ///
    /// Metrics are those of `previous`. Fetches in flight finish on the old
    /// resolver.
    pub fn reconfigure(config: &Config, previous: &Resolver) -> Result<Resolver, ResolverError> {
        let old = &previous.inner;
        let enabled_ids: Vec<Arc<str>> = config
            .clusters
            .iter()
            .filter(|c| c.enabled)
            .map(|c| Arc::from(c.id.as_str()))
            .collect();
        let old_enabled: Vec<Arc<str>> = old.enabled.iter().map(|c| c.id.clone()).collect();
        let settings = CacheSettings::from(&config.cache);
        let caches = if *old.caches.settings() == settings {
            old.caches.retain_clusters(&old_enabled, &enabled_ids);
            old.caches.clone()
        } else {
            Arc::new(Caches::new(settings))
        };
        let homes = if old.homes.max_homes() == config.cache.max_homes {
            old.homes.retain_clusters(&enabled_ids);
            old.homes.clone()
        } else {
            Arc::new(Homes::new(config.cache.max_homes))
        };
        let resolver = Resolver::build(config, old.metrics.clone(), caches, homes, &old.clusters)?;
        resolver.inner.update_gauges();
        Ok(resolver)
    }

    fn build(
        config: &Config,
        metrics: Arc<Metrics>,
        caches: Arc<Caches>,
        homes: Arc<Homes>,
        previous: &[Arc<ClusterState>],
    ) -> Result<Resolver, ResolverError> {
        let local = match &config.tftp.root {
            Some(path) => Some(LocalRoot::new(path).map_err(|source| ResolverError::Root {
                path: path.display().to_string(),
                source,
            })?),
            None => None,
        };
        let upstream = Upstream::new(&config.remote, config.cache.max_file_size)
            .map_err(|e| ResolverError::Upstream(e.to_string()))?;
        let clusters: Vec<Arc<ClusterState>> = config
            .clusters
            .iter()
            .map(|c| {
                let old = previous.iter().find(|p| *p.id == *c.id);
                let status = c
                    .addresses
                    .iter()
                    .map(|url| {
                        old.and_then(|old| {
                            lock(&old.status)
                                .iter()
                                .find(|s| s.base_url == *url)
                                .cloned()
                        })
                        .unwrap_or_else(|| AddressStatus::new(url))
                    })
                    .collect();
                Arc::new(ClusterState {
                    id: Arc::from(c.id.as_str()),
                    config: c.clone(),
                    status: Mutex::new(status),
                })
            })
            .collect();
        let enabled = clusters
            .iter()
            .filter(|c| c.config.enabled)
            .cloned()
            .collect();
        Ok(Resolver {
            local,
            inner: Arc::new(Inner {
                upstream,
                remote: config.remote.clone(),
                clusters,
                enabled,
                caches,
                homes,
                flights: SingleFlight::new(),
                metrics,
            }),
        })
    }

    /// Answers one lookup. Must run within a tokio runtime (upstream
    /// fetches are spawned). Dropping the future does not cancel a fetch it
    /// started: its result still fills the caches.
    pub async fn resolve(&self, lookup: &Lookup<'_>) -> Answer {
        let name = match name::normalise(lookup.name) {
            Ok(name) => name,
            Err(error) => return denied(error),
        };
        let class = name::classify(&name);
        let name: Arc<str> = Arc::from(name);
        let inner = &self.inner;

        // 2. A cluster-specific name for a client whose home is known.
        if !lookup.from_proxy && class.cluster_specific && inner.remote.prefer_home_cluster {
            if let Some(home) = inner
                .homes
                .client(lookup.client)
                .and_then(|id| inner.enabled_cluster(&id))
            {
                debug!(name = %name, client = %lookup.client, home = %home.id,
                    "cluster-specific name: asking the client's home cluster first");
                match inner.ask_one(&home, &name, false).await {
                    Outcome::Served { body, source, .. } => return file(body, source),
                    other => debug!(name = %name, home = %home.id, answer = ?other,
                        "home cluster did not serve it; going on"),
                }
            }
        }

        // 3. The local root.
        if let Some(local) = &self.local {
            match local.open(&name) {
                Ok(Some(body)) => {
                    return Answer::File {
                        body,
                        source: Source::Local,
                    }
                }
                Ok(None) => {}
                Err(error @ (LocalError::OutsideRoot(_) | LocalError::NotAFile(_))) => {
                    return Answer::Denied(error.to_string())
                }
                Err(error) => {
                    tracing::warn!(%error, "local root");
                    return Answer::Denied(error.to_string());
                }
            }
        }

        // 4 and 5. Caches, then the clusters.
        let outcome = if lookup.from_proxy || inner.enabled.is_empty() {
            inner.cached_only(&name, &class)
        } else {
            inner.remote(&name, &class).await
        };
        // A device name found on a cluster: that cluster is the home of the
        // device and of the phone asking.
        if let (
            Some(device),
            Outcome::Served {
                source: Source::Cache { cluster } | Source::Cluster { cluster },
                provisional: false,
                ..
            },
        ) = (&class.device, &outcome)
        {
            if !lookup.from_proxy && inner.homes.learn(device, Some(lookup.client), cluster) {
                debug!(device = %device, client = %lookup.client, home = %cluster,
                    "learned home cluster");
            }
        }
        inner.answer(outcome)
    }

    /// Drops the location and content entries for `name` (as a phone would
    /// ask it; compared without regard to case), or every entry when `None`.
    /// Home tables are kept. Returns how many entries were dropped.
    pub fn purge(&self, name: Option<&str>) -> usize {
        let dropped = match name {
            Some(raw) => {
                let normalised = name::normalise(raw).unwrap_or_else(|_| raw.to_owned());
                self.inner.caches.purge(Some(&normalised))
            }
            None => self.inner.caches.purge(None),
        };
        debug!(name = ?name, dropped, "cache purge");
        self.inner.update_gauges();
        dropped
    }

    /// Every configured cluster with each address's last recorded answer.
    pub fn cluster_status(&self) -> Vec<ClusterStatus> {
        self.inner
            .clusters
            .iter()
            .map(|c| {
                let addresses = lock(&c.status).clone();
                ClusterStatus {
                    id: c.config.id.clone(),
                    description: c.config.description.clone(),
                    fqdn: c.config.fqdn.clone(),
                    enabled: c.config.enabled,
                    up: addresses.iter().any(|a| a.up),
                    addresses,
                }
            })
            .collect()
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

    /// Asks every enabled cluster, every address at once, for `name`,
    /// bypassing the caches (`tftproxy locate`), and says what a phone with
    /// no known home cluster would get and why. Answers are recorded in the
    /// cluster status like any fetch.
    pub async fn locate(&self, raw: &str) -> LocateReport {
        let start = Instant::now();
        let inner = &self.inner;
        let mut report = LocateReport {
            name: raw.to_owned(),
            normalised: None,
            classified: None,
            local: None,
            local_error: None,
            clusters: inner
                .clusters
                .iter()
                .map(|c| ClusterLocate {
                    id: c.config.id.clone(),
                    enabled: c.config.enabled,
                    report: None,
                })
                .collect(),
            strategy: inner.remote.strategy,
            on_unreachable: inner.remote.on_unreachable,
            verdict: LocateVerdict::NotFound,
            reason: String::new(),
            elapsed: Duration::ZERO,
        };
        let name = match name::normalise(raw) {
            Ok(name) => name,
            Err(error) => {
                report.verdict = LocateVerdict::Denied(error.to_string());
                report.reason = format!("the name is refused ({error}): no cluster is asked");
                report.elapsed = start.elapsed();
                return report;
            }
        };
        report.classified = Some(name::classify(&name));
        if let Some(local) = &self.local {
            match local.open(&name) {
                Ok(Some(body)) => report.local = Some(body.len()),
                Ok(None) => {}
                Err(error) => report.local_error = Some(error.to_string()),
            }
        }
        let asked = futures::future::join_all(inner.enabled.iter().map(|c| {
            let name = name.as_str();
            async move {
                let cluster_report = inner
                    .upstream
                    .fetch_every_address(&c.config.addresses, name)
                    .await;
                inner.record(c, &cluster_report);
                (c.id.clone(), cluster_report)
            }
        }))
        .await;
        for (id, cluster_report) in asked {
            if let Some(entry) = report.clusters.iter_mut().find(|c| *c.id == *id) {
                entry.report = Some(cluster_report);
            }
        }
        let verdicts: Vec<Option<ClusterVerdict>> = report
            .clusters
            .iter()
            .filter(|c| c.enabled)
            .map(|c| c.report.as_ref().map(|r| r.verdict.clone()))
            .collect();
        let (cluster_verdict, cluster_reason) = explain(&report, decide(&verdicts));
        report.normalised = Some(name);
        let class = report.classified.clone().unwrap_or(Classified {
            device: None,
            cluster_specific: false,
        });
        let mut reason = String::new();
        if let Some(error) = report.local_error.clone() {
            // What `resolve` does: the local root is read before the
            // clusters, and a name it refuses is refused.
            report.verdict = LocateVerdict::Denied(error.clone());
            reason.push_str(&format!(
                "the local root (tftp.root) refuses it ({error}) before any cluster is asked; \
                 without it: {cluster_reason}"
            ));
        } else if let Some(size) = report.local {
            report.verdict = LocateVerdict::Local { size };
            reason.push_str("the local root (tftp.root) has it and is read before the clusters");
            if class.cluster_specific && inner.remote.prefer_home_cluster {
                reason.push_str(
                    "; a phone whose home cluster is known gets its home cluster's copy first",
                );
            }
            reason.push_str(&format!("; without it: {cluster_reason}"));
        } else {
            report.verdict = cluster_verdict;
            reason.push_str(&cluster_reason);
        }
        if let Some(device) = &class.device {
            reason.push_str(&format!(
                "; device {device}: once its home cluster is known, its names are asked of that cluster alone first"
            ));
        }
        report.reason = reason;
        report.elapsed = start.elapsed();
        report
    }
}

/// The verdict and explanation of the cross-cluster rule for `locate`.
fn explain(report: &LocateReport, decision: Decision) -> (LocateVerdict, String) {
    let enabled: Vec<&ClusterLocate> = report.clusters.iter().filter(|c| c.enabled).collect();
    let verdict_of = |c: &ClusterLocate| c.report.as_ref().map(|r| r.verdict.clone());
    let ids_where = |pred: fn(&ClusterVerdict) -> bool| -> String {
        enabled
            .iter()
            .filter(|c| verdict_of(c).as_ref().is_some_and(pred))
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if enabled.is_empty() {
        return (
            LocateVerdict::NotFound,
            "no cluster is enabled: only the local root and caches answer".into(),
        );
    }
    match decision {
        Decision::Found(index) => {
            let cluster = enabled[index];
            let size = match verdict_of(cluster) {
                Some(ClusterVerdict::Found { body, .. }) => body.len() as u64,
                _ => 0,
            };
            let mut reason = format!(
                "found on {} (priority {} of {})",
                cluster.id,
                index + 1,
                enabled.len()
            );
            if index > 0 {
                let before: Vec<String> = enabled[..index]
                    .iter()
                    .map(|c| match verdict_of(c) {
                        Some(v) => format!("{}: {}", c.id, v),
                        None => format!("{}: not asked", c.id),
                    })
                    .collect();
                reason.push_str(&format!(
                    "; every higher-priority cluster answered first ({})",
                    before.join(", ")
                ));
            }
            let others = enabled[index + 1..]
                .iter()
                .filter(|c| matches!(verdict_of(c), Some(ClusterVerdict::Found { .. })))
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>();
            if !others.is_empty() {
                reason.push_str(&format!(
                    "; lower-priority clusters also have it ({}) and are not used",
                    others.join(", ")
                ));
            }
            (
                LocateVerdict::Cluster {
                    id: cluster.id.clone(),
                    size,
                },
                reason,
            )
        }
        Decision::Busy => (
            LocateVerdict::RetryLater,
            format!(
                "no cluster has it and {} answered busy (503): phones are told `busy, retry later`",
                ids_where(|v| matches!(v, ClusterVerdict::Busy))
            ),
        ),
        Decision::Unreachable => {
            let down = ids_where(|v| matches!(v, ClusterVerdict::Unreachable));
            match report.on_unreachable {
                OnUnreachable::RetryLater => (
                    LocateVerdict::RetryLater,
                    format!(
                        "no cluster has it but {down} could not be reached; remote.on_unreachable = \"retry-later\": phones are told `busy, retry later` (so they do not fall back to auto-registration)"
                    ),
                ),
                OnUnreachable::NotFound => (
                    LocateVerdict::NotFound,
                    format!(
                        "no cluster has it and {down} could not be reached; remote.on_unreachable = \"not-found\": phones are told `File not found`"
                    ),
                ),
            }
        }
        Decision::NotFound | Decision::Pending => (
            LocateVerdict::NotFound,
            "every enabled cluster said not found".into(),
        ),
    }
}

impl Inner {
    fn enabled_cluster(&self, id: &str) -> Option<Arc<ClusterState>> {
        self.enabled.iter().find(|c| *c.id == *id).cloned()
    }

    fn answer(&self, outcome: Outcome) -> Answer {
        match outcome {
            Outcome::Served { body, source, .. } => file(body, source),
            Outcome::NotFound => Answer::NotFound,
            Outcome::Busy => Answer::RetryLater,
            Outcome::Unreachable => match self.remote.on_unreachable {
                OnUnreachable::RetryLater => Answer::RetryLater,
                OnUnreachable::NotFound => Answer::NotFound,
            },
        }
    }

    fn count(&self, kind: CacheKind, hit: bool) {
        let family = if hit {
            &self.metrics.cache_hits
        } else {
            &self.metrics.cache_misses
        };
        family.get_or_create(&CacheLabels { cache: kind }).inc();
    }

    /// Steps 4 and 5 for a lookup that may go upstream.
    async fn remote(self: &Arc<Self>, name: &Arc<str>, class: &Classified) -> Outcome {
        let device = class.device.is_some();
        // A device with a known home: that cluster alone first; fan out
        // only if it says 404.
        if let Some(key) = &class.device {
            if let Some(home) = self
                .homes
                .device(key)
                .and_then(|id| self.enabled_cluster(&id))
            {
                debug!(name = %name, device = %key, home = %home.id,
                    "device name: asking its home cluster alone");
                return match self.ask_one(&home, name, true).await {
                    Outcome::NotFound => {
                        debug!(name = %name, home = %home.id,
                            "home cluster says not found: asking every cluster");
                        self.fanout(name, Some((home.id.clone(), Known::NotFound)), device)
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
                return Outcome::NotFound;
            }
            Some(Location::Cluster(id)) => match self.enabled_cluster(&id) {
                Some(cluster) => {
                    self.count(CacheKind::Location, true);
                    debug!(name = %name, cluster = %id, "location cache: asking its cluster");
                    let known = match self.ask_one(&cluster, name, device).await {
                        served @ Outcome::Served { .. } => return served,
                        Outcome::NotFound => Known::NotFound,
                        Outcome::Busy => Known::Busy,
                        Outcome::Unreachable => Known::Unreachable,
                    };
                    return self.fanout(name, Some((id, known)), device).await;
                }
                None => self.count(CacheKind::Location, false),
            },
            None => self.count(CacheKind::Location, false),
        }
        debug!(name = %name, "location cache: unknown");
        self.fanout(name, None, device).await
    }

    /// Local root and caches only (a lookup from another proxy, or no
    /// cluster enabled): the first cached copy among the device's home, the
    /// name's known location, then every enabled cluster in order.
    fn cached_only(&self, name: &Arc<str>, class: &Classified) -> Outcome {
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
            if let Some(Cached::Fresh(entry) | Cached::Stale(entry)) =
                self.caches.content(&id, name, device)
            {
                self.count(CacheKind::Content, true);
                debug!(name = %name, cluster = %id, "cache only: serving the cached copy");
                return Outcome::Served {
                    body: entry.body,
                    source: Source::Cache { cluster: id },
                    provisional: false,
                };
            }
        }
        self.count(CacheKind::Content, false);
        debug!(name = %name, "cache only: not cached");
        Outcome::NotFound
    }

    /// One cluster alone, through the caches: a fresh copy is served; a
    /// stale device copy is re-fetched and served only if the cluster
    /// cannot answer (stale-if-error); a recent 404 from this cluster is
    /// remembered for `negative_ttl`.
    async fn ask_one(
        self: &Arc<Self>,
        cluster: &Arc<ClusterState>,
        name: &Arc<str>,
        device: bool,
    ) -> Outcome {
        let id = &cluster.id;
        let stale = match self.caches.content(id, name, device) {
            Some(Cached::Fresh(entry)) => {
                self.count(CacheKind::Content, true);
                debug!(name = %name, cluster = %id, "content cache: fresh");
                return Outcome::Served {
                    body: entry.body,
                    source: Source::Cache {
                        cluster: id.clone(),
                    },
                    provisional: false,
                };
            }
            Some(Cached::Stale(entry)) => {
                self.count(CacheKind::Content, false);
                debug!(name = %name, cluster = %id, age_ms = entry.age().as_millis() as u64,
                    "content cache: device file older than device_ttl, asking its cluster again");
                Some(entry)
            }
            None => {
                self.count(CacheKind::Content, false);
                debug!(name = %name, cluster = %id, "content cache: miss");
                if let Some(Location::Nowhere) =
                    self.caches.location(Scope::Cluster(id.clone()), name)
                {
                    self.count(CacheKind::Location, true);
                    debug!(name = %name, cluster = %id, "location cache: not on this cluster");
                    return Outcome::NotFound;
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
        let (flight, leader) = self.flights.run(key, || {
            fetch_one(
                self.clone(),
                cluster.clone(),
                name.clone(),
                device,
                generation,
            )
        });
        if !leader {
            debug!(name = %name, cluster = %id, "joining a fetch in flight");
        }
        match flight.await.unwrap_or(Fetched::Unreachable) {
            fetched @ (Fetched::Found { .. } | Fetched::NotFound) => fetched.into(),
            failed => match stale {
                Some(entry) => {
                    debug!(name = %name, cluster = %id, answer = ?failed,
                        "cluster cannot answer: serving the stale copy");
                    self.count(CacheKind::Content, true);
                    Outcome::Served {
                        body: entry.body,
                        source: Source::Cache {
                            cluster: id.clone(),
                        },
                        provisional: false,
                    }
                }
                None => failed.into(),
            },
        }
    }

    /// Every enabled cluster, coalesced.
    async fn fanout(
        self: &Arc<Self>,
        name: &Arc<str>,
        known: Option<(Arc<str>, Known)>,
        device: bool,
    ) -> Outcome {
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
        flight.await.unwrap_or(Fetched::Unreachable).into()
    }

    /// Asks one cluster (its addresses in order) and records the answers.
    async fn ask_cluster(&self, cluster: &ClusterState, name: &str) -> ClusterReport {
        let report = self
            .upstream
            .fetch_cluster(&cluster.config.addresses, name)
            .await;
        self.record(cluster, &report);
        report
    }

    /// Metrics and status of every address answer in `report`.
    fn record(&self, cluster: &ClusterState, report: &ClusterReport) {
        let now = SystemTime::now();
        let mut status = lock(&cluster.status);
        for (base_url, answer) in &report.addresses {
            let outcome = match &answer.outcome {
                AddressOutcome::Found(_) => UpstreamOutcome::Found,
                AddressOutcome::NotFound => UpstreamOutcome::NotFound,
                AddressOutcome::Busy => UpstreamOutcome::Busy,
                AddressOutcome::Failed(_) => UpstreamOutcome::Failed,
            };
            self.metrics
                .upstream_requests
                .get_or_create(&UpstreamLabels {
                    cluster: cluster.id.to_string(),
                    address: base_url.clone(),
                    outcome,
                })
                .inc();
            self.metrics
                .upstream_latency
                .get_or_create(&ClusterLabels {
                    cluster: cluster.id.to_string(),
                })
                .observe(answer.elapsed.as_secs_f64());
            if let Some(s) = status.iter_mut().find(|s| s.base_url == *base_url) {
                s.last_outcome = Some(outcome);
                s.last_status = answer.status;
                s.last_latency = Some(answer.elapsed);
                s.last_checked = Some(now);
                s.up = outcome != UpstreamOutcome::Failed;
                match &answer.outcome {
                    AddressOutcome::Failed(reason) => {
                        s.last_error = Some(reason.to_string());
                        s.last_error_at = Some(now);
                    }
                    AddressOutcome::Busy => {
                        s.last_error = Some("busy (HTTP 503)".into());
                        s.last_error_at = Some(now);
                    }
                    _ => {}
                }
            }
        }
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
        m.home_entries
            .get_or_create(&HomeLabels {
                table: HomeTable::Device,
            })
            .set(self.homes.device_entries() as i64);
        m.home_entries
            .get_or_create(&HomeLabels {
                table: HomeTable::ClientIp,
            })
            .set(self.homes.client_entries() as i64);
    }
}

/// The flight of [`FetchKey::One`].
async fn fetch_one(
    inner: Arc<Inner>,
    cluster: Arc<ClusterState>,
    name: Arc<str>,
    device: bool,
    generation: u64,
) -> Fetched {
    let id = &cluster.id;
    // A flight that ended between this waiter's cache check and the start
    // of this one has filled the cache: use it.
    if let Some(Cached::Fresh(entry)) = inner.caches.content(id, &name, device) {
        return Fetched::Found {
            cluster: id.clone(),
            body: entry.body,
            cached: true,
            provisional: false,
        };
    }
    let report = inner.ask_cluster(&cluster, &name).await;
    let fetched = match report.verdict {
        ClusterVerdict::Found { body, .. } => {
            inner.caches.write_since(generation, |caches| {
                caches.put_content(id, &name, body.clone());
                caches.forget_location(Scope::Cluster(id.clone()), &name);
            });
            Fetched::Found {
                cluster: id.clone(),
                body,
                cached: false,
                provisional: false,
            }
        }
        ClusterVerdict::NotFound => {
            inner.caches.write_since(generation, |caches| {
                caches.forget_content(id, &name);
                caches.set_location(Scope::Cluster(id.clone()), &name, Location::Nowhere);
                if caches.location(Scope::All, &name) == Some(Location::Cluster(id.clone())) {
                    caches.forget_location(Scope::All, &name);
                }
            });
            Fetched::NotFound
        }
        ClusterVerdict::Busy => Fetched::Busy,
        ClusterVerdict::Unreachable => Fetched::Unreachable,
    };
    debug!(name = %name, cluster = %id, answer = ?fetched, "single-cluster fetch done");
    inner.update_gauges();
    fetched
}

/// The flight of [`FetchKey::Fanout`]: every enabled cluster (but the one
/// whose verdict is `known`), in parallel or in sequence, reduced by
/// [`decide`]; the result goes into the caches.
async fn fetch_all(
    inner: Arc<Inner>,
    name: Arc<str>,
    known: Option<(Arc<str>, Known)>,
    device: bool,
    generation: u64,
) -> Fetched {
    // A flight that ended between this waiter's cache check and the start
    // of this one has filled the cache: use it.
    if known.is_none() {
        match inner.caches.location(Scope::All, &name) {
            Some(Location::Nowhere) => return Fetched::NotFound,
            Some(Location::Cluster(id)) => {
                if let Some(Cached::Fresh(entry)) = inner.caches.content(&id, &name, device) {
                    return Fetched::Found {
                        cluster: id,
                        body: entry.body,
                        cached: true,
                        provisional: false,
                    };
                }
            }
            None => {}
        }
    }
    let clusters = &inner.enabled;
    let mut verdicts: Vec<Option<ClusterVerdict>> = clusters
        .iter()
        .map(|c| match &known {
            Some((id, verdict)) if *id == c.id => Some((*verdict).into()),
            _ => None,
        })
        .collect();
    let started = Instant::now();
    let mut decision = decide(&verdicts);
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
                        async move { inner.ask_cluster(&cluster, &name).await.verdict }
                    });
                    async move { (index, task.await) }
                })
                .collect();
            while decision == Decision::Pending {
                match pending.next().await {
                    Some((index, answer)) => {
                        verdicts[index] = Some(answer.unwrap_or(ClusterVerdict::Unreachable));
                        decision = decide(&verdicts);
                    }
                    None => break,
                }
            }
        }
        Strategy::Sequential => {
            for (index, cluster) in clusters.iter().enumerate() {
                if verdicts[index].is_none() {
                    verdicts[index] = Some(inner.ask_cluster(cluster, &name).await.verdict);
                }
                decision = decide(&verdicts);
                if decision != Decision::Pending {
                    break;
                }
            }
        }
    }
    let fetched = match decision {
        Decision::Found(index) => {
            let id = clusters[index].id.clone();
            let body = match verdicts[index].take() {
                Some(ClusterVerdict::Found { body, .. }) => body,
                _ => unreachable!("decide() returned a cluster that found nothing"),
            };
            // A higher cluster that was busy or unreachable may hold the
            // name too: the answer stands for this request only, so it is
            // not stored as the name's location (Busy and Unreachable are
            // never cached, not even as "a lower cluster wins").
            let provisional = verdicts[..index].iter().any(|v| {
                matches!(
                    v,
                    Some(ClusterVerdict::Busy | ClusterVerdict::Unreachable) | None
                )
            });
            inner.caches.write_since(generation, |caches| {
                caches.put_content(&id, &name, body.clone());
                if !provisional {
                    caches.set_location(Scope::All, &name, Location::Cluster(id.clone()));
                }
                caches.forget_location(Scope::Cluster(id.clone()), &name);
            });
            Fetched::Found {
                cluster: id,
                body,
                cached: false,
                provisional,
            }
        }
        Decision::NotFound => {
            inner.caches.write_since(generation, |caches| {
                caches.set_location(Scope::All, &name, Location::Nowhere);
            });
            Fetched::NotFound
        }
        Decision::Busy => Fetched::Busy,
        Decision::Unreachable | Decision::Pending => Fetched::Unreachable,
    };
    debug!(name = %name, answer = ?fetched, elapsed_ms = started.elapsed().as_millis() as u64,
        "cluster fan-out done (Busy and Unreachable are not cached)");
    inner.update_gauges();
    fetched
}

fn file(body: Bytes, source: Source) -> Answer {
    Answer::File {
        body: Body::Memory(body),
        source,
    }
}

fn denied(error: NameError) -> Answer {
    Answer::Denied(error.to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found() -> Option<ClusterVerdict> {
        Some(ClusterVerdict::Found {
            body: Bytes::from_static(b"x"),
            address: 0,
        })
    }

    #[test]
    fn highest_priority_found_wins_without_waiting_for_lower_ones() {
        use ClusterVerdict::*;
        assert_eq!(decide(&[found(), None, None]), Decision::Found(0));
        assert_eq!(decide(&[Some(NotFound), found(), None]), Decision::Found(1));
        assert_eq!(decide(&[Some(Busy), found(), found()]), Decision::Found(1));
        assert_eq!(
            decide(&[Some(Unreachable), None, found()]),
            Decision::Pending
        );
        assert_eq!(decide(&[None, found()]), Decision::Pending);
    }

    #[test]
    fn without_a_found_busy_beats_unreachable_beats_not_found() {
        use ClusterVerdict::*;
        assert_eq!(
            decide(&[Some(NotFound), Some(Busy), Some(Unreachable)]),
            Decision::Busy
        );
        assert_eq!(
            decide(&[Some(Unreachable), Some(NotFound)]),
            Decision::Unreachable
        );
        assert_eq!(
            decide(&[Some(NotFound), Some(NotFound)]),
            Decision::NotFound
        );
        assert_eq!(decide(&[Some(NotFound), None]), Decision::Pending);
        assert_eq!(decide(&[]), Decision::NotFound);
    }

    fn config_with(clusters: &[(&str, bool)]) -> Config {
        Config {
            clusters: clusters
                .iter()
                .map(|(id, enabled)| ClusterConfig {
                    id: id.to_string(),
                    description: String::new(),
                    fqdn: String::new(),
                    enabled: *enabled,
                    addresses: vec![format!("http://{id}.invalid:6970")],
                })
                .collect(),
            ..Config::default()
        }
    }

    #[test]
    fn purge_and_status_without_traffic() {
        let resolver =
            Resolver::new(&config_with(&[("a", true), ("b", false)]), Arc::default()).unwrap();
        let caches = &resolver.inner.caches;
        let a: Arc<str> = Arc::from("a");
        let name: Arc<str> = Arc::from("SEP001122334455.cnf.xml");
        caches.put_content(&a, &name, Bytes::from_static(b"x"));
        caches.set_location(Scope::All, &name, Location::Cluster(a.clone()));
        caches.run_pending_tasks();
        assert_eq!(resolver.purge(Some("/sep001122334455.CNF.xml")), 2);
        assert_eq!(resolver.purge(None), 0);

        let status = resolver.cluster_status();
        assert_eq!(status.len(), 2);
        assert_eq!(status[0].id, "a");
        assert!(status[0].enabled && status[0].up);
        assert!(!status[1].enabled);
        assert_eq!(status[0].addresses[0].base_url, "http://a.invalid:6970");
        assert_eq!(status[0].addresses[0].last_outcome, None);
    }

    #[test]
    fn reconfigure_keeps_what_still_holds() {
        let old = Resolver::new(&config_with(&[("a", true), ("b", true)]), Arc::default()).unwrap();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let n1: Arc<str> = Arc::from("n1");
        let caches = &old.inner.caches;
        caches.put_content(&a, &n1, Bytes::from_static(b"a"));
        caches.put_content(&b, &n1, Bytes::from_static(b"b"));
        caches.set_location(Scope::All, &n1, Location::Cluster(a.clone()));
        old.inner.homes.learn("SEP1", None, &a);
        old.inner.homes.learn("SEP2", None, &b);

        // Same clusters, same order: everything kept.
        let same = Resolver::reconfigure(&config_with(&[("a", true), ("b", true)]), &old).unwrap();
        assert!(Arc::ptr_eq(&same.inner.caches, &old.inner.caches));
        assert!(same.inner.caches.location(Scope::All, &n1).is_some());

        // b disabled: its content and homes go; a still comes first.
        let fewer =
            Resolver::reconfigure(&config_with(&[("a", true), ("b", false)]), &same).unwrap();
        let c = &fewer.inner.caches;
        assert!(c.content(&a, &n1, false).is_some());
        assert!(c.content(&b, &n1, false).is_none());
        assert!(c.location(Scope::All, &n1).is_some());
        assert_eq!(fewer.home_of_device("SEP1").as_deref(), Some("a"));
        assert_eq!(fewer.home_of_device("SEP2"), None);

        // Other cache settings: fresh caches.
        let mut other = config_with(&[("a", true)]);
        other.cache.ttl = Duration::from_secs(1);
        let fresh = Resolver::reconfigure(&other, &fewer).unwrap();
        assert!(!Arc::ptr_eq(&fresh.inner.caches, &fewer.inner.caches));
        assert_eq!(fresh.home_of_device("SEP1").as_deref(), Some("a"));
    }
}
