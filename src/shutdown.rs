//! Graceful shutdown, by broadcast: the daemon says "stop" once and every
//! listener loop hears it (as in mini-redis). Transfers already running are
//! not told; they finish, and the daemon waits for them for a bounded time.

use tokio::sync::watch;

/// The sending half, held by the daemon.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// A listener's view: resolves once shutdown has been asked for.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// A connected trigger and listener.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Tells every [`Shutdown`] to stop.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }

    /// A fresh listener for this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Waits until shutdown is asked for (or the trigger is gone).
    pub async fn recv(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    pub fn is_shutdown(&self) -> bool {
        *self.0.borrow()
    }
}
