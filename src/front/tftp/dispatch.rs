//! The listener of the per-transfer-port mode: it takes requests on the
//! TFTP port and hands each read request to the driver of one of its
//! transfer ports (see `super::driver`), which runs the transfer.
//!
//! A request repeated (the same bytes from the same client port) goes to
//! the driver its first copy went to: that driver alone tells a
//! retransmission from a new request with the same bytes (see
//! `Driver::is_new_request`), with no table shared between drivers. A
//! different request from the port of a recent one goes to another driver,
//! so that the new transfer has a port of its own as RFC 1350 asks: a late
//! ACK of the old transfer cannot be taken for one of the new. A request
//! from a client port not seen recently goes to the driver with the fewest
//! transfers (each driver reports its count every turn of its loop, see
//! [`Load`]): a hash would split ten phones fetching firmware 7 to 3 as
//! often as not, and the core with seven would finish last. What needs no
//! transfer is answered here, from the TFTP port: a write request, a
//! request in mail mode, a malformed one.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::client_key::ClientKey;
use super::driver::{fingerprint, Handed};
use super::socket::{Port, RecvBatch};
use super::TftpFront;
use crate::metrics::ClientRefusal;
use crate::tftp::accept::{accept, Accept};

/// How busy a driver is, as it reports it to the listener.
#[derive(Debug, Default)]
pub(super) struct Load {
    /// Transfers in the driver's table at its last turn.
    running: AtomicUsize,
    /// Requests it had taken from the listener by then.
    taken: AtomicUsize,
}

impl Load {
    /// Called by the driver once per turn of its loop.
    pub(super) fn report(&self, running: usize, taken: usize) {
        self.running.store(running, Ordering::Relaxed);
        self.taken.store(taken, Ordering::Relaxed);
    }
}

/// The listener's side of one driver.
pub(super) struct Lane {
    hand: UnboundedSender<Handed>,
    load: Arc<Load>,
    /// Requests handed to it so far.
    handed: usize,
}

impl Lane {
    pub(super) fn new(hand: UnboundedSender<Handed>, load: Arc<Load>) -> Lane {
        Lane {
            hand,
            load,
            handed: 0,
        }
    }

    /// Its transfers, counting the requests handed that it has not taken
    /// yet (a burst is spread before any driver has run).
    fn transfers(&self) -> usize {
        let taken = self.load.taken.load(Ordering::Relaxed);
        self.load.running.load(Ordering::Relaxed) + self.handed.saturating_sub(taken)
    }
}

/// Takes requests on `requests` for the drivers of `lanes` until `stop`.
pub(super) async fn serve(
    front: Arc<TftpFront>,
    requests: Arc<Port>,
    mut lanes: Vec<Lane>,
    stop: CancellationToken,
) {
    let mut recent = Recent::default();
    let mut loads = Vec::with_capacity(lanes.len());
    let mut batch = RecvBatch::new(&requests);
    info!(listen = %requests.local_addr(), "TFTP listening");
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            ready = requests.readable() => {
                if let Err(error) = ready {
                    warn!(%error, "TFTP listener failed");
                    break;
                }
                if !batch.receive(&requests) {
                    continue;
                }
                for (meta, datagram) in batch.datagrams() {
                    let Some(handed) = take(&front, &requests, meta, datagram) else {
                        continue;
                    };
                    loads.clear();
                    loads.extend(lanes.iter().map(Lane::transfers));
                    let driver = recent.pick(handed.client, handed.fingerprint, &loads);
                    let lane = &mut lanes[driver];
                    lane.handed += 1;
                    // A driver outlives the listener: it stops on the same
                    // token, after it.
                    let _ = lane.hand.send(handed);
                }
            }
        }
    }
    info!(listen = %requests.local_addr(), "TFTP listener stopped");
}

/// What a datagram to the TFTP port calls for: a read request to hand to a
/// driver, or nothing more once answered or ignored here.
fn take(
    front: &TftpFront,
    requests: &Port,
    meta: &quinn_udp::RecvMeta,
    datagram: &[u8],
) -> Option<Handed> {
    let (client, dst_ip) = (meta.addr, meta.dst_ip);
    // Strangers get no answer at all: any answer would help a spoofed
    // reflection.
    if !front.settings.load().allow.allows(client.ip()) {
        front.refuse(ClientRefusal::NotAllowed);
        return None;
    }
    match accept(datagram) {
        Accept::Start(request) => Some(Handed {
            client,
            dst_ip,
            fingerprint: fingerprint(datagram),
            request,
        }),
        Accept::Refuse { reply, why } => {
            // An ERROR is an answer too: within the client's rate only.
            if !front.admission.within_rate(client.ip()) {
                front.refuse(ClientRefusal::RateLimited);
                return None;
            }
            front.count_refused(client, why);
            requests.send_from(client, dst_ip, &reply);
            None
        }
        Accept::Ignore { malformed } => {
            if malformed {
                front.metrics.malformed_packets.inc();
            }
            None
        }
    }
}

/// Recent requests per client port, remembered per listener: a client
/// port's last request, by fingerprint, and the driver it went to.
#[derive(Default)]
struct Recent {
    /// Two generations: when the current one is full the older one is
    /// forgotten, so the table keeps at least the last [`RECENT_REQUESTS`]
    /// requests (several seconds of a boot storm, far longer than a
    /// retransmission or a late ACK takes) in bounded memory.
    current: HashMap<ClientKey, (u64, usize), foldhash::fast::RandomState>,
    previous: HashMap<ClientKey, (u64, usize), foldhash::fast::RandomState>,
    spread: foldhash::fast::RandomState,
}

/// Requests a generation of [`Recent`] holds.
const RECENT_REQUESTS: usize = 16_384;

impl Recent {
    /// The driver for a request from `client`, given each driver's
    /// transfers.
    fn pick(&mut self, client: SocketAddr, fingerprint: u64, transfers: &[usize]) -> usize {
        let drivers = transfers.len();
        let client = ClientKey(client);
        let last = self
            .current
            .get(&client)
            .or_else(|| self.previous.get(&client));
        let driver = match last {
            Some(&(last, driver)) if last == fingerprint => driver,
            Some(&(_, driver)) => (driver + 1) % drivers,
            None => {
                // The least busy; among equals, the first from a point that
                // differs per client, so that ties do not all go to one.
                let start = self.spread.hash_one(client) as usize % drivers;
                (0..drivers)
                    .map(|i| (start + i) % drivers)
                    .min_by_key(|&i| transfers[i])
                    .unwrap_or(0)
            }
        };
        if self.current.len() >= RECENT_REQUESTS && !self.current.contains_key(&client) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(client, (fingerprint, driver));
        driver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_goes_where_its_request_went_and_a_new_request_elsewhere() {
        let mut recent = Recent::default();
        let phone: SocketAddr = "192.0.2.7:50000".parse().unwrap();
        let idle = [0, 0];
        let first = recent.pick(phone, 1, &idle);
        assert_eq!(recent.pick(phone, 1, &idle), first, "a retransmission");
        let second = recent.pick(phone, 2, &idle);
        assert_ne!(second, first, "another file from the same port");
        assert_eq!(recent.pick(phone, 2, &idle), second);
        // Repeats go where their request went, however busy it is now.
        let mut busy = [0, 0];
        busy[first] = 100;
        assert_eq!(recent.pick(phone, 1, &busy), first);
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_latest_requests() {
        let mut recent = Recent::default();
        let phone = |i: usize| SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1000));
        let picks: Vec<usize> = (0..3 * RECENT_REQUESTS)
            .map(|i| recent.pick(phone(i % 60_000), 7, &[0; 4]))
            .collect();
        assert!(recent.current.len() + recent.previous.len() <= 2 * RECENT_REQUESTS);
        let last = 3 * RECENT_REQUESTS - 1;
        assert_eq!(recent.pick(phone(last % 60_000), 7, &[0; 4]), picks[last]);
    }

    #[test]
    fn a_new_client_goes_to_the_least_busy_driver() {
        let mut recent = Recent::default();
        let phone = |i: u8| SocketAddr::from(([10, 0, 0, i], 50_000));
        assert_eq!(recent.pick(phone(1), 1, &[3, 1, 2]), 1);
        assert_eq!(recent.pick(phone(2), 1, &[3, 2, 0]), 2);
        // Ten phones handed out one after another, each counted as it goes:
        // five each, where a hash would often split them 7 to 3.
        let mut transfers = [0, 0];
        for i in 10..20 {
            transfers[recent.pick(phone(i), 1, &transfers)] += 1;
        }
        assert_eq!(transfers, [5, 5]);
    }

    #[test]
    fn a_lane_counts_what_it_handed_until_its_driver_reports_taking_it() {
        let (hand, _requests) = tokio::sync::mpsc::unbounded_channel();
        let mut lane = Lane::new(hand, Arc::default());
        lane.handed = 4;
        assert_eq!(lane.transfers(), 4, "none taken yet");
        lane.load.report(3, 4);
        assert_eq!(lane.transfers(), 3, "all taken: the driver's own count");
        lane.load.report(2, 3);
        assert_eq!(lane.transfers(), 3, "one still on its way");
    }
}
