//! One read request's life outside the socket loop: resolve the name and
//! start its [`Transfer`], or answer a refusal with an ERROR; once it has
//! ended, count and log how.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{info, warn};

use super::{Settings, TftpFront, BUSY_MESSAGE, NETASCII_MAX};
use crate::body::{Body, Netascii};
use crate::logging::LogAddr;
use crate::metrics::{
    Front, FrontLabels, Metrics, RequestLabels, RequestResult, TransferLabels, TransferOutcome,
};
use crate::resolve::{Answer, Lookup, Source};
use crate::tftp::options::negotiate;
use crate::tftp::packet::{ErrorCode, Mode, Packet, Request};
use crate::tftp::send::{Outcome, Stats, Transfer};
use crate::via::Chain;

/// A transfer that is sending: its `tftp.max_transfers` permit, counted in
/// `tftproxy_active_transfers` while it is held.
pub(super) struct Sending {
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl Sending {
    fn new(metrics: Arc<Metrics>, permit: OwnedSemaphorePermit) -> Sending {
        metrics.active_transfers.inc();
        Sending {
            metrics,
            _permit: permit,
        }
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.metrics.active_transfers.dec();
    }
}

/// A lookup waiting on the clusters: its `tftp.max_resolving` permit,
/// counted in `tftproxy_tftp_resolving` while it is held.
struct Resolving {
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Resolving {
    fn drop(&mut self) {
        self.metrics.tftp_resolving.dec();
    }
}

/// A request ready to send: the transfer, where its file came from, and
/// its `max_transfers` permit.
pub(super) type Prepared = (Transfer<Body>, Source, Sending);

/// Resolves the request and starts its [`Transfer`] (its first packets
/// queued), or returns the ERROR to answer with, counted and logged. It may
/// wait on clusters, so never on a socket loop.
///
/// What needs no cluster (a local file, a fresh cached copy, a refusal) is
/// answered at once; a lookup that must wait on the clusters holds a
/// `tftp.max_resolving` permit while it waits (none free: busy at once).
/// The `tftp.max_transfers` permit is taken only once there is a file to
/// send, so lookups waiting on slow clusters never starve local files.
pub(super) async fn prepare(
    front: &TftpFront,
    settings: &Settings,
    client: SocketAddr,
    request: Request,
    started: Instant,
) -> Result<Prepared, Vec<u8>> {
    let metrics = &front.metrics;
    let name = &request.filename;
    let lookup = Lookup {
        name,
        client: client.ip(),
        via: Chain::default(),
    };
    // Upstream fetches run in their own tasks: giving up at fetch_wait
    // leaves the fetch running, and the phone's retry is served from what
    // it brings back.
    let resolver = front.resolver.current();
    let answer = match resolver.resolve_nearby(&lookup).await {
        Some(answer) => answer,
        None => {
            let Some(permit) = front.resolving.try_take() else {
                metrics.tftp_resolving_busy.inc();
                let refusal =
                    Refusal::new(ErrorCode::NotDefined, BUSY_MESSAGE, RequestResult::Busy);
                return Err(refusal.record(front, client, name, started));
            };
            metrics.tftp_resolving.inc();
            let _resolving = Resolving {
                metrics: metrics.clone(),
                _permit: permit,
            };
            let resolving = resolver.resolve(&lookup);
            match tokio::time::timeout(settings.fetch_wait, resolving).await {
                Ok(answer) => answer,
                Err(_) => {
                    metrics.tftp_fetch_wait_expired.inc();
                    info!(%client, name, "not resolved within tftp.fetch_wait; retry later");
                    Answer::RetryLater
                }
            }
        }
    };
    let (body, source) = match answer {
        Answer::File { body, source } => (body, source),
        Answer::NotFound => {
            let refusal = Refusal::new(
                ErrorCode::FileNotFound,
                "File not found",
                RequestResult::NotFound,
            );
            return Err(refusal.record(front, client, name, started));
        }
        Answer::RetryLater => {
            let refusal = Refusal::new(ErrorCode::NotDefined, BUSY_MESSAGE, RequestResult::Busy);
            return Err(refusal.record(front, client, name, started));
        }
        Answer::Denied(reason) => {
            let message = format!("access denied: {reason}");
            let refusal = Refusal::new(ErrorCode::AccessViolation, &message, RequestResult::Denied);
            return Err(refusal.record(front, client, name, started));
        }
    };
    let Some(permit) = take_slot(front).await else {
        metrics.busy_rejections.inc();
        let refusal = Refusal::new(ErrorCode::NotDefined, BUSY_MESSAGE, RequestResult::Busy);
        return Err(refusal.record(front, client, name, started));
    };
    let sending = Sending::new(metrics.clone(), permit);
    if request.mode == Mode::Netascii && body.len() > NETASCII_MAX {
        // netascii reads the whole file once to measure it converted; text
        // files are small, and a firmware image asked for in netascii is a
        // mistake, not a reason to read it all per request.
        info!(%client, name, bytes = body.len(), "netascii refused for a large file");
        metrics.request(Front::Tftp, RequestResult::Denied);
        let message = format!(
            "netascii is limited to files of {} KiB; ask in octet (binary) mode",
            NETASCII_MAX >> 10
        );
        return Err(Packet::error(ErrorCode::NotDefined, &message));
    }
    let body = match request.mode {
        Mode::Netascii => match Netascii::new(body) {
            Ok(view) => Body::Netascii(Arc::new(view)),
            Err(error) => return Err(fail_read(front, client, name, &error)),
        },
        _ => body,
    };
    let negotiated = negotiate(&request.options, &settings.limits, body.len());
    match Transfer::start(body, &negotiated, settings.max_retries, Instant::now()) {
        Ok(transfer) => {
            front
                .series
                .first_byte
                .observe(started.elapsed().as_secs_f64());
            Ok((transfer, source, sending))
        }
        Err(error) => Err(fail_read(front, client, name, &error)),
    }
}

/// The metric series every file served updates, looked up once per front:
/// `Family::get_or_create` hashes its labels with SipHash under a lock, and
/// four such lookups were 3.5 % of a served file's instructions (callgrind:
/// 45,166 → 43,568 per file in per-port mode once gone).
/// A handle shares its series' value with the family's.
pub(super) struct Series {
    first_byte: Histogram,
    completed: Counter,
    bytes_sent: Counter,
    served: Counter,
}

impl Series {
    pub(super) fn new(metrics: &Metrics) -> Series {
        let tftp = FrontLabels { front: Front::Tftp };
        Series {
            first_byte: metrics.first_byte.get_or_create(&tftp).clone(),
            completed: (metrics.transfers)
                .get_or_create(&TransferLabels {
                    outcome: TransferOutcome::Completed,
                })
                .clone(),
            bytes_sent: metrics.bytes_sent.get_or_create(&tftp).clone(),
            served: (metrics.requests)
                .get_or_create(&RequestLabels {
                    front: Front::Tftp,
                    result: RequestResult::Served,
                })
                .clone(),
        }
    }
}

/// What the log line of an ended transfer names.
pub(super) struct Ended<'a> {
    pub(super) client: SocketAddr,
    /// The address the transfer's packets left from.
    pub(super) local: Option<SocketAddr>,
    pub(super) name: &'a str,
    pub(super) source: &'a Source,
    pub(super) started: Instant,
}

/// Counts and logs how a transfer ended. `outcome` may be
/// the driver's (the phone's port closed, a new request replaced it) rather
/// than the state machine's.
pub(super) fn record(
    front: &TftpFront,
    ended: &Ended<'_>,
    outcome: Outcome,
    transfer: &Transfer<Body>,
) {
    let metrics = &front.metrics;
    let Ended {
        client,
        local,
        name,
        source,
        started,
    } = ended;
    let stats: Stats = transfer.stats();
    let (size, sent) = (transfer.size(), transfer.acknowledged_bytes());
    let (blksize, windowsize) = (transfer.block_size(), transfer.window_size());
    let (client, local) = (LogAddr::from(*client), LogAddr(*local));
    metrics.retransmissions.inc_by(stats.retransmissions);
    metrics
        .transfer_duration
        .observe(started.elapsed().as_secs_f64());
    let label = match &outcome {
        Outcome::Completed => TransferOutcome::Completed,
        Outcome::TimedOut => TransferOutcome::TimedOut,
        Outcome::ClientError { .. } => TransferOutcome::ClientError,
        Outcome::ReadFailed(_) => TransferOutcome::ReadFailed,
    };
    match label {
        TransferOutcome::Completed => front.series.completed.inc(),
        outcome => metrics
            .transfers
            .get_or_create(&TransferLabels { outcome })
            .inc(),
    };
    front.series.bytes_sent.inc_by(sent);
    let ms = started.elapsed().as_millis() as u64;
    let (result, reason) = match &outcome {
        Outcome::Completed => {
            front.series.served.inc();
            info!(%client, %local, name, %source, bytes = size, blksize, windowsize, ms, "served");
            return;
        }
        Outcome::TimedOut => (
            RequestResult::ClientGone,
            "no acknowledgement after every retransmission".to_owned(),
        ),
        Outcome::ClientError { message, .. } if message == PORT_UNREACHABLE => {
            (RequestResult::ClientGone, PORT_UNREACHABLE.to_owned())
        }
        Outcome::ClientError { code, message } => (
            RequestResult::Error,
            format!("the phone sent ERROR {code}: {message}"),
        ),
        Outcome::ReadFailed(error) => (RequestResult::Error, format!("read failed: {error}")),
    };
    metrics.request(Front::Tftp, result);
    warn!(%client, %local, name, %source, bytes = sent, size, blksize, windowsize, ms,
        outcome = %label, %reason, "transfer not completed");
}

/// A resolver answer that is not a file, as the phone gets it.
struct Refusal<'a> {
    code: ErrorCode,
    message: &'a str,
    result: RequestResult,
}

impl<'a> Refusal<'a> {
    fn new(code: ErrorCode, message: &'a str, result: RequestResult) -> Self {
        Refusal {
            code,
            message,
            result,
        }
    }

    /// Counts and logs the refusal; returns the ERROR packet to send.
    fn record(
        self,
        front: &TftpFront,
        client: SocketAddr,
        name: &str,
        started: Instant,
    ) -> Vec<u8> {
        let Refusal {
            code,
            message,
            result,
        } = self;
        front.metrics.request(Front::Tftp, result);
        info!(%client, name, %result, ms = started.elapsed().as_millis() as u64, "{message}");
        Packet::error(code, message)
    }
}

fn fail_read(front: &TftpFront, client: SocketAddr, name: &str, error: &io::Error) -> Vec<u8> {
    warn!(%client, name, %error, "cannot read file");
    front.metrics.request(Front::Tftp, RequestResult::Error);
    Packet::error(ErrorCode::NotDefined, "cannot read file")
}

/// A `max_transfers` permit: a free one, or the one the oldest unanswered
/// transfer gives back when it is ended to make room (see `unanswered`).
async fn take_slot(front: &TftpFront) -> Option<OwnedSemaphorePermit> {
    if let Some(permit) = front.slots.try_take() {
        return Some(permit);
    }
    if !front.unanswered.end_oldest() {
        return None;
    }
    // The ended transfer's task drops its permit at its next poll.
    tokio::time::timeout(SLOT_HANDOVER, front.slots.take())
        .await
        .ok()
}

/// How long a request waits for the permit of a transfer ended for it.
const SLOT_HANDOVER: std::time::Duration = std::time::Duration::from_millis(200);

/// Why a transfer ended when the phone's port closed (ICMP port
/// unreachable): the phone went away, not an error of ours.
pub(super) const PORT_UNREACHABLE: &str = "client port unreachable";
