//! Coalescing of concurrent upstream fetches: one spawned task per key, every
//! waiter gets its result.
//!
//! The work runs in a `tokio::spawn`ed task, not in the waiter's future, so a
//! waiter that gives up (its future dropped by a time-out, a phone that stops
//! waiting) never cancels it: the result still lands in the caches, and the
//! phone's retry is served from there. The task removes its key from the map
//! only after the work (which writes the caches) is done, so a request that
//! arrives later either joins the flight or finds the cache filled.
//!
//! A flight counts its waiters. When the last one has gone, the work may
//! withdraw ([`Wanted::withdraw`]): the key is removed at that moment,
//! under the map's lock, so a request that comes later starts a new flight
//! rather than joining one that is giving up.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::Notify;

use crate::sync::lock;

type Flight<V> = Shared<BoxFuture<'static, Option<V>>>;

/// A flight in the map: its result, and who waits for it.
struct Entry<V: Clone> {
    flight: Flight<V>,
    waiters: Arc<Waiters>,
}

type Map<K, V> = Arc<Mutex<HashMap<K, Entry<V>>>>;

/// The waiters of one flight.
#[derive(Default)]
struct Waiters {
    /// Futures returned by [`SingleFlight::run`] and not dropped yet;
    /// raised under the map's lock only.
    count: AtomicUsize,
    /// Signalled when `count` falls to zero.
    gone: Notify,
    /// The flight left the map with nobody waiting.
    withdrawn: AtomicBool,
}

/// One waiter of a flight; dropping it (the waiter gave up, or got the
/// result) lowers the count.
struct WaiterGuard(Arc<Waiters>);

impl WaiterGuard {
    /// Counts a new waiter: call with the map locked.
    fn new(waiters: &Arc<Waiters>) -> WaiterGuard {
        waiters.count.fetch_add(1, Ordering::SeqCst);
        WaiterGuard(waiters.clone())
    }
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.gone.notify_waiters();
        }
    }
}

/// What the work of a flight is handed: whether anybody still waits for it.
#[derive(Clone)]
pub(super) struct Wanted {
    waiters: Arc<Waiters>,
    /// Removes the flight from the map if nobody waits for it; true if it
    /// did (or had).
    withdraw: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Wanted {
    /// Resolves once nobody waits for the flight (now, or it has withdrawn).
    /// Withdraws nothing: a later request may still join.
    pub(super) async fn unwanted(&self) {
        loop {
            let gone = self.waiters.gone.notified();
            tokio::pin!(gone);
            gone.as_mut().enable();
            if self.waiters.withdrawn.load(Ordering::SeqCst)
                || self.waiters.count.load(Ordering::SeqCst) == 0
            {
                return;
            }
            gone.await;
        }
    }

    /// Withdraws the flight if nobody waits for it: it leaves the map (a
    /// later request starts its own), so the work may stop, and whatever it
    /// returns goes to nobody. False while somebody waits.
    pub(super) fn withdraw(&self) -> bool {
        (self.withdraw)()
    }

    /// [`Wanted::unwanted`], then withdrawn.
    #[cfg(test)]
    pub(super) async fn abandoned(&self) {
        loop {
            self.unwanted().await;
            if self.withdraw() {
                return;
            }
            tokio::task::yield_now().await;
        }
    }
}

/// In-flight work by key.
pub(super) struct SingleFlight<K, V: Clone> {
    flights: Map<K, V>,
}

impl<K, V: Clone> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            flights: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Joins the flight for `key`, or starts one running `work()` in a new
    /// task. The returned future resolves to the work's result, or `None` if
    /// the task panicked. Must be called within a tokio runtime.
    ///
    /// The second value is true when this call started the flight. `work`
    /// is handed the flight's [`Wanted`].
    pub(super) fn run<F, W>(
        &self,
        key: K,
        work: W,
    ) -> (impl Future<Output = Option<V>> + Send + 'static, bool)
    where
        W: FnOnce(Wanted) -> F,
        F: Future<Output = V> + Send + 'static,
    {
        let waiter = |flight: Flight<V>, waiters: &Arc<Waiters>| {
            let guard = WaiterGuard::new(waiters);
            async move {
                let _guard = guard;
                flight.await
            }
        };
        let mut flights = lock(&self.flights);
        if let Some(entry) = flights.get(&key) {
            return (waiter(entry.flight.clone(), &entry.waiters), false);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let waiters = Arc::new(Waiters::default());
        let withdraw = {
            let map = Arc::downgrade(&self.flights);
            let key = key.clone();
            let waiters = waiters.clone();
            move || {
                let Some(map) = map.upgrade() else {
                    return false;
                };
                let mut map = lock(&map);
                // Waiters join only under this lock, and only while the
                // flight is in the map: once it is out (landed or
                // withdrawn) with none left, none can come.
                if waiters.count.load(Ordering::SeqCst) > 0 {
                    return false;
                }
                remove_if_ours(&mut map, &key, &waiters);
                waiters.withdrawn.store(true, Ordering::SeqCst);
                true
            }
        };
        let future = work(Wanted {
            waiters: waiters.clone(),
            withdraw: Arc::new(withdraw),
        });
        let map = self.flights.clone();
        let task_key = key.clone();
        let task_waiters = waiters.clone();
        // The map lock is held until the flight is registered, so the task's
        // removal below cannot run before the insertion.
        tokio::spawn(async move {
            // Removes the key (then wakes the waiters) even if the work
            // panics.
            let landing = Landing {
                map,
                key: Some(task_key),
                waiters: task_waiters,
                tx: Some(tx),
            };
            let result = future.await;
            landing.land(result);
        });
        let flight: Flight<V> = rx.map(Result::ok).boxed().shared();
        let first = waiter(flight.clone(), &waiters);
        flights.insert(key, Entry { flight, waiters });
        (first, true)
    }

    /// Flights running now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        lock(&self.flights).len()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes `key`'s flight if it is still the one `waiters` belong to: a
/// withdrawn flight's key may hold a newer flight by now.
fn remove_if_ours<K: Hash + Eq, V: Clone>(
    map: &mut HashMap<K, Entry<V>>,
    key: &K,
    waiters: &Arc<Waiters>,
) {
    if map
        .get(key)
        .is_some_and(|e| Arc::ptr_eq(&e.waiters, waiters))
    {
        map.remove(key);
    }
}

/// Ends a flight: removes its key from the map, then hands the result to
/// the waiters (or, when dropped without a result, wakes them with `None`).
struct Landing<K: Hash + Eq, V: Clone> {
    map: Map<K, V>,
    key: Option<K>,
    waiters: Arc<Waiters>,
    tx: Option<tokio::sync::oneshot::Sender<V>>,
}

impl<K: Hash + Eq, V: Clone> Landing<K, V> {
    fn land(mut self, result: V) {
        self.unregister();
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(result);
        }
    }

    fn unregister(&mut self) {
        if let Some(key) = self.key.take() {
            remove_if_ours(&mut lock(&self.map), &key, &self.waiters);
        }
    }
}

impl<K: Hash + Eq, V: Clone> Drop for Landing<K, V> {
    fn drop(&mut self) {
        self.unregister();
        // `tx` drops after this, waking the waiters with `None`.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_calls_share_one_run() {
        let flights: SingleFlight<&'static str, u32> = SingleFlight::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut waiters = Vec::new();
        let mut leaders = 0;
        for _ in 0..50 {
            let runs = runs.clone();
            let (fut, leader) = flights.run("k", move |_| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                7
            });
            leaders += leader as usize;
            waiters.push(fut);
        }
        let results = futures::future::join_all(waiters).await;
        assert!(results.iter().all(|r| *r == Some(7)));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn dropped_waiter_does_not_cancel_the_work() {
        let flights: SingleFlight<u8, u8> = SingleFlight::new();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let (fut, _) = flights.run(1, move |_| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.fetch_add(1, Ordering::SeqCst);
            1
        });
        assert!(tokio::time::timeout(Duration::from_millis(5), fut)
            .await
            .is_err());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn a_later_call_starts_a_new_flight() {
        let flights: SingleFlight<u8, u8> = SingleFlight::new();
        let (a, leader_a) = flights.run(1, |_| async { 1 });
        assert!(leader_a);
        assert_eq!(a.await, Some(1));
        let (b, leader_b) = flights.run(1, |_| async { 2 });
        assert!(leader_b);
        assert_eq!(b.await, Some(2));
    }

    #[tokio::test]
    async fn a_panicking_task_yields_none() {
        let flights: SingleFlight<u8, u8> = SingleFlight::new();
        let (fut, _) = flights.run(1, |_| async { panic!("boom") });
        assert_eq!(fut.await, None);
        // The key is free again.
        let (fut, leader) = flights.run(1, |_| async { 3 });
        assert!(leader);
        assert_eq!(fut.await, Some(3));
    }

    #[tokio::test]
    async fn work_nobody_waits_for_is_abandoned_and_a_later_call_starts_afresh() {
        let flights: SingleFlight<u8, u8> = SingleFlight::new();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let (first, _) = flights.run(1, move |wanted| async move {
            wanted.abandoned().await;
            let _ = tx.send(());
            0
        });
        let (second, leader) = flights.run(1, |_| async { 9 });
        assert!(!leader, "joined");
        drop(first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err(), "one waiter is left: still wanted");
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("abandoned once the last waiter left")
            .unwrap();
        // The abandoned flight left the map: a new call starts its own.
        let (third, leader) = flights.run(1, |_| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            3
        });
        assert!(leader);
        // The abandoned flight's landing does not remove the new one.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(flights.len(), 1);
        assert_eq!(third.await, Some(3));
        assert!(flights.is_empty());
    }
}
