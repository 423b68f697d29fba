//! What bounds the upstream client's own resources: a turn at each address
//! (`remote.max_requests_per_address`), the line of fetches waiting for a
//! turn at one cluster (`remote.max_queued`), and the bytes of bodies being
//! received at once (`remote.max_inflight_bytes`).
//!
//! The line and the budget are shared across reloads by their owners (the
//! resolver's cluster state, the daemon's metrics), so a reload does not
//! reset what is already waiting or held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, Semaphore};

use crate::sync::lock;

/// One address's turns, and who waits for one.
#[derive(Debug)]
pub(super) struct AddressTurns {
    pub(super) permits: Arc<Semaphore>,
    /// Fetches some phone still waits for, waiting for a turn here.
    waiting: AtomicUsize,
    arrived: Notify,
}

impl AddressTurns {
    fn new(permits: usize) -> AddressTurns {
        AddressTurns {
            permits: Arc::new(Semaphore::new(permits)),
            waiting: AtomicUsize::new(0),
            arrived: Notify::new(),
        }
    }

    /// Marks a wanted fetch waiting for a turn until the guard drops.
    pub(super) fn wait(self: &Arc<Self>) -> Waiting {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.arrived.notify_waiters();
        Waiting(self.clone())
    }

    /// Some fetch waits for a turn here now.
    pub(super) fn is_wanted_elsewhere(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Resolves once some fetch waits for a turn here.
    pub(super) async fn someone_waits(&self) {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.is_wanted_elsewhere() {
                return;
            }
            arrived.await;
        }
    }
}

/// A fetch waiting for a turn at an address (see [`AddressTurns::wait`]).
pub(super) struct Waiting(Arc<AddressTurns>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Turns per base URL, made on first use.
#[derive(Debug)]
pub(super) struct AddressLimits {
    permits: usize,
    by_address: Mutex<HashMap<String, Arc<AddressTurns>>>,
}

impl AddressLimits {
    pub(super) fn new(permits: usize) -> AddressLimits {
        AddressLimits {
            permits,
            by_address: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn of(&self, base_url: &str) -> Arc<AddressTurns> {
        let mut map = lock(&self.by_address);
        map.entry(base_url.to_owned())
            .or_insert_with(|| Arc::new(AddressTurns::new(self.permits)))
            .clone()
    }
}

/// The fetches waiting for a turn at one cluster's addresses
/// (`remote.max_queued`). Its owner keeps one per cluster.
#[derive(Debug, Default)]
pub struct WaitLine {
    waiting: AtomicUsize,
}

impl WaitLine {
    /// A place in the line, or `None` when `max` fetches already wait.
    pub(super) fn join(self: &Arc<Self>, max: usize) -> Option<Place> {
        self.waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Place(self.clone()))
    }

    /// Fetches waiting now.
    pub fn len(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A place in a [`WaitLine`], given up when dropped.
pub(super) struct Place(Arc<WaitLine>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The bytes of bodies being received, bounded by `limit`
/// (`remote.max_inflight_bytes`). The count is the gauge's own value
/// (`tftproxy_upstream_inflight_bytes`), so what the metric says is what
/// the bound sees, and the daemon's one gauge carries it across reloads.
#[derive(Clone, Debug)]
pub(super) struct Budget {
    pub(super) limit: u64,
    held: Gauge,
}

impl Budget {
    pub(super) fn new(limit: u64, held: Gauge) -> Budget {
        Budget { limit, held }
    }

    pub(super) fn gauge(&self) -> &Gauge {
        &self.held
    }

    /// An empty claim on the budget.
    pub(super) fn claim(&self) -> Claim {
        Claim {
            counter: self.held.clone(),
            limit: i64::try_from(self.limit).unwrap_or(i64::MAX),
            held: 0,
        }
    }
}

/// Bytes of one body held against the [`Budget`]; freed when dropped.
pub(super) struct Claim {
    counter: Gauge,
    limit: i64,
    held: i64,
}

impl Claim {
    /// Holds `total` bytes in all (no less than now): false, holding what it
    /// held, when that would take the budget over its limit.
    pub(super) fn grow_to(&mut self, total: u64) -> bool {
        let total = i64::try_from(total).unwrap_or(i64::MAX);
        let more = total - self.held;
        if more <= 0 {
            return true;
        }
        let counter: &AtomicI64 = self.counter.inner();
        let taken = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            n.checked_add(more).filter(|sum| *sum <= self.limit)
        });
        if taken.is_ok() {
            self.held = total;
        }
        taken.is_ok()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.counter.dec_by(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_never_take_the_budget_over_its_limit_and_free_on_drop() {
        let budget = Budget::new(100, Gauge::default());
        let mut a = budget.claim();
        let mut b = budget.claim();
        assert!(a.grow_to(60));
        assert!(!b.grow_to(50), "60 + 50 > 100");
        assert!(b.grow_to(40));
        assert_eq!(budget.gauge().get(), 100);
        assert!(!a.grow_to(61));
        drop(a);
        assert_eq!(budget.gauge().get(), 40);
        drop(b);
        assert_eq!(budget.gauge().get(), 0);
    }

    #[test]
    fn a_wait_line_holds_at_most_max() {
        let line = Arc::new(WaitLine::default());
        let first = line.join(2);
        let second = line.join(2);
        assert!(first.is_some() && second.is_some());
        assert!(line.join(2).is_none());
        drop(first);
        assert!(line.join(2).is_some());
        assert!(line.join(0).is_none());
    }
}
