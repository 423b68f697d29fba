//! One read transfer, from the request to the last ACK: resolve the name,
//! answer a refusal with an ERROR, or put a [`Transfer`] on its own socket
//! until it ends, then count and log how it ended.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{info, warn};

use super::socket::{bind_transfer_socket, Listener};
use super::{Settings, TftpFront, BUSY_MESSAGE, NETASCII_MAX};
use crate::body::Body;
use crate::metrics::{Front, FrontLabels, RequestResult, TransferLabels, TransferOutcome};
use crate::resolve::{Answer, Lookup};
use crate::sync::lock;
use crate::tftp::netascii;
use crate::tftp::options::negotiate;
use crate::tftp::packet::{ErrorCode, Mode, Packet, Request};
use crate::tftp::send::{Outcome, Stats, Transfer};

/// Largest datagram a transfer socket reads (ACKs are 4 bytes).
const TRANSFER_RECV_BUFFER: usize = 1024;

/// What a transfer task starts from.
pub(super) struct Start {
    pub(super) front: Arc<TftpFront>,
    pub(super) settings: Arc<Settings>,
    pub(super) listener: Weak<Listener>,
    pub(super) client: SocketAddr,
    pub(super) fingerprint: u64,
    pub(super) local: SocketAddr,
    pub(super) request: Request,
}

/// Removes a client from the active set and updates the gauge when the
/// transfer task ends, however it ends.
struct ActiveGuard {
    front: Arc<TftpFront>,
    client: SocketAddr,
    fingerprint: u64,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut active = lock(&self.front.active);
        // The phone may already have started its next request from the
        // same port; that entry is not ours to remove.
        if active.get(&self.client) == Some(&self.fingerprint) {
            active.remove(&self.client);
        }
        drop(active);
        self.front.metrics.active_transfers.dec();
    }
}

/// Runs one transfer task to its end.
pub(super) async fn run(start: Start, permit: OwnedSemaphorePermit) {
    let Start {
        front,
        settings,
        listener,
        client,
        fingerprint,
        local,
        request,
    } = start;
    front.metrics.active_transfers.inc();
    let _guard = ActiveGuard {
        front: front.clone(),
        client,
        fingerprint,
        _permit: permit,
    };
    let metrics = &front.metrics;
    let started = Instant::now();
    let socket = match bind_transfer_socket(local, settings.port_range.as_ref(), client).await {
        Ok(socket) => socket,
        Err(error) => {
            warn!(%client, %error, "no socket for a transfer");
            metrics.request(Front::Tftp, RequestResult::Busy);
            if let Some(listener) = listener.upgrade() {
                let busy = Packet::error(ErrorCode::NotDefined, BUSY_MESSAGE);
                listener.send_from(client, Some(local.ip()), &busy);
            }
            return;
        }
    };
    let name = &request.filename;
    let lookup = Lookup {
        name,
        client: client.ip(),
        from_proxy: false,
    };
    // Upstream fetches run in their own tasks: giving up at fetch_wait
    // leaves the fetch running, and the phone's retry is served from what
    // it brings back.
    let resolving = async { front.resolver.current().resolve(&lookup).await };
    let answer = match tokio::time::timeout(settings.fetch_wait, resolving).await {
        Ok(answer) => answer,
        Err(_) => {
            metrics.tftp_fetch_wait_expired.inc();
            info!(%client, name, "not resolved within tftp.fetch_wait; retry later");
            Answer::RetryLater
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
            return refusal.send(&front, &socket, client, name, started).await;
        }
        Answer::RetryLater => {
            let refusal = Refusal::new(ErrorCode::NotDefined, BUSY_MESSAGE, RequestResult::Busy);
            return refusal.send(&front, &socket, client, name, started).await;
        }
        Answer::Denied(reason) => {
            let message = format!("access denied: {reason}");
            let refusal = Refusal::new(ErrorCode::AccessViolation, &message, RequestResult::Denied);
            return refusal.send(&front, &socket, client, name, started).await;
        }
    };
    if request.mode == Mode::Netascii && body.len() > NETASCII_MAX {
        // netascii is converted in memory; text files are small, and a
        // firmware image asked for in netascii is a mistake, not a reason
        // to hold its size in memory per request.
        info!(%client, name, bytes = body.len(), "netascii refused for a large file");
        metrics.request(Front::Tftp, RequestResult::Denied);
        let message = format!(
            "netascii is limited to files of {} KiB; ask in octet (binary) mode",
            NETASCII_MAX >> 10
        );
        let _ = socket
            .send(&Packet::error(ErrorCode::NotDefined, &message))
            .await;
        return;
    }
    let body = match request.mode {
        Mode::Netascii => match body.to_bytes() {
            Ok(bytes) => Body::from(bytes::Bytes::from(netascii::encode(&bytes))),
            Err(error) => return fail_read(&front, &socket, client, name, &error).await,
        },
        _ => body,
    };
    let negotiated = negotiate(&request.options, &settings.limits, body.len());
    let transfer = match Transfer::start(body, &negotiated, settings.max_retries, Instant::now()) {
        Ok(transfer) => transfer,
        Err(error) => return fail_read(&front, &socket, client, name, &error).await,
    };
    let (outcome, stats, size) = drive(transfer, &socket).await;
    metrics.retransmissions.inc_by(stats.retransmissions);
    let label = match &outcome {
        Outcome::Completed => TransferOutcome::Completed,
        Outcome::TimedOut => TransferOutcome::TimedOut,
        Outcome::ClientError { .. } => TransferOutcome::ClientError,
        Outcome::ReadFailed(_) => TransferOutcome::ReadFailed,
    };
    metrics
        .transfers
        .get_or_create(&TransferLabels { outcome: label })
        .inc();
    let ms = started.elapsed().as_millis() as u64;
    match outcome {
        Outcome::Completed => {
            metrics.request(Front::Tftp, RequestResult::Served);
            metrics
                .bytes_sent
                .get_or_create(&FrontLabels { front: Front::Tftp })
                .inc_by(size);
            info!(%client, name, %source, bytes = size, ms, "served");
        }
        other => {
            metrics.request(Front::Tftp, RequestResult::Error);
            info!(%client, name, %source, bytes = size, ms, outcome = ?other, "transfer not completed");
        }
    }
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

    /// Counts, logs and sends the ERROR packet.
    async fn send(
        self,
        front: &TftpFront,
        socket: &UdpSocket,
        client: SocketAddr,
        name: &str,
        started: Instant,
    ) {
        let Refusal {
            code,
            message,
            result,
        } = self;
        front.metrics.request(Front::Tftp, result);
        info!(%client, name, result = ?result, ms = started.elapsed().as_millis() as u64, "{message}");
        let _ = socket.send(&Packet::error(code, message)).await;
    }
}

async fn fail_read(
    front: &TftpFront,
    socket: &UdpSocket,
    client: SocketAddr,
    name: &str,
    error: &io::Error,
) {
    warn!(%client, name, %error, "cannot read file");
    front.metrics.request(Front::Tftp, RequestResult::Error);
    let _ = socket
        .send(&Packet::error(ErrorCode::NotDefined, "cannot read file"))
        .await;
}

/// Puts a transfer on a socket until it ends.
async fn drive(mut transfer: Transfer<Body>, socket: &UdpSocket) -> (Outcome, Stats, u64) {
    let mut buf = [0u8; TRANSFER_RECV_BUFFER];
    // One lazy timer for the whole transfer. Every ACK pushes the deadline
    // on; re-arming a timer per packet is timer-wheel work on every block.
    // Instead the timer is moved only when the deadline comes earlier or the
    // timer has fired; a firing before the real deadline is a no-op for the
    // state machine (it checks the time) and just re-arms the timer.
    let timer = tokio::time::sleep_until(transfer.deadline().unwrap_or_else(Instant::now).into());
    tokio::pin!(timer);
    let outcome = loop {
        let mut gone = false;
        while let Some(datagram) = transfer.poll_transmit() {
            let sent = socket.send(&datagram).await;
            transfer.recycle(datagram);
            if let Err(error) = sent {
                gone = is_peer_gone(&error);
                if gone {
                    break;
                }
            }
        }
        if let Some(outcome) = transfer.outcome() {
            break outcome.clone();
        }
        let Some(deadline) = transfer.deadline() else {
            break Outcome::TimedOut;
        };
        if gone {
            break client_port_unreachable();
        }
        if timer.is_elapsed() || deadline < timer.deadline().into_std() {
            timer.as_mut().reset(deadline.into());
        }
        tokio::select! {
            received = socket.recv(&mut buf) => match received {
                Ok(n) => transfer.handle_datagram(&buf[..n], Instant::now()),
                Err(error) if is_peer_gone(&error) => break client_port_unreachable(),
                Err(_) => {}
            },
            _ = &mut timer => transfer.handle_timeout(Instant::now()),
        }
    };
    (outcome, transfer.stats(), transfer.size())
}

fn client_port_unreachable() -> Outcome {
    Outcome::ClientError {
        code: 0,
        message: "client port unreachable".into(),
    }
}

fn is_peer_gone(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::ConnectionRefused
}
