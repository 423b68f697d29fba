//! `tftproxy locate --admin ADDR [--client IP] NAME`, the running daemon's
//! side (`GET /locate?name=NAME&client=IP` on the admin front): the offline
//! report ([`super::locate`]: every address asked now, bypassing the
//! caches) plus what the daemon has learned ([`Resolver::learned`]: homes,
//! the location table, cached copies and their age, held-down addresses),
//! and what a phone at that address would get now.
//!
//! The "now" verdict walks the resolver's order (steps 2 to 6 of the
//! resolution contract) over the daemon's tables, taking each cluster's
//! answer from the addresses just asked and the cross-cluster rule from
//! [`super::explain`]. Like offline `locate` it asks the clusters; like it,
//! it learns nothing (no home, no location, no cached copy) and fills no
//! cache, so diagnosing a phone does not change what phones get.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use super::render::{render, verdict_text};
use super::{explain, locate, LocateReport, LocateVerdict};
use crate::config::OnUnreachable;
use crate::resolve::{Learned, LearnedPlan, Resolver};
use crate::verdict::{self, Verdict};

/// What `locate --admin` shows.
#[derive(Clone, Debug)]
pub struct LiveReport {
    /// The clusters asked now, as offline `locate` shows them; its verdict
    /// is for a phone the daemon knows nothing about.
    pub report: LocateReport,
    /// The phone's address the verdict is for, if given.
    pub client: Option<IpAddr>,
    /// The daemon's tables (`None` for a refused name).
    pub learned: Option<Learned>,
    /// What a phone at `client` gets now.
    pub verdict: LocateVerdict,
    /// Why, in words.
    pub reason: String,
}

/// Asks every address for `raw` (as offline `locate`) and says what a
/// phone at `client` would get from this resolver now, and why.
pub async fn locate_live(resolver: &Resolver, raw: &str, client: Option<IpAddr>) -> LiveReport {
    let learned = resolver.learned(raw, client).await.ok();
    let report = locate(resolver, raw).await;
    let (verdict, reason) = match &learned {
        Some(learned) => now(&report, learned),
        None => (report.verdict.clone(), report.reason.clone()),
    };
    LiveReport {
        report,
        client,
        learned,
        verdict,
        reason,
    }
}

/// A cluster asked alone (`ask_one`): served, or what it said instead.
enum Alone {
    Served(LocateVerdict, String),
    Miss(Verdict<std::convert::Infallible>, String),
}

fn now(report: &LocateReport, learned: &Learned) -> (LocateVerdict, String) {
    let mut steps = Vec::new();
    // 2. A cluster-specific name: the client's home first, Found only.
    if let Some(home) = &learned.asked_first {
        match alone(report, learned, home) {
            Alone::Served(verdict, why) => {
                return (
                    verdict,
                    format!("the client's home cluster {home} is asked first for this cluster-specific name: {why}"),
                )
            }
            Alone::Miss(_, why) => steps.push(format!(
                "the client's home cluster {home} is asked first but does not serve it ({why})"
            )),
        }
    }
    // 3. The local root (or its refusal) comes before the clusters.
    if matches!(
        report.verdict,
        LocateVerdict::Local { .. } | LocateVerdict::Denied(_)
    ) {
        steps.push(report.reason.clone());
        return (report.verdict.clone(), steps.join("; "));
    }
    // 4 and 5.
    let verdict = match &learned.plan {
        LearnedPlan::Nowhere => {
            let mut why = "the daemon remembers it as on no cluster (cache.negative_ttl): \
                           phones get not found without a cluster being asked; \
                           `DELETE /cache/<name>` on the admin API forgets it"
                .to_string();
            if let LocateVerdict::Cluster { id, .. } = &report.verdict {
                let _ = write!(why, " (asked now, {id} has it)");
            }
            steps.push(why);
            LocateVerdict::NotFound
        }
        LearnedPlan::Home(home) => match alone(report, learned, home) {
            Alone::Served(verdict, why) => {
                steps.push(format!(
                    "the device's home cluster {home} is asked alone: {why}"
                ));
                verdict
            }
            Alone::Miss(Verdict::NotFound, why) => {
                steps.push(format!(
                    "the device's home cluster {home} is asked alone: {why}; so every cluster is"
                ));
                fanout_or_stale(report, learned, &mut steps)
            }
            Alone::Miss(failed, why) => {
                steps.push(format!(
                    "the device's home cluster {home} is asked alone: {why}"
                ));
                failed_verdict(report, &failed)
            }
        },
        LearnedPlan::Located(id) => match alone(report, learned, id) {
            Alone::Served(verdict, why) => {
                steps.push(format!("the location table says {id}, asked alone: {why}"));
                verdict
            }
            Alone::Miss(_, why) => {
                steps.push(format!(
                    "the location table says {id}, asked alone: {why}; so every cluster is"
                ));
                fanout_or_stale(report, learned, &mut steps)
            }
        },
        LearnedPlan::Unknown => {
            steps.push("the daemon does not know where it is: every cluster is asked".into());
            fanout_or_stale(report, learned, &mut steps)
        }
    };
    (verdict, steps.join("; "))
}

/// One cluster asked alone, through the caches: a fresh copy, a remembered
/// "not found", or its answer now (a stale copy if it cannot answer).
fn alone(report: &LocateReport, learned: &Learned, id: &str) -> Alone {
    let cache = learned.clusters.iter().find(|c| c.id == id);
    let copy = cache.and_then(|c| c.copy.as_ref());
    if let Some(copy) = copy.filter(|c| c.fresh) {
        return Alone::Served(
            LocateVerdict::Cached {
                id: id.to_owned(),
                size: copy.size,
                fresh: true,
            },
            format!("its cached copy is fresh ({} old)", age(copy.age)),
        );
    }
    if copy.is_none() && cache.is_some_and(|c| c.not_found) {
        return Alone::Miss(
            Verdict::NotFound,
            "it said not found recently (remembered for cache.negative_ttl)".into(),
        );
    }
    let asked = report
        .clusters
        .iter()
        .find(|c| c.id == id)
        .and_then(|c| c.report.as_ref());
    match asked.map(|r| &r.verdict) {
        Some(Verdict::Found(found)) => Alone::Served(
            LocateVerdict::Cluster {
                id: id.to_owned(),
                size: found.body.len() as u64,
            },
            "asked now, it has it".into(),
        ),
        Some(Verdict::NotFound) => Alone::Miss(Verdict::NotFound, "asked now: not found".into()),
        failed => {
            let failed = match failed {
                Some(Verdict::Busy) => Verdict::Busy,
                _ => Verdict::Unreachable,
            };
            match copy {
                Some(copy) => Alone::Served(
                    LocateVerdict::Cached {
                        id: id.to_owned(),
                        size: copy.size,
                        fresh: false,
                    },
                    format!(
                        "asked now: {failed}; its copy, {} old, is served instead (stale-if-error, cache.max_stale)",
                        age(copy.age)
                    ),
                ),
                None => {
                    let why = format!("asked now: {failed}, and no cached copy");
                    Alone::Miss(failed, why)
                }
            }
        }
    }
}

/// The fan-out (the cross-cluster rule over the answers asked now), then
/// stale-if-error when it ends busy or unreachable.
fn fanout_or_stale(
    report: &LocateReport,
    learned: &Learned,
    steps: &mut Vec<String>,
) -> LocateVerdict {
    let (verdict, why) = explain(report);
    let verdicts: Vec<_> = report
        .clusters
        .iter()
        .filter(|c| c.enabled)
        .map(|c| c.report.as_ref().map(|r| r.verdict.clone()))
        .collect();
    let failed = matches!(
        verdict::across_clusters(&verdicts),
        Some(Verdict::Busy | Verdict::Unreachable)
    );
    steps.push(why);
    if failed {
        for id in &learned.stale_order {
            let copy = learned
                .clusters
                .iter()
                .find(|c| c.id == *id)
                .and_then(|c| c.copy.as_ref());
            if let Some(copy) = copy {
                steps.push(format!(
                    "so the cached copy of {id}, {} old, is served instead (stale-if-error, cache.max_stale = {})",
                    age(copy.age),
                    age(learned.max_stale)
                ));
                return LocateVerdict::Cached {
                    id: id.clone(),
                    size: copy.size,
                    fresh: copy.fresh,
                };
            }
        }
    }
    verdict
}

/// A home that is busy or unreachable, with no copy: `remote.on_unreachable`.
fn failed_verdict(
    report: &LocateReport,
    failed: &Verdict<std::convert::Infallible>,
) -> LocateVerdict {
    match (failed, report.on_unreachable) {
        (Verdict::Unreachable, OnUnreachable::NotFound) => LocateVerdict::NotFound,
        _ => LocateVerdict::RetryLater,
    }
}

fn age(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The offline report, then what the daemon knows and the verdict for a
/// phone at the client; ends with a newline.
pub fn render_live(live: &LiveReport) -> String {
    let mut out = render(&live.report);
    let Some(learned) = &live.learned else {
        return out;
    };
    out.push_str("\nwhat the running daemon knows:\n");
    if let Some(device) = &learned.device {
        let home = learned.device_home.as_deref().unwrap_or("not learned");
        let _ = writeln!(out, "  device {device}: home cluster {home}");
    }
    match live.client {
        Some(client) => {
            let home = learned.client_home.as_deref().unwrap_or("not learned");
            let _ = writeln!(out, "  client {client}: home cluster {home}");
        }
        None => out.push_str("  client: not given (--client IP): a phone with no known home\n"),
    }
    let location = match &learned.plan {
        LearnedPlan::Home(home) => format!("the device's home, {home}, is asked first"),
        LearnedPlan::Nowhere => "on no cluster (a remembered not found)".into(),
        LearnedPlan::Located(id) => format!("on {id}"),
        LearnedPlan::Unknown => "not known".into(),
    };
    let _ = writeln!(out, "  location: {location}");
    for cluster in &learned.clusters {
        let state = match (&cluster.copy, cluster.not_found) {
            (Some(copy), _) => format!(
                "cached, {} bytes, {} old, {}",
                copy.size,
                age(copy.age),
                if copy.fresh { "fresh" } else { "stale" }
            ),
            (None, true) => "not cached; said not found recently".into(),
            (None, false) => "not cached".into(),
        };
        let enabled = if cluster.enabled { "" } else { " (disabled)" };
        let _ = writeln!(out, "  {}{enabled}: {state}", cluster.id);
    }
    let held: Vec<String> = live
        .report
        .clusters
        .iter()
        .flat_map(|c| {
            c.held_down
                .iter()
                .map(move |(url, left)| format!("{url} ({}, {}s more)", c.id, left.as_secs() + 1))
        })
        .collect();
    let _ = writeln!(
        out,
        "  held down: {}",
        if held.is_empty() {
            "none".to_string()
        } else {
            held.join(", ")
        }
    );
    out.push('\n');
    let who = match live.client {
        Some(client) => format!("a phone at {client}"),
        None => "a phone".to_string(),
    };
    let _ = writeln!(out, "now, {who} gets: {}", verdict_text(&live.verdict));
    let _ = writeln!(out, "why: {}", live.reason);
    out
}
