//! What a cluster's addresses answer, classified: the vocabulary shared by
//! the upstream client, the resolver (metrics, cluster health) and
//! `tftproxy locate`.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;

use super::Peer;
use crate::body::Blob;
use crate::verdict::{self, Verdict};

/// Why one address did not give a usable answer. `Display` is written to read
/// well at the end of a log line ("… failed: connection refused").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FailReason {
    /// The TCP (or TLS) connection could not be established.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection was not established within `remote.connect_timeout`.
    #[error("connect timed out after {}", humantime::format_duration(*after))]
    ConnectTimeout { after: Duration },
    /// No response within `remote.request_timeout`, or a body still not
    /// complete after [`super::BODY_CEILING`].
    #[error("no complete answer within {}", humantime::format_duration(*after))]
    Timeout { after: Duration },
    /// The body stopped arriving: no data for `remote.request_timeout`.
    #[error("the body stalled: no data for {}", humantime::format_duration(*after))]
    Stalled { after: Duration },
    /// A status that is neither 200, 404/403/410 nor 503 (3xx are not followed).
    #[error("unexpected HTTP status {}", status_text(*.0))]
    Status(u16),
    /// A 200 whose body is encoded (`Content-Encoding: gzip`, …) although we
    /// ask for `identity`: those bytes are not the file, so they are never
    /// served or cached.
    #[error("the body has Content-Encoding {0:?} (we ask for identity)")]
    ContentEncoding(String),
    /// The body did not match its `Content-Length`.
    #[error("body is {got} bytes, Content-Length said {expected}")]
    BodyLength { expected: u64, got: u64 },
    /// The body is larger than `cache.max_file_size`.
    #[error("file larger than the {limit}-byte limit (cache.max_file_size)")]
    TooLarge { limit: u64 },
    /// The body could not be read (connection reset, bad chunk encoding, …).
    #[error("error reading the body: {0}")]
    Body(String),
    /// The request failed before a response arrived, for another reason
    /// (connection closed early, malformed response, …).
    #[error("request failed: {0}")]
    Request(String),
    /// The name cannot be expressed as a URL path on this base URL
    /// (a `.`/`..` segment, or a malformed base URL).
    #[error("cannot build a URL: {0}")]
    InvalidUrl(String),
    /// The body arrived more slowly than `remote.min_body_rate`: this many
    /// bytes in a whole window after its first byte.
    #[error(
        "the body arrived too slowly: {got} bytes in {}, under the {min_rate} bytes/s of remote.min_body_rate",
        humantime::format_duration(*window)
    )]
    TooSlow {
        got: u64,
        window: Duration,
        min_rate: u64,
    },
    /// Not asked: the address failed recently (or asked for time with
    /// `Retry-After`) and is skipped for this long still (`remote.hold_down`).
    #[error("held down, not asked (for {} more)", humantime::format_duration(*remaining))]
    HeldDown { remaining: Duration },
}

impl FailReason {
    /// The address was not asked at all (held down).
    pub fn is_held_down(&self) -> bool {
        matches!(self, FailReason::HeldDown { .. })
    }

    /// The address itself failed: no connection, no answer in time, the
    /// connection broke. Otherwise it answered, but unusably for this name
    /// (a 5xx or 3xx status, a body too large or cut short, a name that
    /// cannot be a URL): another name may well work. Only an address
    /// failure holds an address down.
    pub fn is_address_failure(&self) -> bool {
        match self {
            FailReason::Connect(_)
            | FailReason::ConnectTimeout { .. }
            | FailReason::Timeout { .. }
            | FailReason::Stalled { .. }
            | FailReason::TooSlow { .. }
            | FailReason::Body(_)
            | FailReason::Request(_)
            | FailReason::HeldDown { .. } => true,
            FailReason::Status(_)
            | FailReason::BodyLength { .. }
            | FailReason::TooLarge { .. }
            | FailReason::InvalidUrl(_)
            | FailReason::ContentEncoding(_) => false,
        }
    }
}

fn status_text(code: u16) -> String {
    match StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{code} {reason}"),
        None => code.to_string(),
    }
}

/// Why this proxy did not ask an address, or stopped asking it, for its own
/// reasons: the address is not to blame (no hold-down, not in its status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Declined {
    /// `remote.max_queued` fetches already wait for a turn at this cluster.
    #[error("not asked: remote.max_queued fetches already wait for this cluster")]
    QueueFull,
    /// Nobody waits for this fetch any more, and it was still waiting for a
    /// turn, or for its answer to begin while another fetch waited.
    #[error("given up: nobody waits for the answer any more")]
    Abandoned,
    /// The body would take the bytes being received over
    /// `remote.max_inflight_bytes`.
    #[error("cut off: the bodies being received would exceed the {limit}-byte remote.max_inflight_bytes")]
    OverBudget { limit: u64 },
}

/// What identifies one version of a file (from a 200), for a later
/// conditional request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// A revalidation: the copy held and its validators, sent as
/// `If-None-Match` / `If-Modified-Since`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conditional {
    pub validators: Validators,
    pub body: Blob,
}

/// What one address answered, classified by HTTP status:
///
/// | the address answers | outcome |
/// |---|---|
/// | 200 | Found (body bounded by `cache.max_file_size`) |
/// | 304 to a conditional request | NotModified, carrying the copy held: a Found for the rules |
/// | 404, 403, 410 | NotFound — authoritative, the other addresses are not asked |
/// | 503 | Busy — try the next address |
/// | connect error, time-out, other 5xx, 3xx, other 4xx, bad body, a `Content-Encoding` other than `identity` | Failed — try the next address |
/// | (not asked: held down) | Failed — try the next address |
/// | (declined by this proxy: queue full, over the body budget) | Declined, Busy for the rules — try the next address |
/// | (declined: nobody waits any more) | Declined, Unreachable for the rules — and nothing more is asked |
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressOutcome {
    /// 200 with a complete body.
    Found(Blob),
    /// 304 to a conditional request: the copy held (carried here) is
    /// current. The verdict rules see it as Found.
    NotModified(Blob),
    /// 404, 403 or 410.
    NotFound,
    /// 503.
    Busy,
    /// Anything else, and why.
    Failed(FailReason),
    /// Not asked, or cut off, by this proxy's own limits.
    Declined(Declined),
}

impl AddressOutcome {
    /// The outcome as a verdict (a failed address is unreachable).
    pub fn verdict(&self) -> Verdict<&Blob> {
        match self {
            AddressOutcome::Found(body) | AddressOutcome::NotModified(body) => Verdict::Found(body),
            AddressOutcome::NotFound => Verdict::NotFound,
            AddressOutcome::Busy => Verdict::Busy,
            AddressOutcome::Failed(_) | AddressOutcome::Declined(Declined::Abandoned) => {
                Verdict::Unreachable
            }
            AddressOutcome::Declined(Declined::QueueFull | Declined::OverBudget { .. }) => {
                Verdict::Busy
            }
        }
    }
}

impl fmt::Display for AddressOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressOutcome::Found(body) => write!(f, "found ({body})"),
            AddressOutcome::NotModified(body) => write!(f, "not modified ({body} kept)"),
            AddressOutcome::NotFound => f.write_str("not found"),
            AddressOutcome::Busy => f.write_str("busy"),
            AddressOutcome::Failed(reason) => write!(f, "failed: {reason}"),
            AddressOutcome::Declined(why) => write!(f, "busy here: {why}"),
        }
    }
}

/// One address's answer with how long it took and the HTTP status, if any
/// response arrived, and who answered when it was another tftproxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressReport {
    pub outcome: AddressOutcome,
    pub elapsed: Duration,
    pub status: Option<u16>,
    /// A `503`'s `Retry-After` (seconds or an HTTP date), as a delay from
    /// when the answer arrived; `None` without one, or for other statuses.
    pub retry_after: Option<Duration>,
    pub peer: Option<Peer>,
    /// `ETag` and `Last-Modified` of a 200.
    pub validators: Validators,
}

impl AddressReport {
    /// The report of an address skipped because it is held down for
    /// `remaining` still (rounded up to whole seconds: it is read by people).
    pub fn held_down(remaining: Duration) -> AddressReport {
        let remaining =
            Duration::from_secs(remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0));
        AddressReport::of(AddressOutcome::Failed(FailReason::HeldDown { remaining }))
    }

    /// A report with this outcome and nothing else known yet.
    pub fn of(outcome: AddressOutcome) -> AddressReport {
        AddressReport {
            outcome,
            elapsed: Duration::ZERO,
            status: None,
            retry_after: None,
            peer: None,
            validators: Validators::default(),
        }
    }

    /// A "not found" from a tftproxy that could not ask everything
    /// ([`crate::via::Partial`]).
    pub fn is_partial_not_found(&self) -> bool {
        self.outcome == AddressOutcome::NotFound
            && self.peer.as_ref().is_some_and(|p| p.partial.is_some())
    }
}

/// What a Found cluster carries: the body, and which of its addresses (an
/// index in the cluster's list) served it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterFound {
    pub body: Blob,
    pub address: usize,
}

impl fmt::Display for ClusterFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, address #{}", self.body, self.address + 1)
    }
}

/// What a cluster (all its addresses together) answered for a name.
pub type ClusterVerdict = Verdict<ClusterFound>;

/// A cluster's verdict and, in the order asked, each address's report (for
/// logs, metrics and `tftproxy locate`). Addresses not asked are absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterReport {
    pub verdict: ClusterVerdict,
    pub addresses: Vec<(String, AddressReport)>,
}

impl ClusterReport {
    /// The report of address answers listed in the cluster's order, with
    /// the verdict [`verdict::over_replicas`] gives them.
    pub fn of(addresses: Vec<(String, AddressReport)>) -> ClusterReport {
        let verdict = verdict::over_replicas(addresses.iter().map(|(_, r)| r.outcome.verdict()))
            .map(|(address, body)| ClusterFound {
                body: body.clone(),
                address,
            });
        ClusterReport { verdict, addresses }
    }

    /// The cluster's "not found" came from a tftproxy that answered from its
    /// files and caches only: true, but maybe not the whole truth.
    pub fn is_partial(&self) -> bool {
        self.verdict == Verdict::NotFound
            && self
                .addresses
                .iter()
                .find(|(_, r)| r.outcome.verdict().is_authoritative())
                .is_some_and(|(_, r)| r.is_partial_not_found())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_reasons_read_well() {
        assert_eq!(
            FailReason::Status(302).to_string(),
            "unexpected HTTP status 302 Found"
        );
        assert_eq!(
            FailReason::Status(599).to_string(),
            "unexpected HTTP status 599"
        );
        assert_eq!(
            FailReason::Timeout {
                after: Duration::from_millis(500)
            }
            .to_string(),
            "no complete answer within 500ms"
        );
        assert_eq!(
            FailReason::BodyLength {
                expected: 10,
                got: 4
            }
            .to_string(),
            "body is 4 bytes, Content-Length said 10"
        );
        assert_eq!(
            FailReason::ContentEncoding("gzip".into()).to_string(),
            "the body has Content-Encoding \"gzip\" (we ask for identity)"
        );
        assert_eq!(
            FailReason::TooLarge { limit: 1024 }.to_string(),
            "file larger than the 1024-byte limit (cache.max_file_size)"
        );
    }

    #[test]
    fn verdict_of_listed_answers() {
        let report = |outcome| {
            (
                "http://h".to_string(),
                AddressReport {
                    outcome,
                    elapsed: Duration::ZERO,
                    status: None,
                    retry_after: None,
                    peer: None,
                    validators: Validators::default(),
                },
            )
        };
        let failed = || AddressOutcome::Failed(FailReason::Status(500));
        let verdict = |answers| ClusterReport::of(answers).verdict;
        assert_eq!(
            verdict(vec![report(failed()), report(AddressOutcome::NotFound)]),
            Verdict::NotFound
        );
        assert_eq!(
            verdict(vec![
                report(AddressOutcome::Busy),
                report(AddressOutcome::Found(Blob::from(b"x".as_slice())))
            ]),
            Verdict::Found(ClusterFound {
                body: Blob::from(b"x".as_slice()),
                address: 1
            })
        );
        assert_eq!(
            verdict(vec![report(failed()), report(AddressOutcome::Busy)]),
            Verdict::Busy
        );
        assert_eq!(verdict(vec![report(failed())]), Verdict::Unreachable);
        assert_eq!(verdict(vec![]), Verdict::Unreachable);
    }

    #[test]
    fn outcomes_print_sizes_not_bodies() {
        let outcome = AddressOutcome::Found(Blob::from(vec![0u8; 4096]));
        assert_eq!(format!("{outcome:?}"), "Found(<4096 bytes>)");
        assert_eq!(outcome.to_string(), "found (4096 bytes)");
        let found: ClusterVerdict = Verdict::Found(ClusterFound {
            body: Blob::from(vec![0u8; 12]),
            address: 1,
        });
        assert_eq!(found.to_string(), "found (12 bytes, address #2)");
    }
}
