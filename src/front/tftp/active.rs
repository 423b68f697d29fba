//! The per-port mode's table of running transfers, by client address and
//! port: it tells a phone's retransmitted request (ignored: its transfer
//! answers it) from a new request that happens to have the same bytes (a
//! port the kernel handed out again, to the same phone or, behind NAT or on
//! one host, to another one asking for the same file).
//!
//! A request is taken for a retransmission (or a late duplicate) only while
//! its client cannot be done with the file: once it has answered and the
//! last block has gone out ([`Transfer::may_be_done`]), the same request
//! from that port is a new one. Tying the rule to the transfer's state, not
//! to the life of its task, is the fix for a request ignored for a full
//! retransmit time because the previous transfer on that port had received
//! its final ACK (or lost it) but its task had not yet been torn down.
//!
//! [`Transfer::may_be_done`]: crate::tftp::send::Transfer::may_be_done

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::sync::lock;

/// What a transfer task shares with the listener.
#[derive(Default)]
pub(super) struct Tracked {
    /// Set by the task once the client may be done (see the module doc).
    done: AtomicBool,
    /// Poked by the listener when the request is repeated before that.
    repeat: Notify,
}

impl Tracked {
    pub(super) fn mark_done(&self) {
        self.done.store(true, Ordering::Release);
    }

    /// Resolves when the client repeated its request (a permit is kept if
    /// the task was busy, so no repeat is lost).
    pub(super) async fn repeated(&self) {
        self.repeat.notified().await;
    }
}

struct Entry {
    fingerprint: u64,
    tracked: Arc<Tracked>,
}

/// Clients with a transfer running.
#[derive(Default)]
pub(super) struct ActiveTable {
    entries: Mutex<HashMap<SocketAddr, Entry>>,
}

impl ActiveTable {
    /// Whether `datagram` from `client` repeats the request of a transfer
    /// whose client cannot be done yet; if so the transfer is told (it
    /// resends its first packets if nothing was answered yet).
    pub(super) fn is_retransmission(&self, client: SocketAddr, fingerprint: u64) -> bool {
        let entries = lock(&self.entries);
        match entries.get(&client) {
            Some(entry)
                if entry.fingerprint == fingerprint
                    && !entry.tracked.done.load(Ordering::Acquire) =>
            {
                entry.tracked.repeat.notify_one();
                true
            }
            _ => false,
        }
    }

    /// Records a new transfer for `client`, replacing any previous one (the
    /// old task keeps running; it only loses its place in the table).
    pub(super) fn insert(&self, client: SocketAddr, fingerprint: u64) -> Arc<Tracked> {
        let tracked = Arc::new(Tracked::default());
        let entry = Entry {
            fingerprint,
            tracked: tracked.clone(),
        };
        lock(&self.entries).insert(client, entry);
        tracked
    }

    /// Removes `client`'s entry if it is still the one of `tracked`: the
    /// phone may already have started its next request from the same port.
    pub(super) fn remove(&self, client: SocketAddr, tracked: &Arc<Tracked>) {
        let mut entries = lock(&self.entries);
        if entries
            .get(&client)
            .is_some_and(|entry| Arc::ptr_eq(&entry.tracked, tracked))
        {
            entries.remove(&client);
        }
    }
}

/// A fingerprint of a request's bytes.
pub(super) fn fingerprint(datagram: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    datagram.hash(&mut hasher);
    hasher.finish()
}
