//! Answers from the caches alone: a lookup that may not go upstream (it
//! came from another proxy that looped or reached `remote.max_hops`, or no
//! cluster is enabled), and stale-if-error — when the clusters that would
//! answer a name are busy or unreachable, the last good copy confirmed
//! within `cache.max_stale` is served, logged and counted.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info};

use crate::metrics::CacheKind;
use crate::name::Classified;
use crate::verdict::Verdict;

use super::cache::{ContentEntry, Location, Scope};
use super::{Inner, Served};

impl Inner {
    /// Local root and caches only: the first cached copy among the
    /// device's home, the name's known location, then every enabled cluster
    /// in order.
    pub(super) async fn cached_only(&self, name: &Arc<str>, class: &Classified) -> Verdict<Served> {
        let device = class.device.is_some();
        for id in self.candidates(name, class.device.as_deref()) {
            if let Some(entry) = self.caches.content_tiered(&id, name, device).await {
                let entry = entry.any();
                if self.caches.cache_only_servable(&entry) {
                    self.count(CacheKind::Content, true);
                    debug!(name = %name, cluster = %id, "cache only: serving the cached copy");
                    return Verdict::Found(Served::from_cluster(id, entry.body, true));
                }
            }
        }
        self.count(CacheKind::Content, false);
        debug!(name = %name, "cache only: not cached");
        Verdict::NotFound
    }

    /// The clusters whose cached copy of `name` is worth serving without
    /// asking, best first: the device's home, the name's known location,
    /// then every enabled cluster in order.
    pub(super) fn candidates(&self, name: &Arc<str>, device: Option<&str>) -> Vec<Arc<str>> {
        let mut candidates: Vec<Arc<str>> = Vec::new();
        if let Some(home) = device.and_then(|d| self.homes.device(d)) {
            candidates.push(home);
        }
        if let Some(Location::Cluster(id)) = self.caches.location(Scope::All, name) {
            candidates.push(id);
        }
        for cluster in &self.enabled {
            if !candidates.contains(&cluster.id) {
                candidates.push(cluster.id.clone());
            }
        }
        candidates
    }

    /// Stale-if-error: the clusters that would answer `name` said `failed`
    /// (busy or unreachable); the best cached copy confirmed within
    /// `cache.max_stale` is served instead, logged and counted.
    pub(super) async fn stale_if_error(
        &self,
        name: &Arc<str>,
        device: Option<&str>,
        failed: Verdict<Served>,
    ) -> Verdict<Served> {
        for id in self.candidates(name, device) {
            let Some(cached) = self
                .caches
                .content_tiered(&id, name, device.is_some())
                .await
            else {
                continue;
            };
            let entry = cached.any();
            if self.caches.within_max_stale(&entry) {
                return self.serve_stale(id, name, entry, &failed);
            }
        }
        failed
    }

    pub(super) fn serve_stale(
        &self,
        id: Arc<str>,
        name: &Arc<str>,
        entry: ContentEntry,
        failed: &Verdict<Served>,
    ) -> Verdict<Served> {
        info!(name = %name, cluster = %id, answer = ?failed,
            age = %humantime::format_duration(Duration::from_secs(entry.age().as_secs())),
            "clusters cannot answer: serving the last good copy (stale-if-error)");
        self.metrics.stale_served.inc();
        self.count(CacheKind::Content, true);
        Verdict::Found(Served::from_cluster(id, entry.body, true))
    }
}
