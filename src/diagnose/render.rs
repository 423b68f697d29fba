//! The text of `tftproxy locate -c FILE NAME`: each address's answer and
//! time, then what a phone would get and why.
//!
//! ```text
//! SEP001122334455.cnf.xml  (device SEP001122334455)
//! local root: no such file
//!
//! asked with Via: 1.1 tftproxy-site-1 (remote.max_hops = 3)
//!
//! cluster-a  priority 1  → not found
//!   http://192.0.2.10:6970    404        12 ms  not found
//!       tftproxy hop: tftproxy-regional (tftproxy/0.1.0): answered from its files and caches only: …
//! cluster-b  priority 2  → found (12873 bytes, address #2)
//!   http://192.0.2.20:6970    -        1001 ms  failed: connect timed out after 1s  [held down: phones do not ask it for 4s more]
//!   http://192.0.2.21:6970    200        35 ms  found (12873 bytes)
//! cluster-c  disabled (not asked)
//!
//! verdict: served from cluster-b (12873 bytes)
//! why: found on cluster-b (priority 2 of 2); every higher-priority cluster answered first (cluster-a: not found)
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use super::{LocateReport, LocateVerdict};
use crate::config::{OnUnreachable, Strategy};

/// The report as text, one line per address; ends with a newline.
pub fn render(report: &LocateReport) -> String {
    let mut out = String::new();
    let name = report.normalised.as_deref().unwrap_or(&report.name);
    let _ = write!(out, "{name}");
    if let Some(class) = &report.classified {
        match (&class.device, class.cluster_specific) {
            (Some(device), _) => {
                let _ = write!(out, "  (device {device})");
            }
            (None, true) => out.push_str("  (cluster-specific: signed or trust content)"),
            (None, false) => out.push_str("  (common file)"),
        }
    }
    if report
        .normalised
        .as_deref()
        .is_some_and(|n| n != report.name)
    {
        let _ = write!(out, "\n  asked as {:?}", report.name);
    }
    out.push('\n');

    if let LocateVerdict::Denied(reason) = &report.verdict {
        let _ = writeln!(out, "\nverdict: refused ({reason})");
        let _ = writeln!(out, "why: {}", report.reason);
        return out;
    }

    match (report.local, &report.local_error) {
        (Some(size), _) => {
            let _ = writeln!(out, "local root: present ({size} bytes)");
        }
        (None, Some(error)) => {
            let _ = writeln!(out, "local root: {error}");
        }
        (None, None) => out.push_str("local root: no such file\n"),
    }
    let _ = writeln!(
        out,
        "asked with Via: {} (remote.max_hops = {})",
        report.via, report.max_hops
    );
    out.push('\n');

    if report.clusters.is_empty() {
        out.push_str("no cluster configured\n");
    }
    let url_width = report
        .clusters
        .iter()
        .filter_map(|c| c.report.as_ref())
        .flat_map(|r| r.addresses.iter().map(|(url, _)| url.len()))
        .max()
        .unwrap_or(0);
    let mut priority = 0;
    for cluster in &report.clusters {
        if !cluster.enabled {
            let _ = writeln!(out, "{}  disabled (not asked)", cluster.id);
            continue;
        }
        priority += 1;
        match &cluster.report {
            None => {
                let _ = writeln!(out, "{}  priority {priority}  (not asked)", cluster.id);
            }
            Some(cluster_report) => {
                let _ = writeln!(
                    out,
                    "{}  priority {priority}  → {}",
                    cluster.id, cluster_report.verdict
                );
                for (url, answer) in &cluster_report.addresses {
                    let status = answer
                        .status
                        .map_or_else(|| "-".to_string(), |s| s.to_string());
                    let _ = write!(
                        out,
                        "  {url:<url_width$}  {status:>3}  {:>8}  {}",
                        millis(answer.elapsed),
                        answer.outcome
                    );
                    if let Some((_, remaining)) = cluster.held_down.iter().find(|(u, _)| u == url) {
                        let seconds = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
                        let _ = write!(
                            out,
                            "  [held down: phones do not ask it for {seconds}s more]"
                        );
                    }
                    out.push('\n');
                    if let Some(peer) = &answer.peer {
                        let _ = writeln!(out, "      tftproxy hop: {peer}");
                    }
                }
            }
        }
    }
    out.push('\n');

    let verdict = verdict_text(&report.verdict);
    let _ = writeln!(out, "verdict: {verdict}");
    let _ = writeln!(out, "why: {}", report.reason);
    let _ = writeln!(
        out,
        "(asked in {}; strategy = \"{}\", on_unreachable = \"{}\")",
        millis(report.elapsed),
        match report.strategy {
            Strategy::Parallel => "parallel",
            Strategy::Sequential => "sequential",
        },
        match report.on_unreachable {
            OnUnreachable::RetryLater => "retry-later",
            OnUnreachable::NotFound => "not-found",
        }
    );
    out
}

/// What a phone gets, in words (the `verdict:` line).
pub(super) fn verdict_text(verdict: &LocateVerdict) -> String {
    match verdict {
        LocateVerdict::Local { size } => format!("served from the local root ({size} bytes)"),
        LocateVerdict::Cluster { id, size } => format!("served from {id} ({size} bytes)"),
        LocateVerdict::Cached {
            id,
            size,
            fresh: true,
        } => format!("served from the cached copy of {id} ({size} bytes)"),
        LocateVerdict::Cached {
            id,
            size,
            fresh: false,
        } => format!("served from the stale cached copy of {id} ({size} bytes)"),
        LocateVerdict::NotFound => "File not found (TFTP error 1, HTTP 404)".to_string(),
        LocateVerdict::RetryLater => {
            "busy, retry later (TFTP error 0, HTTP 503 + Retry-After)".to_string()
        }
        LocateVerdict::Denied(reason) => format!("refused ({reason})"),
    }
}

pub(super) fn millis(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Blob;
    use crate::diagnose::ClusterLocate;
    use crate::name::Classified;
    use crate::source::upstream::{
        AddressOutcome, AddressReport, ClusterFound, ClusterReport, ClusterVerdict, FailReason,
        Peer,
    };
    use crate::via::Partial;

    fn answer(outcome: AddressOutcome, status: Option<u16>, ms: u64) -> AddressReport {
        AddressReport {
            outcome,
            elapsed: Duration::from_millis(ms),
            status,
            retry_after: None,
            peer: None,
            validators: Default::default(),
        }
    }

    #[test]
    fn renders_every_address_and_the_verdict() {
        let mut report = LocateReport {
            name: "/SEP001122334455.cnf.xml".into(),
            normalised: Some("SEP001122334455.cnf.xml".into()),
            classified: Some(Classified {
                device: Some("SEP001122334455".into()),
                cluster_specific: false,
            }),
            local: None,
            local_error: None,
            via: "1.1 tftproxy-site-1".into(),
            max_hops: 3,
            clusters: vec![
                ClusterLocate {
                    id: "cluster-a".into(),
                    enabled: true,
                    report: Some(ClusterReport {
                        verdict: ClusterVerdict::NotFound,
                        addresses: vec![(
                            "http://192.0.2.10:6970".into(),
                            answer(AddressOutcome::NotFound, Some(404), 12),
                        )],
                    }),
                    held_down: vec![],
                },
                ClusterLocate {
                    id: "cluster-b".into(),
                    enabled: true,
                    report: Some(ClusterReport {
                        verdict: ClusterVerdict::Found(ClusterFound {
                            body: Blob::from(b"12345".as_slice()),
                            address: 1,
                        }),
                        addresses: vec![
                            (
                                "http://192.0.2.20:6970".into(),
                                answer(
                                    AddressOutcome::Failed(FailReason::ConnectTimeout {
                                        after: Duration::from_secs(1),
                                    }),
                                    None,
                                    1001,
                                ),
                            ),
                            (
                                "http://192.0.2.21:6970".into(),
                                answer(
                                    AddressOutcome::Found(Blob::from(b"12345".as_slice())),
                                    Some(200),
                                    35,
                                ),
                            ),
                        ],
                    }),
                    held_down: vec![("http://192.0.2.20:6970".into(), Duration::from_millis(4200))],
                },
                ClusterLocate {
                    id: "cluster-c".into(),
                    enabled: false,
                    report: None,
                    held_down: vec![],
                },
            ],
            strategy: Strategy::Parallel,
            on_unreachable: OnUnreachable::RetryLater,
            verdict: LocateVerdict::Cluster {
                id: "cluster-b".into(),
                size: 5,
            },
            reason: "found on cluster-b (priority 2 of 2)".into(),
            elapsed: Duration::from_millis(1002),
        };
        // cluster-a's address is another tftproxy that found a loop.
        report.clusters[0].report.as_mut().unwrap().addresses[0]
            .1
            .peer = Some(Peer {
            id: Some("regional".into()),
            server: Some("tftproxy/0.1.0".into()),
            source: None,
            partial: Some(Partial::Loop),
        });
        let text = render(&report);
        assert!(text.starts_with("SEP001122334455.cnf.xml  (device SEP001122334455)\n"));
        assert!(
            text.contains("asked with Via: 1.1 tftproxy-site-1 (remote.max_hops = 3)"),
            "{text}"
        );
        assert!(
            text.contains(
                "404     12 ms  not found\n      tftproxy hop: tftproxy-regional (tftproxy/0.1.0): \
                 answered from its files and caches only: it found itself in the Via chain"
            ),
            "{text}"
        );
        assert!(
            text.contains("asked as \"/SEP001122334455.cnf.xml\""),
            "{text}"
        );
        assert!(
            text.contains("cluster-a  priority 1  → not found"),
            "{text}"
        );
        assert!(
            text.contains("http://192.0.2.10:6970  404     12 ms  not found"),
            "{text}"
        );
        assert!(
            text.contains(
                "-   1001 ms  failed: connect timed out after 1s  \
                 [held down: phones do not ask it for 5s more]\n"
            ),
            "{text}"
        );
        assert!(text.contains("found (5 bytes)\n"), "{text}");
        assert!(text.contains("200     35 ms  found (5 bytes)"), "{text}");
        assert!(text.contains("cluster-c  disabled (not asked)"), "{text}");
        assert!(
            text.contains("verdict: served from cluster-b (5 bytes)"),
            "{text}"
        );
        assert!(text.contains("why: found on cluster-b"), "{text}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn renders_a_refused_name() {
        let report = LocateReport {
            name: "../x".into(),
            normalised: None,
            classified: None,
            local: None,
            local_error: None,
            via: "1.1 tftproxy-site-1".into(),
            max_hops: 3,
            clusters: vec![],
            strategy: Strategy::Parallel,
            on_unreachable: OnUnreachable::RetryLater,
            verdict: LocateVerdict::Denied("'..' in file name".into()),
            reason: "the name is refused".into(),
            elapsed: Duration::ZERO,
        };
        let text = render(&report);
        assert!(
            text.contains("verdict: refused ('..' in file name)"),
            "{text}"
        );
    }
}
