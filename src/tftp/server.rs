//! The TFTP server: listener sockets that take requests, and one task per
//! transfer on its own ephemeral socket that drives a [`Transfer`].
//!
//! A listener does as little as possible so that it keeps up with a boot
//! storm: it drains its socket in batches (`recvmmsg`), decodes, refuses what
//! must be refused, and hands each read request to a new task. The socket's
//! receive buffer is enlarged so that a burst of thousands of RRQs is queued
//! rather than dropped (a dropped RRQ costs the phone its retransmit time).
//! Each request's destination address is read from `IP_PKTINFO`, and the
//! transfer socket binds that address, so replies leave from the address the
//! phone asked, even on a multi-homed host behind a wildcard listener.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use quinn_udp::{RecvMeta, Transmit, UdpSocketState, BATCH_SIZE};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::body::Body;
use crate::config::TftpConfig;
use crate::metrics::{Front, Metrics, RequestResult, TransferLabels, TransferOutcome};
use crate::resolve::{Answer, Lookup, SharedResolver};
use crate::shutdown::Shutdown;
use crate::tftp::netascii;
use crate::tftp::options::{negotiate, Limits};
use crate::tftp::packet::{ErrorCode, Mode, Packet, PacketError, Request};
use crate::tftp::transfer::{Outcome, Transfer};

/// The message phones get when they must try again (Cisco's wording is
/// undocumented; this one says what to do).
pub const BUSY_MESSAGE: &str = "busy, retry later";

/// Receive buffer asked for on listener sockets.
const LISTENER_RECV_BUFFER: usize = 16 << 20;
/// Largest file sent in netascii mode (converted in memory).
pub const NETASCII_MAX: u64 = 1 << 20;
/// Largest datagram a transfer socket reads (ACKs are 4 bytes).
const TRANSFER_RECV_BUFFER: usize = 1024;

/// Settings of the TFTP engine, from `[tftp]`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub limits: Limits,
    pub max_retries: u32,
    pub max_transfers: usize,
    pub port_range: Option<RangeInclusive<u16>>,
}

impl Settings {
    pub fn from_config(config: &TftpConfig) -> Settings {
        Settings {
            limits: Limits {
                max_block_size: config.max_block_size,
                max_window_size: config.max_window_size,
                default_timeout: config.retransmit_timeout,
            },
            max_retries: config.max_retries,
            max_transfers: config.max_transfers,
            port_range: config.port_range.clone(),
        }
    }
}

/// What every listener and transfer task shares.
pub struct Context {
    pub settings: Settings,
    pub resolver: SharedResolver,
    pub metrics: Arc<Metrics>,
    /// One permit per running transfer (`max_transfers`).
    limiter: Arc<Semaphore>,
    /// Clients with a transfer running → a fingerprint of the request that
    /// started it, to ignore that request when the phone repeats it. Shared
    /// with the contexts that follow this one on reloads, so a phone's
    /// repeated request is recognised across a configuration change.
    active: Arc<Mutex<HashMap<SocketAddr, u64>>>,
}

/// The context listeners hand new requests to; a reload swaps it while the
/// listener sockets (and the requests queued on them) stay.
pub type SharedContext = Arc<ArcSwap<Context>>;

impl Context {
    pub fn new(
        settings: Settings,
        resolver: SharedResolver,
        metrics: Arc<Metrics>,
    ) -> Arc<Context> {
        Context::with_active(settings, resolver, metrics, Arc::default())
    }

    /// The context for new requests after a reload: new settings, the same
    /// table of running transfers. Transfers already running keep the
    /// context (and settings) they started with.
    pub fn successor(&self, settings: Settings) -> Arc<Context> {
        Context::with_active(
            settings,
            self.resolver.clone(),
            self.metrics.clone(),
            self.active.clone(),
        )
    }

    fn with_active(
        settings: Settings,
        resolver: SharedResolver,
        metrics: Arc<Metrics>,
        active: Arc<Mutex<HashMap<SocketAddr, u64>>>,
    ) -> Arc<Context> {
        let limiter = Arc::new(Semaphore::new(settings.max_transfers));
        Arc::new(Context {
            settings,
            resolver,
            metrics,
            limiter,
            active,
        })
    }

    /// Transfers running now.
    pub fn active_transfers(&self) -> usize {
        self.settings.max_transfers - self.limiter.available_permits()
    }

    /// Waits until every transfer has finished, or `grace` has passed;
    /// returns how many were still running.
    pub async fn drain(&self, grace: Duration) -> usize {
        let all = self.settings.max_transfers as u32;
        match tokio::time::timeout(grace, self.limiter.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => self.active_transfers(),
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, u64>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A bound listener socket.
pub struct Listener {
    socket: UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
}

impl Listener {
    /// Binds `addr` for requests.
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            // Lets "0.0.0.0:69" and "[::]:69" be listed side by side.
            socket.set_only_v6(true)?;
        }
        enlarge_receive_buffer(&socket, LISTENER_RECV_BUFFER);
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket.into())?;
        let state = UdpSocketState::new((&socket).into())?;
        let local = socket.local_addr()?;
        Ok(Listener {
            socket,
            state,
            local,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends one datagram from `src_ip` (the address the request came to).
    fn send_from(&self, to: SocketAddr, src_ip: Option<IpAddr>, datagram: &[u8]) {
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents: datagram,
            segment_size: None,
            src_ip,
        };
        if let Err(error) = self.socket.try_io(Interest::WRITABLE, || {
            self.state.send((&self.socket).into(), &transmit)
        }) {
            debug!(%to, %error, "reply from listener not sent");
        }
    }
}

/// Asks the kernel for a large receive queue. `SO_RCVBUFFORCE` passes the
/// `net.core.rmem_max` ceiling when we have CAP_NET_ADMIN; otherwise the
/// plain option gets as much as the ceiling allows.
fn enlarge_receive_buffer(socket: &socket2::Socket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let value = bytes as libc::c_int;
    // SAFETY: a valid descriptor and a c_int option value of the right size.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced != 0 {
        let _ = socket.set_recv_buffer_size(bytes);
    }
    // Linux reports twice the size set (it counts its bookkeeping).
    let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
    if granted < bytes {
        warn!(
            granted,
            wanted = bytes,
            "TFTP listener receive buffer is small: a boot storm's requests may be dropped; \
             raise net.core.rmem_max (e.g. sysctl -w net.core.rmem_max={bytes}, or the shipped \
             60-tftproxy.conf)"
        );
    }
}

/// Runs one listener until shutdown, handing requests to whichever context
/// `contexts` holds when they arrive.
pub async fn serve(listener: Listener, contexts: SharedContext, mut shutdown: Shutdown) {
    let listener = Arc::new(listener);
    let gro = listener.state.gro_segments().max(1);
    let slot = 2048 * gro;
    let mut storage = vec![0u8; slot * BATCH_SIZE];
    let mut meta = [RecvMeta::default(); BATCH_SIZE];
    info!(listen = %listener.local, "TFTP listening");
    loop {
        let received = tokio::select! {
            _ = shutdown.recv() => break,
            ready = listener.socket.readable() => {
                if let Err(error) = ready {
                    warn!(%error, "TFTP listener failed");
                    break;
                }
                let mut bufs: Vec<IoSliceMut<'_>> = storage.chunks_mut(slot).map(IoSliceMut::new).collect();
                listener.socket.try_io(Interest::READABLE, || {
                    listener.state.recv((&listener.socket).into(), &mut bufs, &mut meta)
                })
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
        let context = contexts.load_full();
        for (meta, chunk) in meta.iter().zip(storage.chunks(slot)).take(count) {
            let stride = meta.stride.max(1);
            for datagram in chunk[..meta.len].chunks(stride) {
                on_datagram(&listener, &context, meta, datagram);
            }
        }
    }
    info!(listen = %listener.local, "TFTP listener stopped");
}

fn on_datagram(listener: &Arc<Listener>, context: &Arc<Context>, meta: &RecvMeta, datagram: &[u8]) {
    let (client, dst_ip) = (meta.addr, meta.dst_ip);
    let reply = |code: ErrorCode, message: &str| {
        listener.send_from(client, dst_ip, &Packet::error(code, message))
    };
    match Packet::decode(datagram) {
        Ok(Packet::Rrq(request)) => {
            if request.mode == Mode::Mail {
                context.metrics.request(Front::Tftp, RequestResult::Denied);
                return reply(ErrorCode::IllegalOperation, "mail mode is not supported");
            }
            // A repeated RRQ (same bytes, same port) while its transfer runs
            // is the phone's retransmission: the transfer already answers it.
            // A different request from the same port is the phone's next
            // file, sent after it acknowledged the last block of this one.
            let fingerprint = fingerprint(datagram);
            if context.active().get(&client) == Some(&fingerprint) {
                return;
            }
            let Ok(permit) = context.limiter.clone().try_acquire_owned() else {
                context.metrics.busy_rejections.inc();
                context.metrics.request(Front::Tftp, RequestResult::Busy);
                return reply(ErrorCode::NotDefined, BUSY_MESSAGE);
            };
            context.active().insert(client, fingerprint);
            let local = transfer_local_addr(dst_ip.unwrap_or(listener.local.ip()), client);
            tokio::spawn(run_transfer(
                context.clone(),
                Arc::downgrade(listener),
                permit,
                client,
                fingerprint,
                local,
                request,
            ));
        }
        Ok(Packet::Wrq(request)) => {
            debug!(%client, name = %request.filename, "write request refused");
            context.metrics.request(Front::Tftp, RequestResult::Denied);
            reply(
                ErrorCode::AccessViolation,
                "read-only server: write requests are not accepted",
            );
        }
        Ok(_) => {
            // DATA/ACK/ERROR/OACK on the request port: a stray from an old
            // transfer. Answering strays could feed a loop.
        }
        Err(error) => {
            context.metrics.malformed_packets.inc();
            if matches!(datagram.get(..2), Some([0, 1]) | Some([0, 2])) {
                reply(ErrorCode::IllegalOperation, &malformed_message(&error));
            }
        }
    }
}

fn fingerprint(datagram: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    datagram.hash(&mut hasher);
    hasher.finish()
}

fn malformed_message(error: &PacketError) -> String {
    format!("malformed request: {error}")
}

/// Removes a client from the active set and updates the gauge when the
/// transfer task ends, however it ends.
struct ActiveGuard {
    context: Arc<Context>,
    client: SocketAddr,
    fingerprint: u64,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut active = self.context.active();
        // The phone may already have started its next request from the
        // same port; that entry is not ours to remove.
        if active.get(&self.client) == Some(&self.fingerprint) {
            active.remove(&self.client);
        }
        drop(active);
        self.context.metrics.active_transfers.dec();
    }
}

async fn run_transfer(
    context: Arc<Context>,
    // Weak: a listener removed by a reload closes its socket at once, not
    // when the last of its transfers ends.
    listener: Weak<Listener>,
    permit: OwnedSemaphorePermit,
    client: SocketAddr,
    fingerprint: u64,
    local: SocketAddr,
    request: Request,
) {
    context.metrics.active_transfers.inc();
    let _guard = ActiveGuard {
        context: context.clone(),
        client,
        fingerprint,
        _permit: permit,
    };
    let started = Instant::now();
    let socket =
        match bind_transfer_socket(local, context.settings.port_range.as_ref(), client).await {
            Ok(socket) => socket,
            Err(error) => {
                warn!(%client, %error, "no socket for a transfer");
                context.metrics.request(Front::Tftp, RequestResult::Busy);
                if let Some(listener) = listener.upgrade() {
                    listener.send_from(
                        client,
                        Some(local.ip()),
                        &Packet::error(ErrorCode::NotDefined, BUSY_MESSAGE),
                    );
                }
                return;
            }
        };
    let lookup = Lookup {
        name: &request.filename,
        client: client.ip(),
        front: Front::Tftp,
        from_proxy: false,
    };
    let resolver = context.resolver.load_full();
    let answer = resolver.resolve(&lookup).await;
    let name = &request.filename;
    let (body, source) = match answer {
        Answer::File { body, source } => (body, source),
        refusal => {
            let (code, message, result) = match &refusal {
                Answer::NotFound => (
                    ErrorCode::FileNotFound,
                    "File not found".to_owned(),
                    RequestResult::NotFound,
                ),
                Answer::RetryLater => (
                    ErrorCode::NotDefined,
                    BUSY_MESSAGE.to_owned(),
                    RequestResult::Busy,
                ),
                Answer::Denied(reason) => (
                    ErrorCode::AccessViolation,
                    format!("access denied: {reason}"),
                    RequestResult::Denied,
                ),
                Answer::File { .. } => unreachable!("handled above"),
            };
            context.metrics.request(Front::Tftp, result);
            info!(%client, name, result = ?result, ms = started.elapsed().as_millis() as u64, "{message}");
            let _ = socket.send(&Packet::error(code, &message)).await;
            return;
        }
    };
    if request.mode == Mode::Netascii && body.len() > NETASCII_MAX {
        // netascii is converted in memory; text files are small, and a
        // firmware image asked for in netascii is a mistake, not a reason
        // to hold its size in memory per request.
        info!(%client, name, bytes = body.len(), "netascii refused for a large file");
        context.metrics.request(Front::Tftp, RequestResult::Denied);
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
            Ok(bytes) => Body::Memory(netascii::encode(&bytes).into()),
            Err(error) => return fail_read(&context, &socket, client, name, &error).await,
        },
        _ => body,
    };
    let negotiated = negotiate(&request.options, &context.settings.limits, body.len());
    let transfer = match Transfer::start(
        body,
        &negotiated,
        context.settings.max_retries,
        Instant::now(),
    ) {
        Ok(transfer) => transfer,
        Err(error) => return fail_read(&context, &socket, client, name, &error).await,
    };
    let (outcome, stats, size) = drive(transfer, &socket).await;
    let metrics = &context.metrics;
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
                .get_or_create(&crate::metrics::FrontLabels { front: Front::Tftp })
                .inc_by(size);
            info!(%client, name, %source, bytes = size, ms, "served");
        }
        other => {
            metrics.request(Front::Tftp, RequestResult::Error);
            info!(%client, name, %source, bytes = size, ms, outcome = ?other, "transfer not completed");
        }
    }
}

async fn fail_read(
    context: &Context,
    socket: &UdpSocket,
    client: SocketAddr,
    name: &str,
    error: &io::Error,
) {
    warn!(%client, name, %error, "cannot read file");
    context.metrics.request(Front::Tftp, RequestResult::Error);
    let _ = socket
        .send(&Packet::error(ErrorCode::NotDefined, "cannot read file"))
        .await;
}

/// Puts a transfer on a socket until it ends.
async fn drive(
    mut transfer: Transfer,
    socket: &UdpSocket,
) -> (Outcome, crate::tftp::transfer::Stats, u64) {
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
            break Outcome::ClientError {
                code: 0,
                message: "client port unreachable".into(),
            };
        }
        if timer.is_elapsed() || deadline < timer.deadline().into_std() {
            timer.as_mut().reset(deadline.into());
        }
        tokio::select! {
            received = socket.recv(&mut buf) => match received {
                Ok(n) => transfer.handle_datagram(&buf[..n], Instant::now()),
                Err(error) if is_peer_gone(&error) => {
                    break Outcome::ClientError { code: 0, message: "client port unreachable".into() };
                }
                Err(_) => {}
            },
            _ = &mut timer => transfer.handle_timeout(Instant::now()),
        }
    };
    (outcome, transfer.stats(), transfer.size())
}

fn is_peer_gone(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::ConnectionRefused
}

/// The address a transfer socket binds (port 0: any): the one the request
/// came to. An IPv6 link-local address names an address only together with
/// its interface, so it takes the phone's scope (the kernel reports the
/// interface a link-local sender's datagram arrived on as its scope id).
fn transfer_local_addr(ip: IpAddr, client: SocketAddr) -> SocketAddr {
    match (ip, client) {
        (IpAddr::V6(ip), SocketAddr::V6(client)) if ip.is_unicast_link_local() => {
            SocketAddr::V6(std::net::SocketAddrV6::new(ip, 0, 0, client.scope_id()))
        }
        _ => SocketAddr::new(ip, 0),
    }
}

/// Binds the socket of one transfer on the address the request came to,
/// inside `port_range` when one is set, and connects it to the client so the
/// kernel filters out every other sender.
async fn bind_transfer_socket(
    local: SocketAddr,
    port_range: Option<&RangeInclusive<u16>>,
    client: SocketAddr,
) -> io::Result<UdpSocket> {
    let socket = match port_range {
        None => UdpSocket::bind(local).await?,
        Some(range) => {
            let span = u32::from(range.end() - range.start()) + 1;
            // Start at a pseudo-random port so concurrent transfers do not
            // all probe the same ports in order.
            let start =
                (client.port() as u32 ^ std::process::id()).wrapping_mul(2_654_435_761) % span;
            let mut bound = None;
            for i in 0..span {
                let port = range.start() + ((start + i) % span) as u16;
                let mut local = local;
                local.set_port(port);
                if let Ok(socket) = UdpSocket::bind(local).await {
                    bound = Some(socket);
                    break;
                }
            }
            bound.ok_or_else(|| {
                io::Error::new(io::ErrorKind::AddrInUse, "tftp.port_range is exhausted")
            })?
        }
    };
    socket.connect(client).await?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_local_request_is_answered_on_the_phone_s_interface() {
        let phone: SocketAddr = "[fe80::1234%7]:50000".parse().unwrap();
        let local = transfer_local_addr("fe80::1".parse().unwrap(), phone);
        assert_eq!(local, "[fe80::1%7]:0".parse().unwrap());
    }

    #[test]
    fn routable_addresses_need_no_scope() {
        let phone: SocketAddr = "[2001:db8::5]:50000".parse().unwrap();
        let local = transfer_local_addr("2001:db8::1".parse().unwrap(), phone);
        assert_eq!(local, "[2001:db8::1]:0".parse().unwrap());
        let phone: SocketAddr = "192.0.2.5:50000".parse().unwrap();
        let local = transfer_local_addr("192.0.2.1".parse().unwrap(), phone);
        assert_eq!(local, "192.0.2.1:0".parse().unwrap());
    }
}
