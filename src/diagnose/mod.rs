//! `tftproxy locate NAME`: what an engineer reads when a phone does not get
//! its file. [`locate`] asks every enabled cluster (every address, at once,
//! bypassing the caches) and says what a phone with no known home cluster
//! would get and why; [`render`] prints it.
//!
//! The verdict comes from the same rules the resolver applies
//! ([`crate::verdict`]), in the same order (the local root before the
//! clusters), so `locate` cannot disagree with what a phone gets.

mod live;
mod render;

use std::time::{Duration, Instant, SystemTime};

use crate::config::{OnUnreachable, Strategy};
use crate::name::{self, Classified};
use crate::resolve::Resolver;
use crate::source::upstream::{ClusterFound, ClusterReport, ClusterVerdict};
use crate::verdict::{self, Verdict};

pub use live::{locate_live, render_live, LiveReport};
pub use render::render;

/// What `tftproxy locate NAME` found.
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
    /// The `Via` every address is asked with: our entry alone (a phone's
    /// request), as the daemon with this configuration would send it.
    pub via: String,
    /// `remote.max_hops`.
    pub max_hops: usize,
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
    /// The addresses phones' requests skipped when `locate` began (held
    /// down after a failure or a `Retry-After`), and for how long still.
    /// `locate` asks them anyway.
    pub held_down: Vec<(String, Duration)>,
}

/// What a phone would get, as `locate` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocateVerdict {
    Denied(String),
    Local {
        size: u64,
    },
    Cluster {
        id: String,
        size: u64,
    },
    /// The running daemon's cached copy of that cluster (fresh, or stale
    /// and served because its clusters cannot answer): `locate --admin`.
    Cached {
        id: String,
        size: u64,
        fresh: bool,
    },
    NotFound,
    RetryLater,
}

impl LocateVerdict {
    /// `tftproxy locate`'s exit status: 0 served, 1 not found, 2 busy or
    /// unreachable, 3 refused.
    pub fn exit_code(&self) -> u8 {
        match self {
            LocateVerdict::Local { .. }
            | LocateVerdict::Cluster { .. }
            | LocateVerdict::Cached { .. } => 0,
            LocateVerdict::NotFound => 1,
            LocateVerdict::RetryLater => 2,
            LocateVerdict::Denied(_) => 3,
        }
    }
}

/// Asks every enabled cluster, every address at once, for `raw`, bypassing
/// the caches, and says what a phone with no known home cluster would get
/// and why. Answers are recorded in the cluster status like any fetch.
pub async fn locate(resolver: &Resolver, raw: &str) -> LocateReport {
    let start = Instant::now();
    let remote = resolver.remote();
    let mut report = LocateReport {
        name: raw.to_owned(),
        normalised: None,
        classified: None,
        local: None,
        local_error: None,
        via: resolver.via_id().to_string(),
        max_hops: remote.max_hops,
        clusters: resolver
            .cluster_ids()
            .map(|(id, enabled)| ClusterLocate {
                id: id.to_string(),
                enabled,
                report: None,
                held_down: Vec::new(),
            })
            .collect(),
        strategy: remote.strategy,
        on_unreachable: remote.on_unreachable,
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
    let class = name::classify(&name);
    report.classified = Some(class.clone());
    if let Some(local) = resolver.local_root() {
        match local.open(&name) {
            Ok(Some(body)) => report.local = Some(body.len()),
            Ok(None) => {}
            Err(error) => report.local_error = Some(error.to_string()),
        }
    }
    // Before asking: the answers may bring an address back.
    let now = SystemTime::now();
    for status in resolver.cluster_status() {
        if let Some(entry) = report.clusters.iter_mut().find(|c| c.id == status.id) {
            entry.held_down = status
                .addresses
                .iter()
                .filter_map(|a| {
                    let until = a.held_down_until?;
                    let remaining = until.duration_since(now).unwrap_or_default();
                    Some((a.base_url.clone(), remaining))
                })
                .collect();
        }
    }
    for (id, cluster_report) in resolver.ask_every_address(&name).await {
        if let Some(entry) = report.clusters.iter_mut().find(|c| *c.id == *id) {
            entry.report = Some(cluster_report);
        }
    }
    let (cluster_verdict, cluster_reason) = explain(&report);
    report.normalised = Some(name.into_owned());
    let mut reason = String::new();
    if let Some(error) = report.local_error.clone() {
        // What the resolver does: the local root is read before the
        // clusters, and a name it refuses is refused.
        report.verdict = LocateVerdict::Denied(error.clone());
        reason.push_str(&format!(
            "the local root (tftp.root) refuses it ({error}) before any cluster is asked; \
             without it: {cluster_reason}"
        ));
    } else if let Some(size) = report.local {
        report.verdict = LocateVerdict::Local { size };
        reason.push_str("the local root (tftp.root) has it and is read before the clusters");
        if class.cluster_specific && remote.prefer_home_cluster {
            reason.push_str(
                "; a phone whose home cluster is known gets its home cluster's copy first",
            );
        }
        reason.push_str(&format!("; without it: {cluster_reason}"));
    } else {
        report.verdict = cluster_verdict;
        reason.push_str(&cluster_reason);
    }
    let any_cluster = report.clusters.iter().any(|c| c.enabled);
    if let Some(device) = class.device.as_ref().filter(|_| any_cluster) {
        reason.push_str(&format!(
            "; device {device}: once its home cluster is known, its names are asked of that cluster alone first"
        ));
    }
    report.reason = reason;
    report.elapsed = start.elapsed();
    report
}

/// The verdict of the cross-cluster rule for `report`'s enabled clusters,
/// and why, in words.
fn explain(report: &LocateReport) -> (LocateVerdict, String) {
    let enabled: Vec<&ClusterLocate> = report.clusters.iter().filter(|c| c.enabled).collect();
    if enabled.is_empty() {
        return (
            LocateVerdict::NotFound,
            "no cluster is enabled: only the local root and caches answer".into(),
        );
    }
    let verdicts: Vec<Option<ClusterVerdict>> = enabled
        .iter()
        .map(|c| c.report.as_ref().map(|r| r.verdict.clone()))
        .collect();
    let ids_where = |wanted: fn(&ClusterVerdict) -> bool| -> String {
        enabled
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| v.as_ref().is_some_and(wanted))
            .map(|(c, _)| c.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match verdict::across_clusters(&verdicts) {
        Some(Verdict::Found((index, ClusterFound { body, .. }))) => {
            let cluster = enabled[index];
            let mut reason = format!(
                "found on {} (priority {} of {})",
                cluster.id,
                index + 1,
                enabled.len()
            );
            if index > 0 {
                let before: Vec<String> = enabled[..index]
                    .iter()
                    .zip(&verdicts)
                    .map(|(c, v)| match v {
                        Some(v) => format!("{}: {}", c.id, v),
                        None => format!("{}: not asked", c.id),
                    })
                    .collect();
                reason.push_str(&format!(
                    "; every higher-priority cluster answered first ({})",
                    before.join(", ")
                ));
            }
            let others: Vec<&str> = enabled[index + 1..]
                .iter()
                .zip(&verdicts[index + 1..])
                .filter(|(_, v)| v.as_ref().is_some_and(Verdict::is_found))
                .map(|(c, _)| c.id.as_str())
                .collect();
            if !others.is_empty() {
                reason.push_str(&format!(
                    "; lower-priority clusters also have it ({}) and are not used",
                    others.join(", ")
                ));
            }
            let verdict = LocateVerdict::Cluster {
                id: cluster.id.clone(),
                size: body.len() as u64,
            };
            (verdict, reason)
        }
        Some(Verdict::Busy) => (
            LocateVerdict::RetryLater,
            format!(
                "no cluster has it and {} answered busy (503): phones are told `busy, retry later`",
                ids_where(|v| matches!(v, Verdict::Busy))
            ),
        ),
        Some(Verdict::Unreachable) => {
            let down = ids_where(|v| matches!(v, Verdict::Unreachable));
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
        Some(Verdict::NotFound) | None => (
            LocateVerdict::NotFound,
            "every enabled cluster said not found".into(),
        ),
    }
}
