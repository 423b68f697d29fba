//! Learned home clusters (ARCHITECTURE.md, "Caches").
//!
//! Two tables, each bounded by `cache.max_homes` (least recently used
//! entries go first): device key (`SEP001122AABBCC`, `CSFJSMITH`, a bare MAC)
//! → cluster, and client IP → cluster. Both are learned whenever a
//! device-specific name is found on a cluster. A device's next names are
//! asked of its home cluster alone first; cluster-specific names without a
//! MAC (`*.sgn`, ITL/CTL, ring lists, `SK…`) asked by a client IP with a home
//! come from that cluster before the local copy.
//!
//! Entries do not expire by time: a phone moved to another cluster is
//! relearned as soon as its old cluster says 404 and the fan-out finds it
//! elsewhere.

use std::net::IpAddr;
use std::sync::Arc;

use moka::policy::EvictionPolicy;
use moka::sync::Cache;

/// Device → cluster and client IP → cluster.
pub(super) struct Homes {
    max: u64,
    devices: Cache<Arc<str>, Arc<str>>,
    clients: Cache<IpAddr, Arc<str>>,
}

impl Homes {
    pub(super) fn new(max_homes: u64) -> Homes {
        Homes {
            max: max_homes,
            devices: Cache::builder()
                .max_capacity(max_homes)
                .eviction_policy(EvictionPolicy::lru())
                .build(),
            clients: Cache::builder()
                .max_capacity(max_homes)
                .eviction_policy(EvictionPolicy::lru())
                .build(),
        }
    }

    /// The bound the tables were built with.
    pub(super) fn max_homes(&self) -> u64 {
        self.max
    }

    pub(super) fn device(&self, device: &str) -> Option<Arc<str>> {
        self.devices.get(device)
    }

    pub(super) fn client(&self, client: IpAddr) -> Option<Arc<str>> {
        self.clients.get(&client.to_canonical())
    }

    /// Records that `device` (and the client that asked, if any) lives on
    /// `cluster`. Returns true when this changed what was known.
    pub(super) fn learn(&self, device: &str, client: Option<IpAddr>, cluster: &Arc<str>) -> bool {
        let mut changed = false;
        if self.devices.get(device).as_ref() != Some(cluster) {
            self.devices.insert(Arc::from(device), cluster.clone());
            changed = true;
        }
        if let Some(client) = client {
            // A dual-stack socket's ::ffff:a.b.c.d is the same phone as a.b.c.d.
            let client = client.to_canonical();
            if self.clients.get(&client).as_ref() != Some(cluster) {
                self.clients.insert(client, cluster.clone());
                changed = true;
            }
        }
        changed
    }

    /// Every device → cluster entry (the table snapshot).
    pub(super) fn devices(&self) -> Vec<(Arc<str>, Arc<str>)> {
        self.devices
            .iter()
            .map(|(k, v)| ((*k).clone(), v))
            .collect()
    }

    /// Every client → cluster entry (the table snapshot).
    pub(super) fn clients(&self) -> Vec<(IpAddr, Arc<str>)> {
        self.clients.iter().map(|(k, v)| (*k, v)).collect()
    }

    /// Restores what a table snapshot says (no look-up first: start-up
    /// speed).
    pub(super) fn restore(&self, device: Option<&str>, client: Option<IpAddr>, cluster: &Arc<str>) {
        if let Some(device) = device {
            self.devices.insert(Arc::from(device), cluster.clone());
        }
        if let Some(client) = client {
            self.clients.insert(client.to_canonical(), cluster.clone());
        }
    }

    /// Forgets every entry pointing to a cluster not in `keep`.
    pub(super) fn retain_clusters(&self, keep: &[Arc<str>]) {
        let kept = |id: &Arc<str>| keep.iter().any(|k| k == id);
        for (key, cluster) in self.devices.iter() {
            if !kept(&cluster) {
                self.devices.invalidate(&*key);
            }
        }
        for (key, cluster) in self.clients.iter() {
            if !kept(&cluster) {
                self.clients.invalidate(&*key);
            }
        }
        self.run_pending_tasks();
    }

    pub(super) fn run_pending_tasks(&self) {
        self.devices.run_pending_tasks();
        self.clients.run_pending_tasks();
    }

    pub(super) fn device_entries(&self) -> u64 {
        self.devices.entry_count()
    }

    pub(super) fn client_entries(&self) -> u64 {
        self.clients.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_devices_and_clients() {
        let homes = Homes::new(100);
        let c2: Arc<str> = Arc::from("c2");
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(homes.learn("SEP001122334455", Some(ip), &c2));
        assert!(!homes.learn("SEP001122334455", Some(ip), &c2));
        assert_eq!(homes.device("SEP001122334455"), Some(c2.clone()));
        assert_eq!(homes.client(ip), Some(c2.clone()));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(homes.client(mapped), Some(c2.clone()));
        assert_eq!(homes.device("SEP000000000001"), None);
    }

    #[test]
    fn bounded_by_max_homes() {
        let homes = Homes::new(10);
        let c: Arc<str> = Arc::from("c");
        for i in 0..100u32 {
            homes.learn(
                &format!("SEP{i:012}"),
                Some(IpAddr::from(i.to_be_bytes())),
                &c,
            );
        }
        homes.run_pending_tasks();
        assert!(homes.device_entries() <= 10);
        assert!(homes.client_entries() <= 10);
    }

    #[test]
    fn retain_forgets_removed_clusters() {
        let homes = Homes::new(10);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        homes.learn("SEP1", None, &a);
        homes.learn("SEP2", None, &b);
        homes.retain_clusters(std::slice::from_ref(&a));
        assert_eq!(homes.device("SEP1"), Some(a));
        assert_eq!(homes.device("SEP2"), None);
    }
}
