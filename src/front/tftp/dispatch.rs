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
//! ACK of the old transfer cannot be taken for one of the new. Other
//! requests are spread by a hash of the client's address and port, seeded
//! per listener. What needs no transfer is answered here, from the TFTP
//! port: a write request, a request in mail mode, a malformed one.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
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

/// Takes requests on `requests` for `drivers` until `stop`.
pub(super) async fn serve(
    front: Arc<TftpFront>,
    requests: Arc<Port>,
    drivers: Vec<UnboundedSender<Handed>>,
    stop: CancellationToken,
) {
    let mut recent = Recent::default();
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
                    let driver = recent.pick(handed.client, handed.fingerprint, drivers.len());
                    // A driver outlives the listener: it stops on the same
                    // token, after it.
                    let _ = drivers[driver].send(handed);
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
    /// The driver, of `drivers`, for a request from `client`.
    fn pick(&mut self, client: SocketAddr, fingerprint: u64, drivers: usize) -> usize {
        let client = ClientKey(client);
        let last = self
            .current
            .get(&client)
            .or_else(|| self.previous.get(&client));
        let driver = match last {
            Some(&(last, driver)) if last == fingerprint => driver,
            Some(&(_, driver)) => (driver + 1) % drivers,
            None => self.spread.hash_one(client) as usize % drivers,
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
        let first = recent.pick(phone, 1, 2);
        assert_eq!(recent.pick(phone, 1, 2), first, "a retransmission");
        let second = recent.pick(phone, 2, 2);
        assert_ne!(second, first, "another file from the same port");
        assert_eq!(recent.pick(phone, 2, 2), second);
        assert_eq!(recent.pick(phone, 1, 2), first);
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_latest_requests() {
        let mut recent = Recent::default();
        let phone = |i: usize| SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1000));
        let picks: Vec<usize> = (0..3 * RECENT_REQUESTS)
            .map(|i| recent.pick(phone(i % 60_000), 7, 4))
            .collect();
        assert!(recent.current.len() + recent.previous.len() <= 2 * RECENT_REQUESTS);
        let last = 3 * RECENT_REQUESTS - 1;
        assert_eq!(recent.pick(phone(last % 60_000), 7, 4), picks[last]);
    }
}
