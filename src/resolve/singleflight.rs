//! Coalescing of concurrent upstream fetches: one spawned task per key, every
//! waiter gets its result.
//!
//! The work runs in a `tokio::spawn`ed task, not in the waiter's future, so a
//! waiter that gives up (its future dropped by a time-out, a phone that stops
//! waiting) never cancels it: the result still lands in the caches, and the
//! phone's retry is served from there. The task removes its key from the map
//! only after the work (which writes the caches) is done, so a request that
//! arrives later either joins the flight or finds the cache filled.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

use crate::sync::lock;

type Flight<V> = Shared<BoxFuture<'static, Option<V>>>;

/// In-flight work by key.
pub(super) struct SingleFlight<K, V: Clone> {
    flights: Arc<Mutex<HashMap<K, Flight<V>>>>,
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
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Joins the flight for `key`, or starts one running `work()` in a new
    /// task. The returned future resolves to the work's result, or `None` if
    /// the task panicked. Must be called within a tokio runtime.
    ///
    /// The second value is true when this call started the flight.
    pub(super) fn run<F, W>(&self, key: K, work: W) -> (impl Future<Output = Option<V>>, bool)
    where
        W: FnOnce() -> F,
        F: Future<Output = V> + Send + 'static,
    {
        let mut flights = lock(&self.flights);
        if let Some(flight) = flights.get(&key) {
            return (flight.clone(), false);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let future = work();
        let map = self.flights.clone();
        let task_key = key.clone();
        // The map lock is held until the flight is registered, so the task's
        // removal below cannot run before the insertion.
        tokio::spawn(async move {
            // Removes the key (then wakes the waiters) even if the work
            // panics.
            let landing = Landing {
                map,
                key: Some(task_key),
                tx: Some(tx),
            };
            let result = future.await;
            landing.land(result);
        });
        let flight: Flight<V> = rx.map(Result::ok).boxed().shared();
        flights.insert(key, flight.clone());
        (flight, true)
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

/// Ends a flight: removes its key from the map, then hands the result to
/// the waiters (or, when dropped without a result, wakes them with `None`).
struct Landing<K: Hash + Eq, V: Clone> {
    map: Arc<Mutex<HashMap<K, Flight<V>>>>,
    key: Option<K>,
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
            lock(&self.map).remove(&key);
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
            let (fut, leader) = flights.run("k", move || async move {
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
        let (fut, _) = flights.run(1, move || async move {
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
        let (a, leader_a) = flights.run(1, || async { 1 });
        assert!(leader_a);
        assert_eq!(a.await, Some(1));
        let (b, leader_b) = flights.run(1, || async { 2 });
        assert!(leader_b);
        assert_eq!(b.await, Some(2));
    }

    #[tokio::test]
    async fn a_panicking_task_yields_none() {
        let flights: SingleFlight<u8, u8> = SingleFlight::new();
        let (fut, _) = flights.run(1, || async { panic!("boom") });
        assert_eq!(fut.await, None);
        // The key is free again.
        let (fut, leader) = flights.run(1, || async { 3 });
        assert!(leader);
        assert_eq!(fut.await, Some(3));
    }
}
