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
//! answer. Per-port transfers only: the single-port driver keeps its
//! transfers in one task, which a cancellation could not wake.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::sync::lock;

/// The unanswered transfers, by start order.
#[derive(Default)]
pub(super) struct Unanswered {
    next: AtomicU64,
    waiting: Mutex<BTreeMap<u64, CancellationToken>>,
}

/// One transfer's place in [`Unanswered`]; leaves it when dropped or
/// answered.
pub(super) struct Place {
    table: Arc<Unanswered>,
    seq: Option<u64>,
    token: CancellationToken,
}

impl Unanswered {
    /// Enters a transfer that has just sent its first packets.
    pub(super) fn enter(self: &Arc<Self>) -> Place {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        lock(&self.waiting).insert(seq, token.clone());
        Place {
            table: self.clone(),
            seq: Some(seq),
            token,
        }
    }

    /// Ends the oldest unanswered transfer; false when there is none.
    pub(super) fn end_oldest(&self) -> bool {
        match lock(&self.waiting).pop_first() {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
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

    /// Resolves when the transfer was ended to make room.
    pub(super) async fn ended(&self) {
        self.token.cancelled().await
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
        let mut first = table.enter();
        let second = table.enter();
        let third = table.enter();
        first.answered();
        assert!(table.end_oldest());
        assert!(second.token.is_cancelled(), "the oldest unanswered");
        assert!(!first.token.is_cancelled() && !third.token.is_cancelled());
        drop(third);
        assert_eq!(table.len(), 0);
        assert!(!table.end_oldest());
    }
}
