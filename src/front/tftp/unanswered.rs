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
//! answer. Both modes share the table: a per-port transfer is woken by a
//! cancellation token, a single-port one by a message to the driver that
//! holds it (one task drives them all; it cannot wait on a token each).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sync::lock;

/// The unanswered transfers, by start order.
#[derive(Default)]
pub(super) struct Unanswered {
    next: AtomicU64,
    waiting: Mutex<BTreeMap<u64, Ender>>,
}

/// How an unanswered transfer is told to end.
enum Ender {
    /// A per-port transfer's own task waits on this token.
    Task(CancellationToken),
    /// A single-port transfer: its driver gets the client and the
    /// transfer's id.
    Driver(Ending),
}

/// What a single-port driver is told: end this client's transfer if it is
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
    /// Per-port transfers only.
    token: Option<CancellationToken>,
}

impl Unanswered {
    /// Enters a per-port transfer that has just sent its first packets.
    pub(super) fn enter(self: &Arc<Self>) -> Place {
        let token = CancellationToken::new();
        let mut place = self.insert(Ender::Task(token.clone()));
        place.token = Some(token);
        place
    }

    /// Enters a single-port transfer that has just sent its first packets.
    pub(super) fn enter_driven(self: &Arc<Self>, ending: Ending) -> Place {
        self.insert(Ender::Driver(ending))
    }

    fn insert(self: &Arc<Self>, ender: Ender) -> Place {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.waiting).insert(seq, ender);
        Place {
            table: self.clone(),
            seq: Some(seq),
            token: None,
        }
    }

    /// Ends the oldest unanswered transfer; false when there is none.
    pub(super) fn end_oldest(&self) -> bool {
        let Some((_, ender)) = lock(&self.waiting).pop_first() else {
            return false;
        };
        match ender {
            Ender::Task(token) => token.cancel(),
            // A driver that has stopped has ended its transfers already.
            Ender::Driver(Ending { driver, client, id }) => {
                let _ = driver.send((client, id));
            }
        }
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

    /// Resolves when a per-port transfer was ended to make room (never for
    /// a single-port one: its driver is told instead).
    pub(super) async fn ended(&self) {
        match &self.token {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
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
        let cancelled = |place: &Place| place.token.as_ref().unwrap().is_cancelled();
        let mut first = table.enter();
        let second = table.enter();
        let third = table.enter();
        first.answered();
        assert!(table.end_oldest());
        assert!(cancelled(&second), "the oldest unanswered");
        assert!(!cancelled(&first) && !cancelled(&third));
        drop(third);
        assert_eq!(table.len(), 0);
        assert!(!table.end_oldest());
    }

    #[test]
    fn a_single_port_driver_is_told_which_transfer_to_end() {
        let table = Arc::new(Unanswered::default());
        let (driver, mut told) = mpsc::unbounded_channel();
        let client: SocketAddr = "192.0.2.7:3000".parse().unwrap();
        let driven = table.enter_driven(Ending {
            driver,
            client,
            id: 42,
        });
        let per_port = table.enter();
        assert!(table.end_oldest());
        assert_eq!(told.try_recv().ok(), Some((client, 42)));
        assert!(!per_port.token.as_ref().unwrap().is_cancelled());
        drop(driven);
        assert_eq!(table.len(), 1);
    }
}
