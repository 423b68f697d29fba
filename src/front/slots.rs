//! A limit on work running at once (`tftp.max_transfers`,
//! `http.max_connections`) that a reload can change: one semaphore for the
//! daemon's whole life, resized in place, so the limit holds across
//! configuration generations — the work admitted under the old limit and
//! the new counts together.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::sync::lock;

/// Permits for work running at once; a permit is given back when dropped.
#[derive(Debug)]
pub(crate) struct Slots {
    semaphore: Arc<Semaphore>,
    size: Mutex<usize>,
}

impl Slots {
    pub(crate) fn new(size: usize) -> Slots {
        Slots {
            semaphore: Arc::new(Semaphore::new(size)),
            size: Mutex::new(size),
        }
    }

    /// A permit if one is free now.
    pub(crate) fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        self.semaphore.clone().try_acquire_owned().ok()
    }

    /// Waits for a free permit.
    pub(crate) async fn take(&self) -> OwnedSemaphorePermit {
        self.semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Changes the limit. Growing frees permits at once; shrinking takes
    /// free permits away now and the rest as running work gives them back
    /// (a background task holds them). Must run within a tokio runtime.
    pub(crate) fn resize(&self, new: usize) {
        let mut size = lock(&self.size);
        let old = *size;
        *size = new;
        if new > old {
            self.semaphore.add_permits(new - old);
        } else if new < old {
            let owed = (old - new) - self.semaphore.forget_permits(old - new);
            if owed > 0 {
                let semaphore = self.semaphore.clone();
                tokio::spawn(async move {
                    if let Ok(permits) = semaphore.acquire_many_owned(owed as u32).await {
                        permits.forget();
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_smaller_limit_holds_once_running_work_ends() {
        let slots = Slots::new(2);
        let a = slots.try_take().unwrap();
        let b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        slots.resize(1);
        drop(a);
        tokio::task::yield_now().await;
        assert!(slots.try_take().is_none(), "the freed permit is taken away");
        drop(b);
        let c = slots.try_take().expect("one slot under the new limit");
        assert!(slots.try_take().is_none());
        drop(c);
    }

    #[tokio::test]
    async fn a_larger_limit_frees_permits_at_once() {
        let slots = Slots::new(1);
        let _a = slots.try_take().unwrap();
        slots.resize(3);
        let _b = slots.try_take().unwrap();
        let _c = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
    }
}
