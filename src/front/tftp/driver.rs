//! A driver: one task that runs every transfer of one [`Port`], told apart by
//! the client's address and port (quinn's endpoint design). In single-port mode
//! (`tftp.single_port`) the port is one of the listener's group of sockets on
//! its own address, and requests arrive on it too (the kernel sends each phone
//! port's packets to one socket of the group: see `super::listener`); otherwise
//! a listener has a few transfer ports beside it, one driver each, and hands
//! each request to one of them (see `super::dispatch`).
//!
//! The driver drains its socket in `recvmmsg` batches, feeds each datagram to
//! its client's [`Transfer`] (the sans-I/O state machine), fires due time-outs
//! from one heap of deadlines, and sends what every transfer queued in
//! `sendmmsg` batches. One task rather than a task per transfer fed through
//! channels: a datagram reaches its state machine without a channel hop or a
//! task wake-up, timers cost a heap entry instead of a tokio timer each, and
//! the replies of a whole receive batch leave in a few system calls. Resolution
//! can wait on clusters for seconds: a request whose answer is not ready at
//! once (a local file, a fresh cached copy are) is resolved in its own task and
//! comes back through a channel; the socket loop never waits for it.
//!
//! When the listener is stopped (reload, shutdown) the driver takes no new
//! request but drives the transfers it has to their end, then closes its
//! socket.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use quinn_udp::RecvMeta;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::{debug, warn};

use super::admission::ClientClaim;
use super::client_key::ClientKey;
use super::dispatch::Load;
use super::socket::{Outgoing, Port, RecvBatch};
use super::transfer::{self, prepare, record, Ended, Sending, PORT_UNREACHABLE};
use super::unanswered::{Ending, Place};
use super::{TftpFront, BUSY_MESSAGE};
use crate::body::Body;
use crate::logging::batched;
use crate::metrics::{ClientRefusal, Front, RequestResult};
use crate::resolve::Source;
use crate::tftp::accept::{accept, stray, Accept};
use crate::tftp::packet::{ErrorCode, Packet, Request};
use crate::tftp::send::{Outcome, Transfer};

/// A request the listener hands to the driver of a transfer port.
pub(super) struct Handed {
    pub(super) client: SocketAddr,
    /// The address the request came to: replies leave from it.
    pub(super) dst_ip: Option<IpAddr>,
    pub(super) fingerprint: u64,
    pub(super) request: Request,
}

/// Tells a repeated request from another one of the same client port.
pub(super) fn fingerprint(datagram: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    datagram.hash(&mut hasher);
    hasher.finish()
}

/// Why the driver ends a transfer that is not over by itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Over by itself, or out of retransmissions.
    None,
    /// The client sent a new request from the same port.
    Replaced,
    /// The client's port is closed (ICMP port unreachable).
    Unreachable,
}

/// What a resolution task hands back to the driver.
struct Prepared {
    id: u64,
    client: SocketAddr,
    result: Result<transfer::Prepared, Vec<u8>>,
}

/// What a request holds from its RRQ to its end: its place in the front's
/// tracker (shutdown waits for it, resolving or sending) and one of its
/// client's `tftp.max_transfers_per_client`.
struct Hold {
    _claim: ClientClaim,
    _token: TaskTrackerToken,
}

/// What the transfers' events leave for the driver's loop. Kept apart from
/// the table so that an event borrows its slot and these together: one
/// lookup per datagram, where a method on the whole driver took three.
#[derive(Default)]
struct Queued {
    /// Datagrams to send at the next flush.
    outgoing: Vec<Outgoing>,
    /// Deadlines, earliest first. Entries are not removed when a deadline
    /// moves: an entry that is not its slot's `scheduled` is skipped.
    timers: BinaryHeap<Reverse<(Instant, u64, SocketAddr)>>,
    /// Buffers of sent datagrams, lent to the transfers to build their next
    /// blocks in: under a boot storm, one allocation less per packet.
    spare: Vec<Vec<u8>>,
}

/// Buffers [`Queued`] keeps for reuse (a 1,468-byte block each at most).
const SPARE_BUFFERS: usize = 256;

/// One client's transfer.
struct Slot {
    /// Tells this transfer from an earlier one of the same client (stale
    /// timers, late resolutions).
    id: u64,
    fingerprint: u64,
    /// The address the request came to: replies leave from it.
    src_ip: Option<IpAddr>,
    name: String,
    started: Instant,
    /// `None` while the request is being resolved.
    running: Option<(Transfer<Body>, Source)>,
    /// The time of this transfer's live entry in the timer heap.
    scheduled: Option<Instant>,
    /// Its `tftp.max_transfers` permit, once resolved to a file.
    _sending: Option<Sending>,
    /// Its place among the transfers that may be ended to make room, until
    /// the client answers (see `super::unanswered`).
    unanswered: Option<Place>,
    _hold: Hold,
}

struct Driver {
    front: Arc<TftpFront>,
    port: Arc<Port>,
    /// Single-port mode: requests arrive on `port` itself.
    takes_requests: bool,
    /// Looked up for every datagram: foldhash, randomly seeded, rather than
    /// SipHash (its lookups were 3 % of the CPU in a boot storm), on a key
    /// hashed as one word (see `super::client_key`).
    table: HashMap<ClientKey, Slot, foldhash::fast::RandomState>,
    queued: Queued,
    next_id: u64,
    ready: mpsc::UnboundedSender<Prepared>,
    /// Where `super::unanswered` asks for a transfer to be ended for room.
    make_room: mpsc::UnboundedSender<(SocketAddr, u64)>,
    stopping: bool,
}

/// Drives the transfers of `port` until `stop` and the end of the last
/// one. Requests arrive on the port itself (single-port mode) or, with
/// `handed`, from the listener, to which it reports its `load`.
pub(super) async fn serve(
    front: Arc<TftpFront>,
    port: Arc<Port>,
    mut handed: Option<mpsc::UnboundedReceiver<Handed>>,
    load: Option<Arc<Load>>,
    stop: CancellationToken,
) {
    let mut batch = RecvBatch::new(&port);
    let (ready, mut prepared) = mpsc::unbounded_channel();
    let (make_room, mut to_end) = mpsc::unbounded_channel();
    let mut driver = Driver {
        front,
        port: port.clone(),
        takes_requests: handed.is_none(),
        table: HashMap::default(),
        queued: Queued::default(),
        next_id: 0,
        ready,
        make_room,
        stopping: false,
    };
    debug!(local = %port.local_addr(), "TFTP driver ready");
    let mut gone = Vec::new();
    // One wait for ICMP errors, kept across turns of the loop: a new one
    // each turn would register and remove a waiter every time.
    let errored = port.errored();
    tokio::pin!(errored);
    // One timer, moved only when the earliest deadline changes.
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
    let timer = tokio::time::sleep_until(far());
    tokio::pin!(timer);
    // Requests taken from the listener, for `load`.
    let mut taken = 0;
    loop {
        if let Some(load) = &load {
            load.report(driver.table.len(), taken);
        }
        driver.flush().await;
        if driver.stopping && driver.table.is_empty() {
            break;
        }
        let next = driver.queued.timers.peek().map(|Reverse((at, _, _))| *at);
        if let Some(next) = next {
            if timer.deadline() != next.into() {
                timer.as_mut().reset(next.into());
            }
        }
        tokio::select! {
            _ = stop.cancelled(), if !driver.stopping => {
                driver.stopping = true;
                handed = None;
            }
            ready = port.readable() => {
                if let Err(error) = ready {
                    warn!(%error, local = %port.local_addr(), "TFTP socket failed");
                    break;
                }
                if batch.receive(&port) {
                    let now = Instant::now();
                    batched(|| {
                        for (meta, datagram) in batch.datagrams() {
                            driver.on_datagram(meta, datagram, now);
                        }
                    });
                }
            }
            Some(first) = next_handed(&mut handed) => {
                batched(|| {
                    driver.on_handed(first);
                    taken += 1;
                    // Take what else is queued now: one wake-up per burst.
                    while let Some(more) = handed.as_mut().and_then(|h| h.try_recv().ok()) {
                        driver.on_handed(more);
                        taken += 1;
                    }
                });
            }
            result = &mut errored => {
                errored.set(port.errored());
                if result.is_ok() {
                    port.unreachable_clients(&mut gone);
                    batched(|| {
                        for client in gone.drain(..) {
                            driver.end(client, Cut::Unreachable);
                        }
                    });
                }
            }
            Some(prepared) = prepared.recv() => driver.on_prepared(prepared),
            Some((client, id)) = to_end.recv() => driver.end_for_room(client, id),
            _ = &mut timer, if next.is_some() => {
                timer.as_mut().reset(far());
                batched(|| driver.on_timers(Instant::now()));
            }
        }
    }
    debug!(local = %port.local_addr(), "TFTP driver done");
}

/// The next request handed over; never, for a driver that takes its own.
async fn next_handed(handed: &mut Option<mpsc::UnboundedReceiver<Handed>>) -> Option<Handed> {
    let Some(receiver) = handed else {
        return std::future::pending().await;
    };
    let next = receiver.recv().await;
    if next.is_none() {
        // The listener is gone: stop asking.
        *handed = None;
    }
    next
}

impl Driver {
    fn on_datagram(&mut self, meta: &RecvMeta, datagram: &[u8], now: Instant) {
        let client = meta.addr;
        // Strangers get no answer at all: any answer would help a spoofed
        // reflection.
        if !self.front.settings.load().allow.allows(client.ip()) {
            return self.front.refuse(ClientRefusal::NotAllowed);
        }
        let dst_ip = meta.dst_ip;
        let opcode = datagram.get(..2);
        if let Some(slot) = self.table.get_mut(&ClientKey(client)) {
            match opcode {
                Some([0, 1]) if self.takes_requests => {
                    if !self.is_new_request(client, fingerprint(datagram), now) {
                        return;
                    }
                }
                // A write request is refused below; the transfer goes on.
                Some([0, 2]) if self.takes_requests => {}
                _ => {
                    if let Some((transfer, _)) = &mut slot.running {
                        self.queued.lend(transfer);
                        transfer.handle_datagram(datagram, now);
                        if self.queued.collect(client, slot) {
                            self.end(client, Cut::None);
                        }
                    }
                    return;
                }
            }
        }
        if !self.takes_requests {
            // A stranger on a transfer port (requests go to the listener):
            // only a DATA is answered, with RFC 1350's "unknown transfer ID".
            if let Some(reply) = stray(datagram) {
                self.queue(client, dst_ip, reply);
            }
            return;
        }
        match accept(datagram) {
            Accept::Start(request) => self.start(client, dst_ip, fingerprint(datagram), request),
            Accept::Refuse { reply, why } => {
                // An ERROR is an answer too: within the client's rate only.
                if !self.front.admission.within_rate(client.ip()) {
                    return self.front.refuse(ClientRefusal::RateLimited);
                }
                self.front.count_refused(client, why);
                self.queue(client, dst_ip, reply);
            }
            Accept::Ignore { malformed } => {
                if malformed {
                    self.front.metrics.malformed_packets.inc();
                }
                if let Some(reply) = stray(datagram) {
                    self.queue(client, dst_ip, reply);
                }
            }
        }
    }

    /// A request the listener handed over (per-port mode).
    fn on_handed(&mut self, handed: Handed) {
        let Handed {
            client,
            dst_ip,
            fingerprint,
            request,
        } = handed;
        if self.is_new_request(client, fingerprint, Instant::now()) {
            self.start(client, dst_ip, fingerprint, request);
        }
    }

    /// Whether a request from `client` is a new one (which replaces its
    /// transfer, if it has one) rather than a repetition of the one its
    /// transfer answers. The same request while the client cannot be done
    /// is a retransmission or a late duplicate; once it may be done (it
    /// answered, the last block has gone out), the same bytes from that
    /// port are a new request: a port the kernel handed out again, to the
    /// same phone or to another one asking for the same file. Tying the
    /// rule to the transfer's state, not to its teardown, is what keeps
    /// such a request from waiting a retransmit time.
    fn is_new_request(&mut self, client: SocketAddr, fingerprint: u64, now: Instant) -> bool {
        let Some(slot) = self.table.get_mut(&ClientKey(client)) else {
            return true;
        };
        let done = slot.running.as_ref().is_some_and(|(t, _)| t.may_be_done());
        if slot.fingerprint == fingerprint && !done {
            if let Some((transfer, _)) = &mut slot.running {
                transfer.handle_repeated_request(now);
                self.after_event(client);
            }
            return false;
        }
        self.end(client, Cut::Replaced);
        true
    }

    /// Takes a new request: its place in the table now, the resolution in
    /// its own task (`prepare` takes the permits).
    fn start(
        &mut self,
        client: SocketAddr,
        dst_ip: Option<IpAddr>,
        fingerprint: u64,
        request: Request,
    ) {
        if self.stopping {
            return;
        }
        let front = &self.front;
        // Over its rate: silence (see `super::admission`: likely spoofed).
        if !front.admission.within_rate(client.ip()) {
            return front.refuse(ClientRefusal::RateLimited);
        }
        let busy = || Packet::error(ErrorCode::NotDefined, BUSY_MESSAGE);
        let cap = front.settings.load().max_transfers_per_client;
        let Some(claim) = front.admission.claim(client.ip(), cap) else {
            front.refuse(ClientRefusal::TooManyTransfers);
            front.metrics.request(Front::Tftp, RequestResult::Busy);
            return self.queue(client, dst_ip, busy());
        };
        let hold = Hold {
            _claim: claim,
            _token: front.transfers.token(),
        };
        let id = self.next_id;
        self.next_id += 1;
        let started = Instant::now();
        let slot = Slot {
            id,
            fingerprint,
            src_ip: dst_ip,
            name: request.filename.clone(),
            started,
            running: None,
            scheduled: None,
            _sending: None,
            unanswered: None,
            _hold: hold,
        };
        self.table.insert(ClientKey(client), slot);
        let front = front.clone();
        let mut preparing = Box::pin(async move {
            let settings = front.settings.load_full();
            prepare(&front, &settings, client, request, started).await
        });
        // A local file or a fresh cached copy is ready at the first poll:
        // taken here, it costs no task and no wake-up of this one. Only a
        // request that waits (on the clusters, for a slot) gets a task; its
        // first poll's waker is replaced when the task polls it again.
        let mut first_poll = Context::from_waker(Waker::noop());
        if let Poll::Ready(result) = preparing.as_mut().poll(&mut first_poll) {
            return self.on_prepared(Prepared { id, client, result });
        }
        let ready = self.ready.clone();
        tokio::spawn(async move {
            let result = preparing.await;
            // The driver is gone only once stopped with nothing to drive.
            let _ = ready.send(Prepared { id, client, result });
        });
    }

    fn on_prepared(&mut self, prepared: Prepared) {
        let Prepared { id, client, result } = prepared;
        // The client may have moved on to another request meanwhile.
        let Some(slot) = self
            .table
            .get_mut(&ClientKey(client))
            .filter(|slot| slot.id == id)
        else {
            return;
        };
        match result {
            Ok((transfer, source, sending)) => {
                if !transfer.answered() {
                    let ending = Ending {
                        driver: self.make_room.clone(),
                        client,
                        id,
                    };
                    slot.unanswered = Some(self.front.unanswered.enter(ending));
                }
                slot.running = Some((transfer, source));
                slot._sending = Some(sending);
                self.after_event(client);
            }
            Err(reply) => {
                let src_ip = slot.src_ip;
                self.table.remove(&ClientKey(client));
                self.queue(client, src_ip, reply);
            }
        }
    }

    /// Fires every due time-out.
    fn on_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, id, client))) = self.queued.timers.peek() {
            if at > now {
                break;
            }
            self.queued.timers.pop();
            let Some(slot) = self.table.get_mut(&ClientKey(client)) else {
                continue;
            };
            if slot.id != id || slot.scheduled != Some(at) {
                continue;
            }
            slot.scheduled = None;
            if let Some((transfer, _)) = &mut slot.running {
                // Before the real deadline (it moved on) this only lets
                // `collect` schedule it again.
                transfer.handle_timeout(now);
                if self.queued.collect(client, slot) {
                    self.end(client, Cut::None);
                }
            }
        }
    }

    /// Collects what `client`'s transfer has to send, ends it if it is
    /// over, or schedules its next deadline.
    fn after_event(&mut self, client: SocketAddr) {
        let Some(slot) = self.table.get_mut(&ClientKey(client)) else {
            return;
        };
        if self.queued.collect(client, slot) {
            self.end(client, Cut::None);
        }
    }

    /// Ends `client`'s transfer `id` to make room for a new request, if its
    /// client still has not answered (see `super::unanswered`).
    fn end_for_room(&mut self, client: SocketAddr, id: u64) {
        let unanswered = self.table.get(&ClientKey(client)).is_some_and(|slot| {
            slot.id == id && slot.running.as_ref().is_some_and(|(t, _)| !t.answered())
        });
        if unanswered {
            debug!(%client, "never answered: ended to make room for a new request");
            self.end(client, Cut::None);
        }
    }

    /// Removes `client`'s transfer, counting and logging how it ended.
    fn end(&mut self, client: SocketAddr, cut: Cut) {
        let Some(slot) = self.table.remove(&ClientKey(client)) else {
            return;
        };
        let Some((transfer, source)) = slot.running else {
            // Still resolving: its answer will find no slot.
            return;
        };
        let cut_short = |message: &str| Outcome::ClientError {
            code: 0,
            message: message.into(),
        };
        let outcome = match (transfer.outcome(), cut) {
            (Some(outcome), _) => outcome.clone(),
            (None, Cut::Replaced) => cut_short("a new request from the same port"),
            (None, Cut::Unreachable) => cut_short(PORT_UNREACHABLE),
            (None, Cut::None) => Outcome::TimedOut,
        };
        let ended = Ended {
            client,
            local: Some(self.port.local_addr()),
            name: &slot.name,
            source: &source,
            started: slot.started,
        };
        record(&self.front, &ended, outcome, &transfer);
    }

    fn queue(&mut self, to: SocketAddr, src_ip: Option<IpAddr>, datagram: Vec<u8>) {
        self.queued.outgoing.push(Outgoing {
            to,
            src_ip,
            datagram,
        });
    }

    /// Sends everything queued, and keeps the buffers for the next blocks.
    async fn flush(&mut self) {
        let queued = &mut self.queued;
        if queued.outgoing.is_empty() {
            return;
        }
        self.port.send_batch(&queued.outgoing).await;
        let room = SPARE_BUFFERS.saturating_sub(queued.spare.len());
        let sent = queued.outgoing.drain(..).map(|out| out.datagram);
        queued.spare.extend(sent.take(room));
    }
}

impl Queued {
    /// Lends `transfer` buffers for the blocks an ACK makes it build: the last
    /// ones sent are still in the CPU's cache (lent after the previous event,
    /// they were cold: two cache misses a block). A resend allocates its own.
    fn lend(&mut self, transfer: &mut Transfer<Body>) {
        while transfer.wants_buffer() {
            let Some(buffer) = self.spare.pop() else {
                break;
            };
            transfer.recycle(buffer);
        }
    }

    /// Collects what `client`'s transfer has to send and schedules its next
    /// deadline. `true` once it is over.
    fn collect(&mut self, client: SocketAddr, slot: &mut Slot) -> bool {
        let Some((transfer, _)) = &mut slot.running else {
            return false;
        };
        if transfer.answered() {
            slot.unanswered = None;
        }
        while let Some(datagram) = transfer.poll_transmit() {
            self.outgoing.push(Outgoing {
                to: client,
                src_ip: slot.src_ip,
                datagram,
            });
        }
        let Some(deadline) = transfer.deadline() else {
            return true;
        };
        if slot.scheduled.is_none_or(|at| deadline < at) {
            slot.scheduled = Some(deadline);
            self.timers.push(Reverse((deadline, slot.id, client)));
        }
        false
    }
}
