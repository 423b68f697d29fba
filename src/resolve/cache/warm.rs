//! The content cache's warm tier: the persistent store (`super::super::store`)
//! consulted on a memory miss and written on every fetch.
//!
//! Reads and writes run on tokio's blocking pool, so a large body never
//! holds a runtime worker; only the index check (a map lookup under a
//! mutex) runs inline, so a name that is not on disk costs no thread hop.

use std::sync::Arc;
use std::time::SystemTime;

use crate::body::Blob;
use crate::source::upstream::Validators;

use super::super::store::entry::Meta;
use super::{Cached, Caches, ContentEntry};

impl Caches {
    /// [`Caches::content`], then the disk: a verified copy found there is
    /// put back in memory with its age.
    pub(in crate::resolve) async fn content_tiered(
        &self,
        cluster: &Arc<str>,
        name: &Arc<str>,
        device: bool,
    ) -> Option<Cached> {
        if let Some(cached) = self.content(cluster, name, device) {
            return Some(cached);
        }
        let disk = self.disk.clone()?;
        if !disk.may_hold(cluster, name) {
            return None;
        }
        let (c, n) = (cluster.clone(), name.clone());
        let (meta, body) = tokio::task::spawn_blocking(move || disk.read(&c, &n))
            .await
            .ok()??;
        let entry = ContentEntry {
            body: Blob::from(body),
            fetched: meta.confirmed,
            validators: Validators {
                etag: meta.etag,
                last_modified: meta.last_modified,
            },
        };
        let cached = self.classify(entry.clone(), device)?;
        self.content.insert((cluster.clone(), name.clone()), entry);
        Some(cached)
    }

    /// Writes `entry` to disk in the background (one blocking task).
    pub(super) fn persist(&self, cluster: &Arc<str>, name: &Arc<str>, entry: &ContentEntry) {
        let Some(disk) = self.disk.clone().filter(|d| d.writable()) else {
            return;
        };
        let meta = Meta {
            cluster: cluster.to_string(),
            name: name.to_string(),
            fetched: entry.fetched,
            confirmed: entry.fetched,
            etag: entry.validators.etag.clone(),
            last_modified: entry.validators.last_modified.clone(),
        };
        let body = entry.body.clone();
        let generation = disk.generation();
        let write = move || disk.write(&meta, &body, generation);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                self.writes.spawn_blocking_on(write, &runtime);
            }
            Err(_) => write(),
        }
    }

    /// Moves the confirmation time of the entry on disk (in the background).
    pub(super) fn reconfirm_on_disk(&self, cluster: &Arc<str>, name: &Arc<str>, at: SystemTime) {
        let Some(disk) = self.disk.clone().filter(|d| d.writable()) else {
            return;
        };
        let (c, n) = (cluster.clone(), name.clone());
        let confirm = move || disk.confirm(&c, &n, at);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                self.writes.spawn_blocking_on(confirm, &runtime);
            }
            Err(_) => confirm(),
        }
    }

    pub(super) fn unpersist(&self, cluster: &Arc<str>, name: &Arc<str>) {
        if let Some(disk) = self.disk.clone() {
            let (c, n) = (cluster.clone(), name.clone());
            let remove = move || disk.remove(&c, &n);
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    self.writes.spawn_blocking_on(remove, &runtime);
                }
                Err(_) => remove(),
            }
        }
    }

    /// Waits for the disk writes in progress.
    pub(in crate::resolve) async fn flush(&self) {
        self.writes.close();
        self.writes.wait().await;
        self.writes.reopen();
    }

    /// The persistent store, if any (the table snapshot lives there too).
    pub(in crate::resolve) fn disk(&self) -> Option<&Arc<super::super::store::DiskStore>> {
        self.disk.as_ref()
    }

    /// Bytes held on disk (0 without `cache.dir`).
    pub(in crate::resolve) fn disk_bytes(&self) -> u64 {
        self.disk.as_ref().map_or(0, |d| d.bytes())
    }
}
