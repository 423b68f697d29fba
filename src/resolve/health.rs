//! Cluster health: what each cluster address last answered, recorded from
//! every fetch (phone requests and `locate`), for the admin `/clusters` page
//! and the upstream metrics.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::config::ClusterConfig;
use crate::metrics::{ClusterLabels, UpstreamLabels, UpstreamOutcome};
use crate::source::upstream::{AddressOutcome, ClusterReport};
use crate::sync::lock;

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

/// One configured cluster and the status of its addresses.
pub(super) struct ClusterState {
    pub(super) id: Arc<str>,
    pub(super) config: ClusterConfig,
    status: Mutex<Vec<AddressStatus>>,
}

impl ClusterState {
    /// The state of a configured cluster; each address keeps its status
    /// from `previous` (the same cluster before a reload), if it had one.
    pub(super) fn new(config: &ClusterConfig, previous: Option<&ClusterState>) -> ClusterState {
        let previous = previous.map(|p| lock(&p.status));
        let status = config
            .addresses
            .iter()
            .map(|url| {
                previous
                    .as_ref()
                    .and_then(|old| old.iter().find(|s| s.base_url == *url).cloned())
                    .unwrap_or_else(|| AddressStatus::new(url))
            })
            .collect();
        ClusterState {
            id: Arc::from(config.id.as_str()),
            config: config.clone(),
            status: Mutex::new(status),
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
}

impl Inner {
    /// Metrics and status of every address answer in `report`.
    pub(super) fn record(&self, cluster: &ClusterState, report: &ClusterReport) {
        let now = SystemTime::now();
        let mut status = lock(&cluster.status);
        for (base_url, answer) in &report.addresses {
            let outcome = match &answer.outcome {
                AddressOutcome::Found(_) => UpstreamOutcome::Found,
                AddressOutcome::NotModified(_) => UpstreamOutcome::NotModified,
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
            let Some(s) = status.iter_mut().find(|s| s.base_url == *base_url) else {
                continue;
            };
            s.last_outcome = Some(outcome);
            s.last_status = answer.status;
            s.last_latency = Some(answer.elapsed);
            s.last_checked = Some(now);
            s.up = outcome != UpstreamOutcome::Failed;
            let error = match &answer.outcome {
                AddressOutcome::Failed(reason) => Some(reason.to_string()),
                AddressOutcome::Busy => Some("busy (HTTP 503)".to_owned()),
                AddressOutcome::Found(_)
                | AddressOutcome::NotModified(_)
                | AddressOutcome::NotFound => None,
            };
            if let Some(error) = error {
                s.last_error = Some(error);
                s.last_error_at = Some(now);
            }
        }
    }
}
