//! Building a resolver, and rebuilding it for a reloaded configuration
//! while keeping what was learned, as far as it still holds.

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::source::local::LocalRoot;
use crate::source::upstream::Upstream;
use crate::via::ViaId;

use super::cache::{CacheSettings, Caches};
use super::health::ClusterState;
use super::hold::HoldPolicy;
use super::home::Homes;
use super::singleflight::SingleFlight;
use super::{Inner, Resolver, ResolverError};

impl Resolver {
    /// A resolver for a reloaded configuration that keeps what `previous`
    /// learned, as far as it still holds:
    ///
    /// - a cluster is identified by its `id` (its addresses are replicas and
    ///   may change);
    /// - content and per-cluster location entries of clusters that are still
    ///   configured and enabled are kept, those of the others dropped;
    /// - a cross-cluster location "found on X" is kept when X is still
    ///   enabled and the clusters before it are unchanged (X still wins);
    ///   "nowhere" is kept when no cluster was added;
    /// - home entries pointing to clusters still enabled are kept;
    /// - the caches start empty if `[cache]` sizes or lifetimes changed, the
    ///   home tables if `cache.max_homes` changed;
    /// - each address's last status and hold-down are kept (same cluster id
    ///   and URL).
    ///
    /// Metrics are those of `previous`. Fetches in flight finish on the old
    /// resolver.
    pub fn reconfigure(config: &Config, previous: &Resolver) -> Result<Resolver, ResolverError> {
        let old = &previous.inner;
        let enabled_ids: Vec<Arc<str>> = config
            .clusters
            .iter()
            .filter(|c| c.enabled)
            .map(|c| Arc::from(c.id.as_str()))
            .collect();
        let old_enabled: Vec<Arc<str>> = old.enabled.iter().map(|c| c.id.clone()).collect();
        let settings = CacheSettings::from(&config.cache);
        let caches = if *old.caches.settings() == settings {
            old.caches.retain_clusters(&old_enabled, &enabled_ids);
            old.caches.clone()
        } else {
            // The same directory keeps its store (its index, its writes in
            // progress): the memory tier starts empty, the disk stays warm.
            let disk = old
                .caches
                .disk()
                .filter(|_| {
                    let was = old.caches.settings();
                    (&was.dir, was.disk_max_bytes) == (&settings.dir, settings.disk_max_bytes)
                })
                .cloned();
            Arc::new(Caches::with_disk(settings, disk))
        };
        let homes = if old.homes.max_homes() == config.cache.max_homes {
            old.homes.retain_clusters(&enabled_ids);
            old.homes.clone()
        } else {
            Arc::new(Homes::new(config.cache.max_homes))
        };
        let resolver = Resolver::build(config, old.metrics.clone(), caches, homes, &old.clusters)?;
        resolver.inner.update_gauges();
        Ok(resolver)
    }

    pub(super) fn build(
        config: &Config,
        metrics: Arc<Metrics>,
        caches: Arc<Caches>,
        homes: Arc<Homes>,
        previous: &[Arc<ClusterState>],
    ) -> Result<Resolver, ResolverError> {
        let local = match &config.tftp.root {
            Some(path) => Some(LocalRoot::new(path).map_err(|source| ResolverError::Root {
                path: path.display().to_string(),
                source,
            })?),
            None => None,
        };
        let via_id = ViaId::configured_or_host(config.via_id());
        // The budget of bodies in flight counts on the daemon's one gauge,
        // so it holds across reloads.
        let upstream = Upstream::new(&config.remote, config.cache.max_file_size)?
            .with_via_id(&via_id)
            .with_inflight_gauge(metrics.upstream_inflight_bytes.clone());
        let policy = HoldPolicy::new(&config.remote);
        let clusters: Vec<Arc<ClusterState>> = config
            .clusters
            .iter()
            .map(|c| {
                let old = previous.iter().find(|p| *p.id == *c.id).map(|o| &**o);
                let state = ClusterState::new(c, policy, old);
                state.publish_gauges(&metrics, old);
                Arc::new(state)
            })
            .collect();
        for gone in previous
            .iter()
            .filter(|p| !config.clusters.iter().any(|c| *c.id == *p.id))
        {
            gone.unpublish_gauges(&metrics);
        }
        let enabled = clusters
            .iter()
            .filter(|c| c.config.enabled)
            .cloned()
            .collect();
        Ok(Resolver {
            local,
            inner: Arc::new(Inner {
                upstream,
                remote: config.remote.clone(),
                clusters,
                enabled,
                caches,
                homes,
                flights: SingleFlight::new(),
                metrics,
                via_id,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::body::Blob;
    use crate::config::ClusterConfig;
    use crate::resolve::cache::{Location, Scope};

    fn config_with(clusters: &[(&str, bool)]) -> Config {
        Config {
            clusters: clusters
                .iter()
                .map(|(id, enabled)| ClusterConfig {
                    id: id.to_string(),
                    description: String::new(),
                    fqdn: String::new(),
                    enabled: *enabled,
                    addresses: vec![format!("http://{id}.invalid:6970")],
                })
                .collect(),
            ..Config::default()
        }
    }

    #[test]
    fn purge_and_status_without_traffic() {
        let resolver =
            Resolver::new(&config_with(&[("a", true), ("b", false)]), Arc::default()).unwrap();
        let caches = &resolver.inner.caches;
        let a: Arc<str> = Arc::from("a");
        let name: Arc<str> = Arc::from("SEP001122334455.cnf.xml");
        caches.put_content(&a, &name, Blob::from(b"x".as_slice()));
        caches.set_location(Scope::All, &name, Location::Cluster(a.clone()));
        caches.run_pending_tasks();
        assert_eq!(resolver.purge(Some("/sep001122334455.CNF.xml")), 2);
        assert_eq!(resolver.purge(None), 0);

        let status = resolver.cluster_status();
        assert_eq!(status.len(), 2);
        assert_eq!(status[0].id, "a");
        assert!(status[0].enabled && status[0].up);
        assert!(!status[1].enabled);
        assert_eq!(status[0].addresses[0].base_url, "http://a.invalid:6970");
        assert_eq!(status[0].addresses[0].last_outcome, None);
    }

    #[test]
    fn reconfigure_keeps_what_still_holds() {
        let old = Resolver::new(&config_with(&[("a", true), ("b", true)]), Arc::default()).unwrap();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let n1: Arc<str> = Arc::from("n1");
        let caches = &old.inner.caches;
        caches.put_content(&a, &n1, Blob::from(b"a".as_slice()));
        caches.put_content(&b, &n1, Blob::from(b"b".as_slice()));
        caches.set_location(Scope::All, &n1, Location::Cluster(a.clone()));
        old.inner.homes.learn("SEP1", None, &a);
        old.inner.homes.learn("SEP2", None, &b);

        // Same clusters, same order: everything kept.
        let same = Resolver::reconfigure(&config_with(&[("a", true), ("b", true)]), &old).unwrap();
        assert!(Arc::ptr_eq(&same.inner.caches, &old.inner.caches));
        assert!(same.inner.caches.location(Scope::All, &n1).is_some());

        // b disabled: its content and homes go; a still comes first.
        let fewer =
            Resolver::reconfigure(&config_with(&[("a", true), ("b", false)]), &same).unwrap();
        let c = &fewer.inner.caches;
        assert!(c.content(&a, &n1, false).is_some());
        assert!(c.content(&b, &n1, false).is_none());
        assert!(c.location(Scope::All, &n1).is_some());
        assert_eq!(fewer.home_of_device("SEP1").as_deref(), Some("a"));
        assert_eq!(fewer.home_of_device("SEP2"), None);

        // Other cache settings: fresh caches.
        let mut other = config_with(&[("a", true)]);
        other.cache.ttl = Duration::from_secs(1);
        let fresh = Resolver::reconfigure(&other, &fewer).unwrap();
        assert!(!Arc::ptr_eq(&fresh.inner.caches, &fewer.inner.caches));
        assert_eq!(fresh.home_of_device("SEP1").as_deref(), Some("a"));
    }
}
