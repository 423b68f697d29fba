//! Transfers whose client has not answered anything yet, oldest first, so
//! that a full `max_transfers` can make room for a new request by ending
//! the oldest of them.
//!
//! A phone acknowledges its first packet within a round trip; a transfer
//! still unanswered after that is most likely one a forged request started
//! (a flood from many addresses, each under the per-client limits). Left
//! alone, such transfers hold every slot for their whole retransmission
//! life and real phones get "busy". Ending the oldest of them instead costs
//! a real but lossy phone at worst one retransmitted request, since the
//! youngest unanswered transfers are the ones a real phone is about to
//! answer. Every driver shares the table; the one that holds a transfer to
//! end gets a message naming it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::sync::lock;

/// The unanswered transfers, by start order.
#[derive(Default)]
pub(super) struct Unanswered {
    next: AtomicU64,
    waiting: Mutex<BTreeMap<u64, Ending>>,
}

/// What a driver is told: end this client's transfer if it is
/// still the one with this id (the client may have moved on).
#[derive(Clone)]
pub(super) struct Ending {
    pub(super) driver: mpsc::UnboundedSender<(SocketAddr, u64)>,
    pub(super) client: SocketAddr,
    pub(super) id: u64,
}

/// One transfer's place in [`Unanswered`]; leaves it when dropped or
/// answered.
pub(super) struct Place {
    table: Arc<Unanswered>,
    seq: Option<u64>,
}

impl Unanswered {
    /// Enters a transfer that has just sent its first packets.
    pub(super) fn enter(self: &Arc<Self>, ending: Ending) -> Place {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.waiting).insert(seq, ending);
        Place {
            table: self.clone(),
            seq: Some(seq),
        }
    }

    /// Ends the oldest unanswered transfer; false when there is none.
    pub(super) fn end_oldest(&self) -> bool {
        let Some((_, Ending { driver, client, id })) = lock(&self.waiting).pop_first() else {
            return false;
        };
        // A driver that has stopped has ended its transfers already.
        let _ = driver.send((client, id));
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.waiting).len()
    }
}

impl Place {
    /// The client answered: this transfer can no longer be ended for room.
    pub(super) fn answered(&mut self) {
        if let Some(seq) = self.seq.take() {
            lock(&self.table.waiting).remove(&seq);
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.answered();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_unanswered_transfer_is_ended_first_and_answered_ones_never() {
        let table = Arc::new(Unanswered::default());
        let (driver, mut told) = mpsc::unbounded_channel();
        let client: SocketAddr = "192.0.2.7:3000".parse().unwrap();
        let enter = |id| {
            table.enter(Ending {
                driver: driver.clone(),
                client,
                id,
            })
        };
        let mut first = enter(1);
        let _second = enter(2);
        let third = enter(3);
        first.answered();
        assert!(table.end_oldest());
        assert_eq!(
            told.try_recv().ok(),
            Some((client, 2)),
            "the oldest unanswered"
        );
        assert!(told.try_recv().is_err(), "only one is ended");
        drop(third);
        assert_eq!(table.len(), 0);
        assert!(!table.end_oldest());
    }
}
