//! The location and content caches (ARCHITECTURE.md, "Caches").
//!
//! - **location**: which cluster holds a name, or "nowhere". Two scopes share
//!   one table: [`Scope::All`] is the answer of the cross-cluster rule (the
//!   table Cisco keeps), [`Scope::Cluster`] what one cluster alone said when
//!   it was asked alone (home cluster first, device refresh), so a negative
//!   answer from a home cluster is not asked again for `negative_ttl`.
//!   Positive entries live `cache.ttl`, negative ones `cache.negative_ttl`;
//!   Busy and Unreachable are never stored.
//! - **content**: (cluster, name) → bytes, weighed by their size and evicted
//!   least-recently-used first under `cache.max_bytes`. A copy is *fresh*
//!   for `cache.device_ttl` (device files) or `cache.ttl` (others) after it
//!   was last confirmed; an older one, up to `cache.max_stale`, is what
//!   stale-if-error serves when its clusters cannot answer. With
//!   `cache.dir`, the disk (`super::store`) is the warm tier under this
//!   one: consulted on a memory miss (`warm`), written on every fetch.
//!
//! Both are `moka::sync` caches: a weigher, per-entry expiry and an LRU
//! policy are exactly what these tables need.

mod warm;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use moka::policy::{EvictionPolicy, Expiry};
use moka::sync::Cache;

use crate::body::Blob;
use crate::config::CacheConfig;
use crate::source::upstream::Validators;
use crate::sync::{read, write};

use super::store::DiskStore;

/// Which question a location entry answers.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(super) enum Scope {
    /// "Which cluster answers this name" (the cross-cluster rule).
    All,
    /// "Does this cluster have this name" (it was asked alone).
    Cluster(Arc<str>),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(super) struct LocationKey {
    pub scope: Scope,
    pub name: Arc<str>,
}

/// Where a name is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Location {
    Cluster(Arc<str>),
    Nowhere,
}

/// A cached file body and when a cluster last confirmed it (wall-clock
/// time, since it survives restarts in the persistent cache).
#[derive(Clone, Debug)]
pub(super) struct ContentEntry {
    pub body: Blob,
    pub fetched: SystemTime,
    /// What the cluster sent to identify this version (revalidation).
    pub validators: Validators,
}

impl ContentEntry {
    pub(super) fn age(&self) -> Duration {
        self.fetched.elapsed().unwrap_or_default()
    }
}

/// (cluster id, normalised name).
pub(super) type ContentKey = (Arc<str>, Arc<str>);

/// The per-entry lifetime of location entries.
struct LocationExpiry {
    positive: Duration,
    negative: Duration,
}

impl LocationExpiry {
    fn lifetime(&self, value: &Location) -> Duration {
        match value {
            Location::Cluster(_) => self.positive,
            Location::Nowhere => self.negative,
        }
    }
}

impl Expiry<LocationKey, Location> for LocationExpiry {
    fn expire_after_create(
        &self,
        _key: &LocationKey,
        value: &Location,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.lifetime(value))
    }

    fn expire_after_update(
        &self,
        _key: &LocationKey,
        value: &Location,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.lifetime(value))
    }
}

/// The settings a cache set was built with (a reload with other values
/// starts fresh caches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CacheSettings {
    pub max_bytes: u64,
    pub max_locations: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub device_ttl: Duration,
    pub max_stale: Duration,
    pub dir: Option<PathBuf>,
    pub disk_max_bytes: u64,
}

impl From<&CacheConfig> for CacheSettings {
    fn from(c: &CacheConfig) -> Self {
        CacheSettings {
            max_bytes: c.max_bytes,
            max_locations: c.max_locations,
            ttl: c.ttl,
            negative_ttl: c.negative_ttl,
            device_ttl: c.device_ttl,
            max_stale: c.max_stale,
            dir: c.dir.clone(),
            disk_max_bytes: c.disk_max_bytes,
        }
    }
}

/// The location and content caches of one daemon (shared across reloads
/// with compatible settings).
pub(super) struct Caches {
    settings: CacheSettings,
    location: Cache<LocationKey, Location>,
    content: Cache<ContentKey, ContentEntry>,
    /// The persistent tier (`cache.dir`), if any.
    disk: Option<Arc<DiskStore>>,
    /// Disk writes in progress (waited for at shutdown).
    writes: tokio_util::task::TaskTracker,
    /// Bumped by every purge. A fetch that began before a purge must not
    /// store what it brings back: it may be the very copy the operator
    /// purged. Writes hold it for reading, a purge for writing.
    generation: RwLock<u64>,
}

/// What the content cache holds for a key.
#[derive(Clone, Debug)]
pub(super) enum Cached {
    /// Within its freshness lifetime: serve it.
    Fresh(ContentEntry),
    /// Older than its freshness (`device_ttl` or `ttl`) but not than
    /// `max_stale`: ask its cluster again, serve this only if the clusters
    /// cannot answer.
    Stale(ContentEntry),
}

impl Cached {
    pub(super) fn is_fresh(&self) -> bool {
        matches!(self, Cached::Fresh(_))
    }

    /// The entry if it may be served without asking its cluster.
    pub(super) fn fresh(self) -> Option<ContentEntry> {
        match self {
            Cached::Fresh(entry) => Some(entry),
            Cached::Stale(_) => None,
        }
    }

    /// The entry, fresh or stale (what stale-if-error and cache-only
    /// answers may serve).
    pub(super) fn any(self) -> ContentEntry {
        match self {
            Cached::Fresh(entry) | Cached::Stale(entry) => entry,
        }
    }
}

impl Caches {
    pub(super) fn new(settings: CacheSettings) -> Caches {
        Caches::with_disk(settings, None)
    }

    /// [`Caches::new`], keeping `disk` (same directory) if given.
    pub(super) fn with_disk(settings: CacheSettings, disk: Option<Arc<DiskStore>>) -> Caches {
        let location = Cache::builder()
            // Bounded so a scan of random names cannot grow it forever
            // (`cache.max_locations`; an entry costs about 1 KiB, README
            // "Memory").
            .max_capacity(settings.max_locations)
            .expire_after(LocationExpiry {
                positive: settings.ttl,
                negative: settings.negative_ttl,
            })
            .build();
        let content = Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|key: &ContentKey, entry: &ContentEntry| {
                u32::try_from(entry_cost(key, entry)).unwrap_or(u32::MAX)
            })
            .eviction_policy(EvictionPolicy::lru())
            .time_to_live(
                settings
                    .ttl
                    .max(settings.device_ttl)
                    .max(settings.max_stale),
            )
            .build();
        let disk = disk.or_else(|| {
            let dir = settings.dir.as_ref()?;
            Some(DiskStore::open(dir, settings.disk_max_bytes))
        });
        Caches {
            settings,
            location,
            content,
            disk,
            writes: tokio_util::task::TaskTracker::new(),
            generation: RwLock::new(0),
        }
    }

    /// The purge generation now (see [`Caches::write_since`]).
    pub(super) fn generation(&self) -> u64 {
        *read(&self.generation)
    }

    /// Runs `write` unless a purge happened since `generation` was read;
    /// a purge waits for a write in progress. Returns whether it ran.
    pub(super) fn write_since(&self, generation: u64, change: impl FnOnce(&Caches)) -> bool {
        let current = read(&self.generation);
        if *current != generation {
            return false;
        }
        change(self);
        true
    }

    pub(super) fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    // ---- location ------------------------------------------------------------

    pub(super) fn location(&self, scope: Scope, name: &Arc<str>) -> Option<Location> {
        self.location.get(&LocationKey {
            scope,
            name: name.clone(),
        })
    }

    pub(super) fn set_location(&self, scope: Scope, name: &Arc<str>, location: Location) {
        self.location.insert(
            LocationKey {
                scope,
                name: name.clone(),
            },
            location,
        );
    }

    /// Every "found on X" answer of the cross-cluster rule (the table
    /// snapshot).
    pub(super) fn found_locations(&self) -> Vec<(Arc<str>, Arc<str>)> {
        self.location
            .iter()
            .filter_map(|(key, value)| match (&key.scope, value) {
                (Scope::All, Location::Cluster(id)) => Some((key.name.clone(), id)),
                _ => None,
            })
            .collect()
    }

    pub(super) fn forget_location(&self, scope: Scope, name: &Arc<str>) {
        self.location.invalidate(&LocationKey {
            scope,
            name: name.clone(),
        });
    }

    // ---- content -------------------------------------------------------------

    /// The body of `name` from `cluster` in memory, fresh or stale (see
    /// `warm` for the disk). `device` says whether `name` is a device file
    /// (fresh `device_ttl`, others `ttl`).
    pub(super) fn content(
        &self,
        cluster: &Arc<str>,
        name: &Arc<str>,
        device: bool,
    ) -> Option<Cached> {
        let entry = self.content.get(&(cluster.clone(), name.clone()))?;
        self.classify(entry, device)
    }

    fn classify(&self, entry: ContentEntry, device: bool) -> Option<Cached> {
        let s = &self.settings;
        let fresh_for = if device { s.device_ttl } else { s.ttl };
        let age = entry.age();
        if age < fresh_for {
            Some(Cached::Fresh(entry))
        } else if age <= s.max_stale {
            Some(Cached::Stale(entry))
        } else {
            None
        }
    }

    /// Whether a stale copy may still be served when its clusters cannot
    /// answer (`cache.max_stale` after its last confirmation).
    pub(super) fn within_max_stale(&self, entry: &ContentEntry) -> bool {
        entry.age() <= self.settings.max_stale
    }

    /// Whether a lookup from another proxy (answered from the caches only)
    /// may get this copy: no older than the memory lifetime it had before
    /// stale-if-error stretched it.
    pub(super) fn cache_only_servable(&self, entry: &ContentEntry) -> bool {
        entry.age() < self.settings.ttl.max(self.settings.device_ttl)
    }

    #[cfg(test)]
    pub(super) fn put_content(&self, cluster: &Arc<str>, name: &Arc<str>, body: Blob) {
        self.put_fetched(cluster, name, body, Validators::default());
    }

    /// Stores what a cluster just sent (memory, and disk in the background).
    pub(super) fn put_fetched(
        &self,
        cluster: &Arc<str>,
        name: &Arc<str>,
        body: Blob,
        validators: Validators,
    ) {
        let entry = ContentEntry {
            body,
            fetched: SystemTime::now(),
            validators,
        };
        self.persist(cluster, name, &entry);
        self.content.insert((cluster.clone(), name.clone()), entry);
    }

    /// A cluster said the copy held is current (304): it is fresh again,
    /// and its confirmation time on disk moves, not its body.
    pub(super) fn confirm(&self, cluster: &Arc<str>, name: &Arc<str>, held: &ContentEntry) {
        let entry = ContentEntry {
            fetched: SystemTime::now(),
            ..held.clone()
        };
        self.reconfirm_on_disk(cluster, name, entry.fetched);
        self.content.insert((cluster.clone(), name.clone()), entry);
    }

    pub(super) fn forget_content(&self, cluster: &Arc<str>, name: &Arc<str>) {
        self.content.invalidate(&(cluster.clone(), name.clone()));
        self.unpersist(cluster, name);
    }

    // ---- maintenance -----------------------------------------------------------

    /// Drops every entry about `name` (compared without regard to case), in
    /// both caches; `None` drops everything. Returns how many entries went.
    pub(super) fn purge(&self, name: Option<&str>) -> usize {
        // Bumped, then released before the scan: writes already in progress
        // finished before the bump (the write lock waits for them), later
        // ones carry the old number and are refused; resolves do not wait
        // for the scan.
        *write(&self.generation) += 1;
        if let Some(disk) = &self.disk {
            disk.purge(name);
        }
        let mut dropped = 0;
        for (key, _) in self.location.iter() {
            if purged(name, &key.name) {
                self.location.invalidate(&*key);
                dropped += 1;
            }
        }
        for (key, _) in self.content.iter() {
            if purged(name, &key.1) {
                self.content.invalidate(&*key);
                dropped += 1;
            }
        }
        if name.is_none() {
            self.location.invalidate_all();
            self.content.invalidate_all();
        }
        self.run_pending_tasks();
        dropped
    }

    /// Keeps only what still holds after the enabled clusters changed from
    /// `old` to `new` (ids in priority order):
    ///
    /// - content and per-cluster locations of clusters still in `new`;
    /// - "found on X" when X is still enabled and the clusters before it are
    ///   the same, in the same order (X is still the highest-priority Found);
    /// - "nowhere" when no cluster was added (every cluster said 404).
    pub(super) fn retain_clusters(&self, old: &[Arc<str>], new: &[Arc<str>]) {
        let kept = |id: &Arc<str>| new.contains(id);
        let before = |list: &[Arc<str>], id: &Arc<str>| -> Option<usize> {
            list.iter().position(|k| k == id)
        };
        let same_prefix = |id: &Arc<str>| match (before(old, id), before(new, id)) {
            (Some(i), Some(j)) => old[..i] == new[..j],
            _ => false,
        };
        let nothing_added = new.iter().all(|id| old.contains(id));
        for (key, value) in self.location.iter() {
            let keep_entry = match (&key.scope, &value) {
                (Scope::All, Location::Cluster(id)) => same_prefix(id),
                (Scope::All, Location::Nowhere) => nothing_added,
                (Scope::Cluster(id), _) => kept(id),
            };
            if !keep_entry {
                self.location.invalidate(&*key);
            }
        }
        for (key, _) in self.content.iter() {
            if !kept(&key.0) {
                self.content.invalidate(&*key);
            }
        }
        if let Some(disk) = &self.disk {
            disk.retain_clusters(new);
        }
        self.run_pending_tasks();
    }

    pub(super) fn run_pending_tasks(&self) {
        self.location.run_pending_tasks();
        self.content.run_pending_tasks();
    }

    pub(super) fn location_entries(&self) -> u64 {
        self.location.entry_count()
    }

    pub(super) fn content_entries(&self) -> u64 {
        self.content.entry_count()
    }

    pub(super) fn content_bytes(&self) -> u64 {
        self.content.weighted_size()
    }
}

/// What a content entry holds in memory beyond its body, key and validator
/// strings: moka's per-entry bookkeeping (its hash table slot, the access
/// order and expiry nodes, the `Arc`s around key and value), the
/// allocations' headers, and the `Arc<str>` pair of the key. Measured, not
/// guessed: `measure_entry_cost` in `cache/tests.rs` inserts 200,000 entries
/// and reads the resident memory (README, "Memory", has the command).
pub(super) const ENTRY_OVERHEAD: usize = 640;

/// What one content entry weighs against `cache.max_bytes`: what it really
/// costs in memory, so a flood of tiny files is bounded like a few large
/// ones (counting the bodies alone, 42,500 tiny files showed 1.4 MB while
/// the process grew by 147 MB).
fn entry_cost(key: &ContentKey, entry: &ContentEntry) -> usize {
    let validators = &entry.validators;
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    ENTRY_OVERHEAD
        + entry.body.len()
        + key.0.len()
        + key.1.len()
        + text(&validators.etag)
        + text(&validators.last_modified)
}

/// Whether `purge(name)` drops an entry about `entry_name`.
fn purged(name: Option<&str>, entry_name: &str) -> bool {
    match name {
        Some(name) => entry_name.eq_ignore_ascii_case(name),
        None => true,
    }
}

#[cfg(test)]
mod tests;
