//! Cluster health: what each cluster address last answered, recorded from
//! every fetch (phone requests and `locate`), for the admin `/clusters` page
//! and the upstream metrics; and whether each address is held down
//! ([`super::hold`]), which the upstream client asks through
//! [`AddressGate`] before each request. One warning when an address goes
//! down and one info line when it comes back, not one per request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, info, warn};

use crate::config::ClusterConfig;
use crate::metrics::{
    AddressLabels, ClusterLabels, DeclinedLabels, DeclinedReason, Metrics, UpstreamLabels,
    UpstreamOutcome,
};
use crate::source::upstream::{
    AddressGate, AddressOutcome, ClusterReport, Declined, FailReason, WaitLine,
};
use crate::sync::lock;

use super::hold::{Admission, Hold, HoldPolicy, Transition};
use super::{Inner, Resolver};

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

/// The last answer of one cluster address.
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
    /// bad status or body), or while it is held down (after an address
    /// failure or a 503 with `Retry-After`, until it answers again). True
    /// when never asked, or when it last answered 200/404 or a plain 503 (a
    /// busy address is up).
    pub up: bool,
    /// Phones' requests skip the address until then (`remote.hold_down`);
    /// `None` when it is asked. A down address whose hold ran out is asked
    /// again by one request.
    pub held_down_until: Option<SystemTime>,
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
            held_down_until: None,
        }
    }
}

/// What is known of one address: its last answer and its hold-down.
#[derive(Clone, Debug)]
struct AddressState {
    status: AddressStatus,
    hold: Hold,
}

/// One configured cluster and the status of its addresses.
pub(super) struct ClusterState {
    pub(super) id: Arc<str>,
    pub(super) config: ClusterConfig,
    policy: HoldPolicy,
    /// In the order of `config.addresses`.
    addresses: Mutex<Vec<AddressState>>,
    /// Fetches waiting for a turn at its addresses (`remote.max_queued`);
    /// the same line across reloads.
    pub(super) line: Arc<WaitLine>,
}

impl ClusterState {
    /// The state of a configured cluster; each address keeps its status
    /// and hold-down from `previous` (the same cluster before a reload), if
    /// it had one.
    pub(super) fn new(
        config: &ClusterConfig,
        policy: HoldPolicy,
        previous: Option<&ClusterState>,
    ) -> ClusterState {
        let line = previous.map(|p| p.line.clone()).unwrap_or_default();
        let previous = previous.map(|p| lock(&p.addresses));
        let addresses = config
            .addresses
            .iter()
            .map(|url| {
                previous
                    .as_ref()
                    .and_then(|old| old.iter().find(|a| a.status.base_url == *url).cloned())
                    .unwrap_or_else(|| AddressState {
                        status: AddressStatus::new(url),
                        hold: Hold::default(),
                    })
            })
            .collect();
        ClusterState {
            id: Arc::from(config.id.as_str()),
            config: config.clone(),
            policy,
            addresses: Mutex::new(addresses),
            line,
        }
    }

    /// Sets `tftproxy_upstream_address_up` for each address, and removes it
    /// for the addresses of `previous` no longer configured here.
    pub(super) fn publish_gauges(&self, metrics: &Metrics, previous: Option<&ClusterState>) {
        let addresses = lock(&self.addresses);
        if let Some(previous) = previous {
            for old in lock(&previous.addresses).iter() {
                if !addresses
                    .iter()
                    .any(|a| a.status.base_url == old.status.base_url)
                {
                    metrics
                        .upstream_address_up
                        .remove(&self.labels(&old.status.base_url));
                }
            }
        }
        for a in addresses.iter() {
            self.set_gauge(metrics, &a.status.base_url, a.hold.is_up());
        }
    }

    /// Removes every gauge of a cluster no longer configured.
    pub(super) fn unpublish_gauges(&self, metrics: &Metrics) {
        for a in lock(&self.addresses).iter() {
            metrics
                .upstream_address_up
                .remove(&self.labels(&a.status.base_url));
        }
        metrics.upstream_queued.remove(&self.cluster_labels());
    }

    /// Sets `tftproxy_upstream_queued` to the fetches in this cluster's line.
    pub(super) fn publish_queue(&self, metrics: &Metrics) {
        metrics
            .upstream_queued
            .get_or_create(&self.cluster_labels())
            .set(self.line.len() as i64);
    }

    fn cluster_labels(&self) -> ClusterLabels {
        ClusterLabels {
            cluster: self.id.to_string(),
        }
    }

    fn set_gauge(&self, metrics: &Metrics, base_url: &str, up: bool) {
        metrics
            .upstream_address_up
            .get_or_create(&self.labels(base_url))
            .set(i64::from(up));
    }

    fn labels(&self, base_url: &str) -> AddressLabels {
        AddressLabels {
            cluster: self.id.to_string(),
            address: base_url.to_owned(),
        }
    }
}

impl AddressGate for ClusterState {
    fn held_down(&self, index: usize) -> Option<Duration> {
        let mut addresses = lock(&self.addresses);
        let address = addresses.get_mut(index)?;
        match address.hold.admit(Instant::now(), &self.policy) {
            Admission::Ask => None,
            Admission::Probe => {
                debug!(cluster = %self.id, upstream = %address.status.base_url,
                    "hold-down over: trying the address again");
                None
            }
            Admission::Skip(remaining) => Some(remaining),
        }
    }
}

impl Resolver {
    /// Every configured cluster with each address's last recorded answer.
    pub fn cluster_status(&self) -> Vec<ClusterStatus> {
        self.inner
            .clusters
            .iter()
            .map(|c| {
                let (now, wall) = (Instant::now(), SystemTime::now());
                let addresses: Vec<AddressStatus> = lock(&c.addresses)
                    .iter()
                    .map(|a| AddressStatus {
                        up: a.status.up && a.hold.is_up(),
                        held_down_until: a.hold.skipped_until(now).map(|t| wall + (t - now)),
                        ..a.status.clone()
                    })
                    .collect();
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
}

impl Inner {
    /// Metrics, status and hold-down of every address answer in `report`
    /// (an address skipped because it is held down was not asked: nothing
    /// to record).
    pub(super) fn record(&self, cluster: &ClusterState, report: &ClusterReport) {
        let now = SystemTime::now();
        let instant = Instant::now();
        let mut addresses = lock(&cluster.addresses);
        for (base_url, answer) in &report.addresses {
            if matches!(&answer.outcome, AddressOutcome::Failed(r) if r.is_held_down()) {
                continue;
            }
            // Our own limits say nothing of the address.
            if let AddressOutcome::Declined(why) = &answer.outcome {
                let reason = match why {
                    Declined::QueueFull => DeclinedReason::QueueFull,
                    Declined::Abandoned => DeclinedReason::Abandoned,
                    Declined::OverBudget { .. } => DeclinedReason::OverBudget,
                };
                self.metrics
                    .upstream_declined
                    .get_or_create(&DeclinedLabels {
                        cluster: cluster.id.to_string(),
                        reason,
                    })
                    .inc();
                continue;
            }
            if matches!(
                &answer.outcome,
                AddressOutcome::Failed(FailReason::TooSlow { .. })
            ) {
                self.metrics
                    .upstream_slow_bodies
                    .get_or_create(&cluster.labels(base_url))
                    .inc();
            }
            let outcome = match &answer.outcome {
                AddressOutcome::Found(_) => UpstreamOutcome::Found,
                AddressOutcome::NotModified(_) => UpstreamOutcome::NotModified,
                AddressOutcome::NotFound => UpstreamOutcome::NotFound,
                AddressOutcome::Busy => UpstreamOutcome::Busy,
                AddressOutcome::Failed(_) | AddressOutcome::Declined(_) => UpstreamOutcome::Failed,
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
            let Some(a) = addresses
                .iter_mut()
                .find(|a| a.status.base_url == *base_url)
            else {
                continue;
            };
            let s = &mut a.status;
            s.last_outcome = Some(outcome);
            s.last_status = answer.status;
            s.last_latency = Some(answer.elapsed);
            s.last_checked = Some(now);
            s.up = outcome != UpstreamOutcome::Failed;
            let error = match (&answer.outcome, answer.retry_after) {
                (AddressOutcome::Failed(reason), _) => Some(reason.to_string()),
                (AddressOutcome::Busy, None) => Some("busy (HTTP 503)".to_owned()),
                (AddressOutcome::Busy, Some(delay)) => Some(format!(
                    "busy (HTTP 503, Retry-After {})",
                    humantime::format_duration(delay)
                )),
                (
                    AddressOutcome::Found(_)
                    | AddressOutcome::NotModified(_)
                    | AddressOutcome::NotFound
                    | AddressOutcome::Declined(_),
                    _,
                ) => None,
            };
            if let Some(error) = &error {
                s.last_error = Some(error.clone());
                s.last_error_at = Some(now);
            }
            let policy = &cluster.policy;
            let transition = match &answer.outcome {
                AddressOutcome::Found(_)
                | AddressOutcome::NotModified(_)
                | AddressOutcome::NotFound => a.hold.answered(),
                AddressOutcome::Busy => a.hold.busy(instant, answer.retry_after, policy),
                AddressOutcome::Failed(reason) if reason.is_address_failure() => {
                    a.hold.failed(instant, policy)
                }
                // It answered, unusably for this name: it is reachable.
                AddressOutcome::Failed(_) => a.hold.answered(),
                AddressOutcome::Declined(_) => Transition::None,
            };
            let error = error.unwrap_or_default();
            match transition {
                Transition::None => {}
                Transition::Down(hold) => {
                    if hold.is_zero() {
                        warn!(cluster = %cluster.id, upstream = %base_url,
                            "cluster address down: {error}");
                    } else {
                        warn!(cluster = %cluster.id, upstream = %base_url,
                            hold_down_ms = hold.as_millis() as u64,
                            "cluster address down: {error}; not asked for {}",
                            humantime::format_duration(hold));
                    }
                    self.metrics
                        .upstream_address_downs
                        .get_or_create(&cluster.labels(base_url))
                        .inc();
                    cluster.set_gauge(&self.metrics, base_url, false);
                }
                Transition::StillDown(hold) => {
                    debug!(cluster = %cluster.id, upstream = %base_url,
                        hold_down_ms = hold.as_millis() as u64,
                        "cluster address still down: {error}");
                }
                Transition::Back => {
                    info!(cluster = %cluster.id, upstream = %base_url,
                        "cluster address is back: it answers again");
                    cluster.set_gauge(&self.metrics, base_url, true);
                }
            }
        }
    }
}
