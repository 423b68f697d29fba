//! What the running resolver has learned about one name and one client, for
//! `tftproxy locate --admin` (`GET /locate` on the admin front): the
//! homes, the location table's entry, each cluster's cached copy or
//! remembered "not found", and the order stale-if-error would try.
//!
//! Read-only as far as a phone can tell: no cluster is asked, no home or
//! location is learned, no cache hit or miss is counted. A copy that is only
//! on disk is read (and verified) like a phone's lookup would, which puts
//! it back in memory.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::name::{self, NameError};

use super::cache::{Location, Scope};
use super::fetch::Plan;
use super::Resolver;

/// The resolver's tables for one name and client.
#[derive(Clone, Debug)]
pub struct Learned {
    /// The device the name belongs to (`SEP…`), if any.
    pub device: Option<String>,
    /// That device's learned home cluster.
    pub device_home: Option<String>,
    /// The client address's learned home cluster (`None` without a client).
    pub client_home: Option<String>,
    /// Step 2: the cluster a phone at the client asks first (its home, for a
    /// cluster-specific name with `remote.prefer_home_cluster`, if enabled).
    pub asked_first: Option<String>,
    /// Step 4's choice from the home and location tables.
    pub plan: LearnedPlan,
    /// Every configured cluster's cached copy of the name, or remembered
    /// "not found", in priority order.
    pub clusters: Vec<ClusterCache>,
    /// Stale-if-error's order (the device's home, the name's location, then
    /// every enabled cluster).
    pub stale_order: Vec<String>,
    /// `cache.max_stale`.
    pub max_stale: Duration,
}

/// Where step 4 goes, from the tables alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LearnedPlan {
    /// The device's home, alone (a 404 there fans out).
    Home(String),
    /// The location table says: on no cluster (until `cache.negative_ttl`).
    Nowhere,
    /// The location table says: on this cluster (asked alone first).
    Located(String),
    /// Nothing known: every enabled cluster.
    Unknown,
}

/// What one cluster's caches hold for the name.
#[derive(Clone, Debug)]
pub struct ClusterCache {
    pub id: String,
    pub enabled: bool,
    /// A cached copy within `cache.max_stale`.
    pub copy: Option<CachedCopy>,
    /// This cluster, asked alone, said "not found" within `cache.negative_ttl`.
    pub not_found: bool,
}

/// A cached copy and how old it is.
#[derive(Clone, Debug)]
pub struct CachedCopy {
    pub size: u64,
    /// Since its cluster last confirmed it.
    pub age: Duration,
    /// Within its freshness (`cache.device_ttl` or `cache.ttl`): served
    /// without asking the cluster.
    pub fresh: bool,
}

impl Resolver {
    /// What this resolver has learned about `raw` (as a phone would ask
    /// it) and about phones at `client`; an unsafe name is an error.
    pub async fn learned(&self, raw: &str, client: Option<IpAddr>) -> Result<Learned, NameError> {
        let inner = &self.inner;
        let name: Arc<str> = Arc::from(name::normalise(raw)?);
        let class = name::classify(&name);
        let device = class.device.clone();
        let client_home = client.and_then(|c| inner.homes.client(c));
        let asked_first = client_home
            .as_ref()
            .filter(|_| class.cluster_specific && inner.remote.prefer_home_cluster)
            .and_then(|id| inner.enabled_cluster(id))
            .map(|c| c.id.to_string());
        let plan = match inner.plan(&name, device.as_deref()).0 {
            Plan::Home(home) => LearnedPlan::Home(home.id.to_string()),
            Plan::Nowhere => LearnedPlan::Nowhere,
            Plan::Located(cluster) => LearnedPlan::Located(cluster.id.to_string()),
            Plan::Unknown => LearnedPlan::Unknown,
        };
        let mut clusters = Vec::new();
        for cluster in &inner.clusters {
            let id = &cluster.id;
            let copy = inner
                .caches
                .content_tiered(id, &name, device.is_some())
                .await
                .map(|cached| {
                    let fresh = cached.is_fresh();
                    let entry = cached.any();
                    CachedCopy {
                        size: entry.body.len() as u64,
                        age: entry.age(),
                        fresh,
                    }
                });
            let not_found = matches!(
                inner.caches.location(Scope::Cluster(id.clone()), &name),
                Some(Location::Nowhere)
            );
            clusters.push(ClusterCache {
                id: id.to_string(),
                enabled: cluster.config.enabled,
                copy,
                not_found,
            });
        }
        Ok(Learned {
            device_home: device
                .as_deref()
                .and_then(|d| inner.homes.device(d))
                .map(|c| c.to_string()),
            device,
            client_home: client_home.map(|c| c.to_string()),
            asked_first,
            plan,
            clusters,
            stale_order: inner
                .candidates(&name, class.device.as_deref())
                .iter()
                .map(|c| c.to_string())
                .collect(),
            max_stale: inner.caches.settings().max_stale,
        })
    }
}
