//! The location and home tables' snapshot in the persistent cache
//! (`tables.json`), so that after a restart a known device goes to its home
//! cluster at once and a known name to its cluster, with no fan-out.
//!
//! Written atomically every minute and at shutdown, read once when the
//! resolver is built (before any listener serves; a file of a few MB for
//! the default 100,000 homes parses in milliseconds). Entries pointing to
//! clusters no longer enabled are dropped; locations older than
//! `cache.ttl` are not restored.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::cache::{Location, Scope};
use super::store::entry::{from_unix_ms, unix_ms};
use super::Inner;

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    written_ms: u64,
    locations: Vec<(String, String)>,
    devices: Vec<(String, String)>,
    clients: Vec<(IpAddr, String)>,
}

impl Inner {
    /// Writes the snapshot (blocking I/O; no-op without `cache.dir`).
    pub(super) fn save_tables(&self) {
        let Some(disk) = self.caches.disk() else {
            return;
        };
        let text = |pairs: Vec<(Arc<str>, Arc<str>)>| -> Vec<(String, String)> {
            pairs
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let snapshot = Snapshot {
            version: VERSION,
            written_ms: unix_ms(SystemTime::now()),
            locations: text(self.caches.found_locations()),
            devices: text(self.homes.devices()),
            clients: self
                .homes
                .clients()
                .into_iter()
                .map(|(ip, c)| (ip, c.to_string()))
                .collect(),
        };
        match serde_json::to_vec(&snapshot) {
            Ok(bytes) => disk.write_tables(&bytes),
            Err(error) => warn!(%error, "cannot encode the table snapshot"),
        }
    }

    /// Restores the snapshot, if any (blocking I/O, at start).
    pub(super) fn restore_tables(&self) {
        let Some(bytes) = self.caches.disk().and_then(|d| d.read_tables()) else {
            return;
        };
        let snapshot = match serde_json::from_slice::<Snapshot>(&bytes) {
            Ok(s) if s.version == VERSION => s,
            Ok(_) | Err(_) => {
                warn!("the cache directory's table snapshot is unreadable: ignored");
                return;
            }
        };
        let enabled = |id: &str| self.enabled_cluster(id).map(|c| c.id.clone());
        let age = from_unix_ms(snapshot.written_ms)
            .elapsed()
            .unwrap_or(Duration::ZERO);
        let mut locations = 0;
        if age < self.caches.settings().ttl {
            for (name, cluster) in snapshot.locations {
                if let Some(id) = enabled(&cluster) {
                    let name: Arc<str> = Arc::from(name);
                    self.caches
                        .set_location(Scope::All, &name, Location::Cluster(id));
                    locations += 1;
                }
            }
        }
        let mut homes = 0;
        for (device, cluster) in snapshot.devices {
            if let Some(id) = enabled(&cluster) {
                self.homes.restore(Some(&device), None, &id);
                homes += 1;
            }
        }
        for (client, cluster) in snapshot.clients {
            if let Some(id) = enabled(&cluster) {
                self.homes.restore(None, Some(client), &id);
            }
        }
        info!(
            locations,
            device_homes = homes,
            "restored the tables from the cache directory"
        );
    }
}
