//! One in-memory copy of each small local file, shared by every transfer
//! that serves it, instead of one copy per transfer (2,000 unacknowledged
//! requests for a 256 KiB file held 2,000 copies: 537 MB).
//!
//! Why share a copy rather than read every file in place: a copy costs one
//! `read` per version of the file and a `memcpy` per block, while reading in
//! place costs a `pread` system call per block (a boot storm sends the same
//! few files block by block to thousands of phones) and keeps a descriptor
//! open per transfer. Per open, sharing costs a lookup in a small map under
//! a mutex, after the `openat2` and `fstat` both ways need. What sharing
//! could cost in memory is bounded: the copies alive at once never exceed
//! [`COPIES_BUDGET`] in total; beyond it a file is read in place.
//!
//! A copy is keyed by the file's identity and version (device, inode,
//! size, modification and change times), so a file replaced (a new inode) or
//! rewritten (new times) while it is being served is a new copy for new
//! requests, and a transfer under way keeps the version it started with, as
//! it did when it held the open file. (A rewrite of the same size within one
//! tick of the file system's clock is indistinguishable by its metadata;
//! provisioning tools replace files by renaming, which is always seen.)

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use crate::body::Body;
use crate::sync::lock;

/// Bound on the bytes of all shared copies alive at once, in the whole
/// process (README, "Memory"). A boot storm of 2,000 phones each fetching
/// its own 16 KiB configuration needs 32 MiB.
pub(crate) const COPIES_BUDGET: u64 = 64 << 20;

/// Bytes of the shared copies alive now, against [`COPIES_BUDGET`]:
/// process-wide, since the budget bounds the process, however many roots
/// (one per configuration generation) hold copies.
static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);

/// One version of one file.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    fn of(meta: &Metadata) -> Version {
        Version {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A file's bytes, counted in [`LIVE_BYTES`] while alive.
#[derive(Debug)]
struct Copy(Box<[u8]>);

impl Drop for Copy {
    fn drop(&mut self) {
        LIVE_BYTES.fetch_sub(self.0.len() as u64, Ordering::Relaxed);
    }
}

/// What a [`Body`] holds: the copy stays alive as long as a transfer does.
struct Held(Arc<Copy>);

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &(self.0).0
    }
}

/// The copies alive, by version. Entries whose copy has gone are swept when
/// the map has doubled since the last sweep (amortised: no timer).
#[derive(Debug, Default)]
pub(super) struct SharedCopies {
    copies: Mutex<Copies>,
}

#[derive(Debug, Default)]
struct Copies {
    /// Looked up at every open of a small file: foldhash, not SipHash.
    by_version: HashMap<Version, Weak<Copy>, foldhash::fast::RandomState>,
    sweep_at: usize,
}

impl SharedCopies {
    /// The body of `file` (whose metadata is `meta`, at most a small file):
    /// the copy alive for its version, or a new one, or the file itself
    /// (read in place) when the copies alive fill [`COPIES_BUDGET`].
    pub(super) fn body(&self, file: File, meta: &Metadata) -> io::Result<Body> {
        let version = Version::of(meta);
        if let Some(copy) = lock(&self.copies)
            .by_version
            .get(&version)
            .and_then(Weak::upgrade)
        {
            return Ok(shared(copy));
        }
        let len = meta.size();
        let live = LIVE_BYTES.fetch_add(len, Ordering::Relaxed);
        if live.saturating_add(len) > COPIES_BUDGET {
            LIVE_BYTES.fetch_sub(len, Ordering::Relaxed);
            return Ok(Body::Disk {
                file: Arc::new(file),
                len,
            });
        }
        // Read outside the lock (a cold file waits for the disk), at most
        // the length reserved; a file that shrank since `fstat` is served
        // as read, as before, and gives back what it did not use.
        let read = read_up_to(&file, len as usize);
        let unused = match &read {
            Ok(bytes) => len - bytes.len() as u64,
            Err(_) => len,
        };
        LIVE_BYTES.fetch_sub(unused, Ordering::Relaxed);
        let bytes = read?;
        let copy = Arc::new(Copy(bytes.into_boxed_slice()));
        let mut copies = lock(&self.copies);
        // Another request may have read the same version meanwhile: keep
        // one copy.
        if let Some(first) = copies.by_version.get(&version).and_then(Weak::upgrade) {
            return Ok(shared(first));
        }
        copies.by_version.insert(version, Arc::downgrade(&copy));
        if copies.by_version.len() >= copies.sweep_at {
            copies.by_version.retain(|_, copy| copy.strong_count() > 0);
            copies.sweep_at = (copies.by_version.len() * 2).max(64);
        }
        Ok(shared(copy))
    }
}

/// Reads `file` from its start, up to `len` bytes: one `read` for a file
/// that has not changed since `fstat` (`read_to_end` reads in 8 KiB steps,
/// two calls for a 13 KB phone configuration).
fn read_up_to(file: &File, len: usize) -> io::Result<Vec<u8>> {
    use rustix::buffer::spare_capacity;
    use rustix::io::Errno;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        match rustix::io::read(file, spare_capacity(&mut bytes)) {
            Ok(0) => break,
            Ok(_) | Err(Errno::INTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    bytes.truncate(len);
    Ok(bytes)
}

fn shared(copy: Arc<Copy>) -> Body {
    Body::from(Bytes::from_owner(Held(copy)))
}

/// Bytes of shared copies alive in this process now.
#[cfg(test)]
pub(super) fn live_bytes() -> u64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, Write};

    use super::*;

    #[test]
    fn a_file_is_read_up_to_the_length_it_had_whatever_it_has_now() {
        let mut file = tempfile::tempfile().unwrap();
        let bytes: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        file.write_all(&bytes).unwrap();
        file.rewind().unwrap();
        assert_eq!(read_up_to(&file, 20_000).unwrap(), bytes, "all of it");
        file.rewind().unwrap();
        assert_eq!(
            read_up_to(&file, 13_000).unwrap(),
            bytes[..13_000],
            "grown since fstat: as long as it was"
        );
        file.rewind().unwrap();
        assert_eq!(
            read_up_to(&file, 30_000).unwrap(),
            bytes,
            "shrunk since fstat: what is there"
        );
    }
}
