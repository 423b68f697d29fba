//! The TFTP front: listeners that take requests and drivers that run the
//! transfers, each a [`crate::tftp::send::Transfer`] state machine.
//!
//! In the default per-transfer-port mode a listener's socket only takes
//! requests: it drains them in batches (`recvmmsg`), answers what needs no
//! transfer (a write request, a malformed one), and hands each read request
//! to one of a few transfer ports bound beside it (`dispatch.rs`), each
//! driven by one task (`driver.rs`) that runs many transfers at once. The
//! phone sees what RFC 1350 asks: its transfer's packets come from a port
//! other than 69, the one it must answer. With `tftp.single_port` a
//! listener is a group of sockets on its own address, one per core, each a
//! driver's port that takes requests too (`listener.rs`), for NAT, firewalls
//! and containers that let only the TFTP port through.
//!
//! The listener's receive buffer is enlarged so that a burst of thousands
//! of RRQs is queued rather than dropped (a dropped RRQ costs the phone its
//! retransmit time). Each request's destination address is read from
//! `IP_PKTINFO`, and replies leave from it, even on a multi-homed host
//! behind a wildcard listener.

mod admission;
mod client_key;
mod dispatch;
mod driver;
mod listener;
mod segment;
mod sendmmsg;
mod socket;
mod transfer;
mod unanswered;
mod unreachable;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use listener::Ports;

use super::slots::Slots;
use super::ListenerHandle;
use crate::config::{AllowList, TftpConfig};
use crate::metrics::{ClientRefusal, Front, Metrics, RequestResult};
use crate::resolve::ResolverHandle;
use crate::tftp::accept::Refused;
use crate::tftp::options::Limits;

pub(crate) use listener::Listener;

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
    /// The series every file served updates, looked up once.
    series: transfer::Series,
    /// `tftp.max_transfers`, for every listener and generation together:
    /// transfers sending, taken once a request has its file.
    slots: Slots,
    /// `tftp.max_resolving`: lookups waiting on the clusters.
    resolving: Slots,
    /// Per-client request rate and transfer cap.
    admission: Arc<admission::Admission>,
    /// The transfers running.
    transfers: TaskTracker,
    /// Transfers whose client has not answered yet, oldest first: a full
    /// `max_transfers` ends the oldest to make room.
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
            series: transfer::Series::new(&metrics),
            metrics,
            slots: Slots::new(config.max_transfers),
            resolving: Slots::new(config.max_resolving),
            admission: admission::Admission::new(config.client_request_rate),
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
    /// Transfers it started go on to their end.
    pub(crate) fn start(
        self: &Arc<Self>,
        configured: SocketAddr,
        listener: Listener,
    ) -> ListenerHandle {
        let bound = listener.local_addr();
        let stop = CancellationToken::new();
        match listener.ports {
            Ports::Single(ports) => {
                info!(listen = %bound, drivers = ports.len(), "TFTP listening (single port)");
                let drivers = TaskTracker::new();
                for port in &ports {
                    drivers.spawn(driver::serve(
                        self.clone(),
                        port.clone(),
                        None,
                        None,
                        stop.clone(),
                    ));
                }
                drivers.close();
                tokio::spawn(async move {
                    drivers.wait().await;
                    // Closed together, once every transfer has ended (see
                    // `listener`).
                    drop(ports);
                    info!(listen = %bound, "TFTP listener stopped");
                });
            }
            Ports::PerTransfer {
                requests,
                transfer_ports,
            } => {
                let lanes = transfer_ports
                    .into_iter()
                    .map(|port| {
                        let (hand, handed) = tokio::sync::mpsc::unbounded_channel();
                        let load = Arc::new(dispatch::Load::default());
                        tokio::spawn(driver::serve(
                            self.clone(),
                            port,
                            Some(handed),
                            Some(load.clone()),
                            stop.clone(),
                        ));
                        dispatch::Lane::new(hand, load)
                    })
                    .collect();
                tokio::spawn(dispatch::serve(self.clone(), requests, lanes, stop.clone()));
            }
        }
        ListenerHandle::new(configured, bound, stop)
    }

    /// Counts a request refused for what it is (see [`Refused`]).
    fn count_refused(&self, client: SocketAddr, why: Refused) {
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
    }

    fn refuse(&self, reason: ClientRefusal) {
        self.metrics.client_refusal(Front::Tftp, reason);
    }
}
