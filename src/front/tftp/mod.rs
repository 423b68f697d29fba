//! The TFTP front: listener sockets that take requests, and one task per
//! transfer on its own ephemeral socket that drives a
//! [`crate::tftp::send::Transfer`].
//!
//! A listener does as little as possible so that it keeps up with a boot
//! storm: it drains its socket in batches (`recvmmsg`), asks
//! [`crate::tftp::accept`] what each datagram calls for, and hands each read
//! request to a new task. The socket's receive buffer is enlarged so that a
//! burst of thousands of RRQs is queued rather than dropped (a dropped RRQ
//! costs the phone its retransmit time). Each request's destination address
//! is read from `IP_PKTINFO`, and the transfer socket binds that address, so
//! replies leave from the address the phone asked, even on a multi-homed
//! host behind a wildcard listener.
//!
//! With `tftp.single_port` a listener is driven by `single.rs` instead: all
//! its transfers on its own socket.

mod active;
mod admission;
mod segment;
mod single;
mod socket;
mod transfer;
mod unanswered;

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use quinn_udp::{RecvMeta, BATCH_SIZE};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::slots::Slots;
use super::ListenerHandle;
use crate::config::{AllowList, TftpConfig};
use crate::metrics::{ClientRefusal, Front, Metrics, RequestResult};
use crate::resolve::ResolverHandle;
use crate::tftp::accept::{accept, Accept, Refused};
use crate::tftp::options::Limits;
use crate::tftp::packet::{ErrorCode, Packet};

pub(crate) use socket::Listener;

/// The message phones get when they must try again (Cisco's wording is
/// undocumented; this one says what to do).
pub const BUSY_MESSAGE: &str = "busy, retry later";

/// Largest file sent in netascii mode (read whole once to measure it).
pub const NETASCII_MAX: u64 = 1 << 20;

/// Settings of the TFTP engine, from `[tftp]`. A transfer keeps the ones in
/// force when it started.
#[derive(Clone, Debug)]
struct Settings {
    limits: Limits,
    max_retries: u32,
    port_range: Option<RangeInclusive<u16>>,
    /// Read when a listener starts (`single.rs`).
    single_port: bool,
    allow: AllowList,
    max_transfers_per_client: usize,
    fetch_wait: Duration,
}

impl Settings {
    fn from_config(config: &TftpConfig) -> Settings {
        Settings {
            limits: Limits {
                max_block_size: config.max_block_size,
                max_window_size: config.max_window_size,
                default_timeout: config.retransmit_timeout,
            },
            max_retries: config.max_retries,
            port_range: config.port_range.clone(),
            single_port: config.single_port,
            allow: config.allow.clone(),
            max_transfers_per_client: config.max_transfers_per_client,
            fetch_wait: config.fetch_wait,
        }
    }
}

/// What every listener and transfer of the daemon shares, across reloads.
pub(crate) struct TftpFront {
    settings: ArcSwap<Settings>,
    resolver: ResolverHandle,
    metrics: Arc<Metrics>,
    /// `tftp.max_transfers`, for every listener and generation together:
    /// transfers sending, taken once a request has its file.
    slots: Slots,
    /// `tftp.max_resolving`: lookups waiting on the clusters.
    resolving: Slots,
    /// Per-client request rate and transfer cap.
    admission: Arc<admission::Admission>,
    /// Clients with a transfer running, to tell a repeated request from a
    /// new one.
    active: active::ActiveTable,
    /// The transfers running.
    transfers: TaskTracker,
    /// Per-port transfers whose client has not answered yet, oldest first:
    /// a full `max_transfers` ends the oldest to make room.
    unanswered: Arc<unanswered::Unanswered>,
}

impl TftpFront {
    pub(crate) fn new(
        config: &TftpConfig,
        resolver: ResolverHandle,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(TftpFront {
            settings: ArcSwap::from_pointee(Settings::from_config(config)),
            resolver,
            metrics,
            slots: Slots::new(config.max_transfers),
            resolving: Slots::new(config.max_resolving),
            admission: admission::Admission::new(config.client_request_rate),
            active: active::ActiveTable::default(),
            transfers: TaskTracker::new(),
            unanswered: Arc::default(),
        })
    }

    /// Applies a reloaded `[tftp]`: new requests get the new settings,
    /// running transfers finish under the ones they started with; the
    /// `max_transfers` limit counts both.
    pub(crate) fn update(&self, config: &TftpConfig) {
        self.settings.store(Arc::new(Settings::from_config(config)));
        self.slots.resize(config.max_transfers);
        self.resolving.resize(config.max_resolving);
        self.admission.update(config.client_request_rate);
    }

    /// The requests in progress, resolving or sending (to wait for them to
    /// end).
    pub(crate) fn transfers(&self) -> &TaskTracker {
        &self.transfers
    }

    /// Serves requests arriving on `listener` until the handle is dropped.
    /// Transfers it started go on.
    pub(crate) fn start(
        self: &Arc<Self>,
        configured: SocketAddr,
        listener: Listener,
    ) -> ListenerHandle {
        let bound = listener.local_addr();
        let stop = CancellationToken::new();
        if self.settings.load().single_port {
            tokio::spawn(single::serve(
                self.clone(),
                Arc::new(listener),
                stop.clone(),
            ));
        } else {
            tokio::spawn(self.clone().serve(Arc::new(listener), stop.clone()));
        }
        ListenerHandle::new(configured, bound, stop)
    }

    async fn serve(self: Arc<Self>, listener: Arc<Listener>, stop: CancellationToken) {
        let gro = listener.gro_segments().max(1);
        let slot = 2048 * gro;
        let mut storage = vec![0u8; slot * BATCH_SIZE];
        let mut meta = [RecvMeta::default(); BATCH_SIZE];
        info!(listen = %listener.local_addr(), "TFTP listening");
        loop {
            let received = tokio::select! {
                _ = stop.cancelled() => break,
                ready = listener.readable() => {
                    if let Err(error) = ready {
                        warn!(%error, "TFTP listener failed");
                        break;
                    }
                    let mut bufs: Vec<IoSliceMut<'_>> =
                        storage.chunks_mut(slot).map(IoSliceMut::new).collect();
                    listener.try_recv(&mut bufs, &mut meta)
                }
            };
            let count = match received {
                Ok(count) => count,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => {
                    // ICMP errors surface here; they concern one peer only.
                    debug!(%error, "TFTP listener receive error");
                    continue;
                }
            };
            for (meta, chunk) in meta.iter().zip(storage.chunks(slot)).take(count) {
                let stride = meta.stride.max(1);
                for datagram in chunk[..meta.len].chunks(stride) {
                    self.on_datagram(&listener, meta, datagram);
                }
            }
        }
        info!(listen = %listener.local_addr(), "TFTP listener stopped");
    }

    fn on_datagram(self: &Arc<Self>, listener: &Arc<Listener>, meta: &RecvMeta, datagram: &[u8]) {
        let (client, dst_ip) = (meta.addr, meta.dst_ip);
        let settings = self.settings.load();
        // Strangers get no answer at all: any answer would help a spoofed
        // reflection.
        if !settings.allow.allows(client.ip()) {
            return self.refuse(ClientRefusal::NotAllowed);
        }
        let request = match accept(datagram) {
            Accept::Start(request) => request,
            Accept::Refuse { reply, why } => {
                // An ERROR is an answer too: within the client's rate only.
                if !self.admission.within_rate(client.ip()) {
                    return self.refuse(ClientRefusal::RateLimited);
                }
                match why {
                    Refused::Malformed => {
                        self.metrics.malformed_packets.inc();
                    }
                    Refused::MailMode | Refused::WriteRequest => {
                        if why == Refused::WriteRequest {
                            debug!(%client, "write request refused");
                        }
                        self.metrics.request(Front::Tftp, RequestResult::Denied);
                    }
                }
                return listener.send_from(client, dst_ip, &reply);
            }
            Accept::Ignore { malformed } => {
                if malformed {
                    self.metrics.malformed_packets.inc();
                }
                return;
            }
        };
        // A repeated RRQ (same bytes, same port) while its client cannot be
        // done is a retransmission or a late duplicate: the transfer answers
        // it. Anything else is a new request (see `active`).
        let fingerprint = active::fingerprint(datagram);
        if self.active.is_retransmission(client, fingerprint) {
            return;
        }
        // Over its rate: silence (see `admission`: likely spoofed).
        if !self.admission.within_rate(client.ip()) {
            return self.refuse(ClientRefusal::RateLimited);
        }
        let busy = || Packet::error(ErrorCode::NotDefined, BUSY_MESSAGE);
        let cap = settings.max_transfers_per_client;
        let Some(claim) = self.admission.claim(client.ip(), cap) else {
            self.refuse(ClientRefusal::TooManyTransfers);
            self.metrics.request(Front::Tftp, RequestResult::Busy);
            return listener.send_from(client, dst_ip, &busy());
        };
        let tracked = self.active.insert(client, fingerprint);
        let local =
            socket::transfer_local_addr(dst_ip.unwrap_or(listener.local_addr().ip()), client);
        let start = transfer::Start {
            front: self.clone(),
            settings: self.settings.load_full(),
            // Weak: a listener removed by a reload closes its socket at
            // once, not when the last of its transfers ends.
            listener: Arc::downgrade(listener),
            client,
            tracked,
            local,
            request,
        };
        self.transfers.spawn(async move {
            let _claim = claim;
            transfer::run(start).await
        });
    }

    fn refuse(&self, reason: ClientRefusal) {
        self.metrics.client_refusal(Front::Tftp, reason);
    }
}
