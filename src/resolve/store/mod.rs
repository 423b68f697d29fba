//! The persistent cache (`[cache] dir`): the warm tier under the memory
//! caches of `super::cache`, and the snapshot of the location and home
//! tables.
//!
//! Plain files, because each entry is written once and read whole, and a
//! file written to a temporary name, fsync'd, renamed and its directory
//! fsync'd is either absent or complete after a power cut; a database would
//! add a dependency and a recovery procedure for no gain. Layout:
//!
//! - `entries/<56 hex digits>`: one cached file ([`entry`] format), named by
//!   a hash of its cluster (16 digits) and of its name in lower case (40
//!   digits), so a purge by name finds it without reading anything;
//! - `entries/*.<instance>-<n>.tmp`: a write in progress, or one a crash
//!   interrupted; the start-up scan deletes the ones another instance (an
//!   earlier run) left, never this one's, whose writes run alongside it;
//! - `tables.json`: the location and home tables (`super::tables`).
//!
//! Every entry is verified (length and SHA-256) when read; a bad one is
//! deleted. Space is bounded by `disk_max_bytes`, least recently used
//! first, from an in-memory index (size and last use of each file) built
//! at start from one directory scan in a background thread: reads go by
//! name and need no index. Any write error (read-only, full disk) turns
//! writing off with one warning; the daemon goes on from memory.
//!
//! One daemon owns a directory (its start deletes every `*.tmp`).
//! Everything here is blocking I/O: callers run it on the blocking pool.

pub(super) mod entry;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::sync::lock;

use entry::{unix_ms, Meta};

const TABLES: &str = "tables.json";
const NAME_LEN: usize = 56;

/// The cache directory of one daemon.
pub(in crate::resolve) struct DiskStore {
    dir: PathBuf,
    entries: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    writable: AtomicBool,
    /// Tags this run's temporary files, so that the start-up scan running
    /// alongside the first writes deletes only what earlier runs left.
    instance: String,
    temp_counter: AtomicU64,
    /// Bumped by every purge; a write that began before it is dropped.
    /// Held while a finished write is renamed into place and indexed, so a
    /// purge cannot miss it.
    generation: Mutex<u64>,
}

/// Size and last use of each entry file (by file name).
#[derive(Default)]
struct Index {
    files: HashMap<String, (u64, u64)>,
    by_use: BTreeSet<(u64, String)>,
    bytes: u64,
    /// The start-up scan is done: a name absent here is not on disk.
    complete: bool,
    /// Files removed before the scan was done: the scan may have listed
    /// them already, and must not index what is gone.
    removed_while_scanning: HashSet<String>,
    last_tick: u64,
}

impl Index {
    fn tick(&mut self) -> u64 {
        self.last_tick = unix_ms(SystemTime::now()).max(self.last_tick + 1);
        self.last_tick
    }

    fn insert(&mut self, file: String, size: u64, used: u64) {
        self.forget(&file);
        self.bytes += size;
        self.by_use.insert((used, file.clone()));
        self.files.insert(file, (size, used));
    }

    /// Drops `file`, which is being deleted from the disk.
    fn remove(&mut self, file: &str) -> bool {
        if !self.complete {
            self.removed_while_scanning.insert(file.to_owned());
        }
        self.forget(file)
    }

    fn forget(&mut self, file: &str) -> bool {
        match self.files.remove(file) {
            Some((size, used)) => {
                self.bytes -= size;
                self.by_use.remove(&(used, file.to_owned()));
                true
            }
            None => false,
        }
    }

    fn touch(&mut self, file: &str) {
        if let Some(&(size, _)) = self.files.get(file) {
            let now = self.tick();
            self.insert(file.to_owned(), size, now);
        }
    }
}

impl DiskStore {
    /// Opens (creating it, 0700) the cache directory and starts the index
    /// scan. Never fails: a directory that cannot be created or written is
    /// warned about once and the store only reads what it can.
    pub(in crate::resolve) fn open(dir: &Path, max_bytes: u64) -> Arc<DiskStore> {
        let store = DiskStore::open_unscanned(dir, max_bytes);
        let scanner = store.clone();
        let spawned = std::thread::Builder::new()
            .name("tftproxy-cache-scan".into())
            .spawn(move || scanner.scan());
        if let Err(error) = spawned {
            warn!(%error, "cannot start the cache directory scan: no eviction until restart");
        }
        store
    }

    /// [`DiskStore::open`] without the scan (tests run it themselves).
    fn open_unscanned(dir: &Path, max_bytes: u64) -> Arc<DiskStore> {
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let store = Arc::new(DiskStore {
            dir: dir.to_path_buf(),
            entries: dir.join("entries"),
            max_bytes,
            index: Mutex::default(),
            writable: AtomicBool::new(true),
            instance: format!("{:x}{:x}", std::process::id(), since_epoch.as_nanos()),
            temp_counter: AtomicU64::new(0),
            generation: Mutex::new(0),
        });
        let ready = DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&store.entries)
            .and_then(|()| store.probe());
        if let Err(error) = ready {
            store.degrade(&error);
        }
        store
    }

    /// A name for a temporary file of this run, `<stem>.<instance>-<n>.tmp`.
    fn temp_name(&self, stem: &str) -> String {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        format!("{stem}.{}-{n}.tmp", self.instance)
    }

    /// Whether `name` is a temporary file an earlier run left.
    fn is_leftover_temp(&self, name: &str) -> bool {
        name.ends_with(".tmp") && !name.contains(&format!(".{}-", self.instance))
    }

    /// Whether entries are still written (false after a write error).
    pub(in crate::resolve) fn writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    /// The purge generation now (see [`DiskStore::write`]).
    pub(in crate::resolve) fn generation(&self) -> u64 {
        *lock(&self.generation)
    }

    /// Whether an entry for `name` from `cluster` may exist (the index says
    /// no only once the start-up scan is done).
    pub(in crate::resolve) fn may_hold(&self, cluster: &str, name: &str) -> bool {
        let index = lock(&self.index);
        !index.complete || index.files.contains_key(&file_name(cluster, name))
    }

    /// Bytes of the entry files known to the index.
    pub(in crate::resolve) fn bytes(&self) -> u64 {
        lock(&self.index).bytes
    }

    /// The verified entry of `name` from `cluster`, if any. A damaged entry
    /// is deleted.
    pub(in crate::resolve) fn read(&self, cluster: &str, name: &str) -> Option<(Meta, Bytes)> {
        let file = file_name(cluster, name);
        {
            let index = lock(&self.index);
            if index.complete && !index.files.contains_key(&file) {
                return None;
            }
        }
        let path = self.entries.join(&file);
        let bytes = match read_file(&path) {
            Ok(bytes) => bytes,
            Err(error) => {
                if error.kind() != io::ErrorKind::NotFound {
                    warn!(path = %path.display(), %error, "cannot read a cache entry");
                }
                lock(&self.index).remove(&file);
                return None;
            }
        };
        match entry::decode(bytes) {
            Ok((meta, body)) if meta.cluster == cluster && meta.name == name => {
                lock(&self.index).touch(&file);
                Some((meta, body))
            }
            // Another name with the same lower-case spelling: not corrupt.
            Ok(_) => None,
            Err(why) => {
                warn!(path = %path.display(), %why, "damaged cache entry deleted; the file will be fetched again");
                let _ = fs::remove_file(&path);
                lock(&self.index).remove(&file);
                None
            }
        }
    }

    /// Writes `body` as the entry of `meta` (atomically), then evicts the
    /// least recently used entries over `disk_max_bytes`. Nothing is written
    /// if a purge happened since `generation` was read.
    pub(in crate::resolve) fn write(&self, meta: &Meta, body: &[u8], generation: u64) {
        if !self.writable() {
            return;
        }
        let file = file_name(&meta.cluster, &meta.name);
        let header = entry::encode_header(meta, body);
        let size = (header.len() + body.len()) as u64;
        if size > self.max_bytes {
            return;
        }
        let temp = self.temp_name(&file);
        let temp_path = self.entries.join(&temp);
        if let Err(error) = write_temp(&temp_path, &[&header, body]) {
            self.degrade(&error);
            return;
        }
        {
            let current = lock(&self.generation);
            if *current != generation {
                let _ = fs::remove_file(&temp_path);
                return;
            }
            if let Err(error) = fs::rename(&temp_path, self.entries.join(&file)) {
                let _ = fs::remove_file(&temp_path);
                drop(current);
                self.degrade(&error);
                return;
            }
            let mut index = lock(&self.index);
            let now = index.tick();
            index.insert(file, size, now);
        }
        if let Err(error) = File::open(&self.entries).and_then(|d| d.sync_all()) {
            self.degrade(&error);
        }
        self.evict_over_limit();
    }

    /// Removes least recently used entries until the directory is within
    /// `disk_max_bytes`.
    fn evict_over_limit(&self) {
        let victims = {
            let mut index = lock(&self.index);
            let mut victims = Vec::new();
            while index.bytes > self.max_bytes {
                let Some((_, oldest)) = index.by_use.first().cloned() else {
                    break;
                };
                index.remove(&oldest);
                victims.push(oldest);
            }
            victims
        };
        for victim in victims {
            debug!(file = %victim, "cache directory full: evicting the least recently used entry");
            let _ = fs::remove_file(self.entries.join(victim));
        }
    }

    /// Sets the confirmation time of the entry of `name` from `cluster` (a
    /// 304), in place: the body is not rewritten.
    pub(in crate::resolve) fn confirm(&self, cluster: &str, name: &str, at: SystemTime) {
        let path = self.entries.join(file_name(cluster, name));
        let result = (|| -> io::Result<()> {
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let mut prefix = [0u8; 14];
            file.read_exact_at(&mut prefix, 0)?;
            let mut head = vec![0u8; entry::head_len(&prefix)];
            file.read_exact_at(&mut head, 0)?;
            let Ok(offset) = entry::confirmed_offset(&head, cluster, name) else {
                return Ok(());
            };
            file.write_all_at(&unix_ms(at).to_le_bytes(), offset as u64)?;
            let _ = file.set_modified(SystemTime::now());
            Ok(())
        })();
        match result {
            Ok(()) => lock(&self.index).touch(&file_name(cluster, name)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => self.degrade(&error),
        }
    }

    /// Deletes the entry of `name` from `cluster`.
    pub(in crate::resolve) fn remove(&self, cluster: &str, name: &str) {
        let file = file_name(cluster, name);
        lock(&self.index).remove(&file);
        let _ = fs::remove_file(self.entries.join(file));
    }

    /// Deletes every entry of `name` (any cluster, any case), or every entry.
    pub(in crate::resolve) fn purge(&self, name: Option<&str>) {
        *lock(&self.generation) += 1;
        let suffix = name.map(name_hash);
        self.remove_where(|file| suffix.as_ref().is_none_or(|s| file.ends_with(s.as_str())));
    }

    /// Deletes the entries of clusters not in `keep`.
    pub(in crate::resolve) fn retain_clusters(&self, keep: &[Arc<str>]) {
        let kept: Vec<String> = keep.iter().map(|c| cluster_hash(c)).collect();
        self.remove_where(|file| !kept.iter().any(|k| file.starts_with(k.as_str())));
    }

    fn remove_where(&self, doomed: impl Fn(&str) -> bool) {
        let files: Vec<String> = {
            let mut index = lock(&self.index);
            let mut files: Vec<String> =
                index.files.keys().filter(|f| doomed(f)).cloned().collect();
            if !index.complete {
                // The scan has not indexed everything yet: what is only on
                // disk goes too.
                files.extend(self.entry_names().filter(|f| doomed(f)));
                files.sort_unstable();
                files.dedup();
            }
            for file in &files {
                index.remove(file);
            }
            files
        };
        for file in files {
            let _ = fs::remove_file(self.entries.join(file));
        }
    }

    /// The entry file names in the directory now.
    fn entry_names(&self) -> impl Iterator<Item = String> {
        fs::read_dir(&self.entries)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|item| item.file_name().into_string().ok())
            .filter(|name| is_entry_name(name))
    }

    /// The table snapshot, if one was written.
    pub(in crate::resolve) fn read_tables(&self) -> Option<Bytes> {
        read_file(&self.dir.join(TABLES)).ok()
    }

    /// Replaces the table snapshot (atomically).
    pub(in crate::resolve) fn write_tables(&self, snapshot: &[u8]) {
        if !self.writable() {
            return;
        }
        let temp = self.temp_name(TABLES);
        if let Err(error) = write_atomic(&self.dir, &temp, TABLES, &[snapshot]) {
            self.degrade(&error);
        }
    }

    /// Stops writing, with one warning.
    fn degrade(&self, error: &io::Error) {
        if self.writable.swap(false, Ordering::Relaxed) {
            warn!(dir = %self.dir.display(), %error,
                "the cache directory cannot be written: going on with the memory cache only");
        }
    }

    /// Fails if a file cannot be created in the directory (read-only, full).
    fn probe(&self) -> io::Result<()> {
        let path = self.entries.join(self.temp_name("probe"));
        write_temp(&path, &[b"probe"])?;
        fs::remove_file(path)
    }

    /// The start-up scan: deletes what interrupted writes of earlier runs
    /// left, indexes the entries (last use: their modification time),
    /// evicts over the bound.
    fn scan(&self) {
        let (found, temps) = self.list();
        let count = found.len();
        self.index_listed(found);
        info!(dir = %self.dir.display(), entries = count, bytes = self.bytes(),
            interrupted_writes_removed = temps, "cache directory loaded");
        // A lowered disk_max_bytes: the oldest entries go now.
        self.evict_over_limit();
    }

    /// The entries on disk (name, size, last use) and how many leftover
    /// temporary files were deleted.
    fn list(&self) -> (Vec<(String, u64, u64)>, usize) {
        let mut temps = 0;
        let mut remove_leftover = |dir: &Path, name: &str| {
            if self.is_leftover_temp(name) && fs::remove_file(dir.join(name)).is_ok() {
                temps += 1;
            }
        };
        for item in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if let Some(name) = item.file_name().to_str() {
                if name.starts_with(TABLES) {
                    remove_leftover(&self.dir, name);
                }
            }
        }
        let mut found = Vec::new();
        for item in fs::read_dir(&self.entries).into_iter().flatten().flatten() {
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            remove_leftover(&self.entries, name);
            // Anything else that is not ours is left alone.
            if !is_entry_name(name) {
                continue;
            }
            let Ok(meta) = item.metadata() else { continue };
            if meta.is_file() {
                let used = meta.modified().map(unix_ms).unwrap_or(0);
                found.push((name.to_owned(), meta.len(), used));
            }
        }
        (found, temps)
    }

    /// Indexes what [`DiskStore::list`] found, but for what was written
    /// (already indexed) or removed since.
    fn index_listed(&self, found: Vec<(String, u64, u64)>) {
        let mut index = lock(&self.index);
        for (file, size, used) in found {
            if !index.files.contains_key(&file) && !index.removed_while_scanning.contains(&file) {
                index.insert(file, size, used);
            }
        }
        index.complete = true;
        index.removed_while_scanning = HashSet::new();
    }
}

/// Whether `name` is an entry file's (56 hex digits).
fn is_entry_name(name: &str) -> bool {
    name.len() == NAME_LEN && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex(bytes: &[u8], digits: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(digits + 1);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
        if out.len() >= digits {
            break;
        }
    }
    out.truncate(digits);
    out
}

fn cluster_hash(cluster: &str) -> String {
    hex(&Sha256::digest(cluster.as_bytes()), 16)
}

fn name_hash(name: &str) -> String {
    hex(&Sha256::digest(name.to_ascii_lowercase().as_bytes()), 40)
}

fn file_name(cluster: &str, name: &str) -> String {
    cluster_hash(cluster) + &name_hash(name)
}

fn read_file(path: &Path) -> io::Result<Bytes> {
    let mut file = File::open(path)?;
    let mut bytes = Vec::with_capacity(file.metadata()?.len() as usize);
    file.read_to_end(&mut bytes)?;
    // The modification time is the last use the next start-up scan sees.
    let _ = file.set_modified(SystemTime::now());
    Ok(Bytes::from(bytes))
}

/// Writes `parts` to `path` (0600) and fsyncs it; on error, removes it.
fn write_temp(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// Writes `parts` to `dir/temp`, fsyncs it, renames it to `dir/name` and
/// fsyncs the directory: after a crash, `name` is either the old file or
/// the new one, complete.
fn write_atomic(dir: &Path, temp: &str, name: &str, parts: &[&[u8]]) -> io::Result<()> {
    let temp_path = dir.join(temp);
    write_temp(&temp_path, parts)?;
    if let Err(error) = fs::rename(&temp_path, dir.join(name)) {
        let _ = fs::remove_file(&temp_path);
        return Err(error);
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
