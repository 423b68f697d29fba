//! The local root: files served from the machine itself, found whatever the
//! case of the name, and never outside the root (symlinks that leave it are
//! refused).
//!
//! The exact path is tried first (one `open`). When that misses, a lower-case
//! index of the tree answers names asked in another case; the index is
//! rebuilt on a miss at most once per [`INDEX_REFRESH`], so a file dropped
//! into the root is found within that time without a rescan per request
//! during a boot storm.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::body::Body;
use crate::sync::lock;

mod shared;

use shared::SharedCopies;

/// Minimum time between two rebuilds of the case-insensitive index.
pub const INDEX_REFRESH: Duration = Duration::from_secs(1);
/// Files up to this size are read whole, once per version, into a copy
/// shared by the transfers serving it (`shared`); larger ones (firmware)
/// are read in place.
const SMALL_FILE: u64 = 256 << 10;
/// Bound on the entries indexed (a root is a few thousand phone files).
const MAX_INDEXED: usize = 200_000;

/// Why a local file cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("'{0}' resolves outside the root")]
    OutsideRoot(String),
    #[error("'{0}' is not a regular file")]
    NotAFile(String),
    #[error("cannot read '{name}': {source}")]
    Io { name: String, source: io::Error },
}

/// A directory of files served as-is.
#[derive(Debug)]
pub struct LocalRoot {
    root: PathBuf,
    /// The root, opened once: names are resolved beneath it.
    root_fd: OwnedFd,
    index: Mutex<Index>,
    copies: SharedCopies,
}

/// What `openat2` made of a name.
enum Beneath {
    Opened(File),
    Missing,
    CheckRealPath,
    Failed(io::Error),
}

#[derive(Debug, Default)]
struct Index {
    built: Option<Instant>,
    /// Lower-case relative path → relative path as stored.
    names: HashMap<String, String>,
}

impl LocalRoot {
    /// Opens `root` (resolving it once, so later checks compare real paths).
    pub fn new(root: &Path) -> io::Result<LocalRoot> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a directory",
            ));
        }
        let root_fd = OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC).bits() as i32,
            )
            .open(&root)?
            .into();
        Ok(LocalRoot {
            root,
            root_fd,
            index: Mutex::new(Index::default()),
            copies: SharedCopies::default(),
        })
    }

    /// Opens a normalised name (see [`crate::name::normalise`]).
    /// `Ok(None)` means no such file.
    pub fn open(&self, name: &str) -> Result<Option<Body>, LocalError> {
        if let Some(body) = self.open_exact(name)? {
            return Ok(Some(body));
        }
        let Some(stored) = self.find_other_case(name) else {
            return Ok(None);
        };
        if let Some(body) = self.open_exact(&stored)? {
            return Ok(Some(body));
        }
        // Renamed or removed since the index was built: the index is known
        // to be wrong, so rebuild it now (once per stale entry).
        self.invalidate_index();
        let Some(stored) = self.find_other_case(name) else {
            return Ok(None);
        };
        let opened = self.open_exact(&stored)?;
        if opened.is_none() {
            // Listed but cannot be opened (a dangling symlink): forget it, or
            // every request for it would rebuild the index again.
            self.index().names.remove(&name.to_ascii_lowercase());
        }
        Ok(opened)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        lock(&self.index)
    }

    fn invalidate_index(&self) {
        let mut index = self.index();
        index.names.clear();
        index.built = None;
    }

    fn open_exact(&self, name: &str) -> Result<Option<Body>, LocalError> {
        let io_error = |source| LocalError::Io {
            name: name.to_owned(),
            source,
        };
        let file = match self.open_beneath(name) {
            Beneath::Opened(file) => file,
            Beneath::Missing => return Ok(None),
            Beneath::Failed(source) => return Err(io_error(source)),
            // An absolute symlink, or a kernel without openat2: decide by
            // the real path.
            Beneath::CheckRealPath => match self.open_checked(name)? {
                Some(file) => file,
                None => return Ok(None),
            },
        };
        let meta = file.metadata().map_err(io_error)?;
        if !meta.is_file() {
            return Err(LocalError::NotAFile(name.to_owned()));
        }
        if meta.len() <= SMALL_FILE {
            // Phone configurations and trust lists: one copy shared by every
            // transfer of this version of the file (see `shared`).
            return self.copies.body(file, &meta).map(Some).map_err(io_error);
        }
        Ok(Some(Body::Disk {
            file: Arc::new(file),
            len: meta.len(),
        }))
    }

    /// One `openat2(RESOLVE_BENEATH)`: the kernel resolves the name and
    /// refuses to leave the root, with no per-component `readlink`.
    fn open_beneath(&self, name: &str) -> Beneath {
        use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
        use rustix::io::Errno;
        if name.as_bytes().contains(&0) {
            return Beneath::Missing;
        }
        // O_NONBLOCK: a FIFO planted in the root must not hang the server.
        let opened = openat2(
            &self.root_fd,
            name,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        );
        match opened {
            Ok(fd) => Beneath::Opened(File::from(fd)),
            Err(Errno::NOENT | Errno::NOTDIR) => Beneath::Missing,
            Err(Errno::XDEV | Errno::NOSYS | Errno::PERM | Errno::TOOBIG) => Beneath::CheckRealPath,
            Err(errno) => Beneath::Failed(errno.into()),
        }
    }

    /// The portable path: resolve the real path, check it is inside the
    /// root, then open it without following a final symlink.
    fn open_checked(&self, name: &str) -> Result<Option<File>, LocalError> {
        let io_error = |source| LocalError::Io {
            name: name.to_owned(),
            source,
        };
        let real = match self.root.join(name).canonicalize() {
            Ok(real) => real,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(source) => return Err(io_error(source)),
        };
        if !real.starts_with(&self.root) {
            return Err(LocalError::OutsideRoot(name.to_owned()));
        }
        OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW).bits() as i32,
            )
            .open(&real)
            .map(Some)
            .map_err(io_error)
    }

    fn find_other_case(&self, name: &str) -> Option<String> {
        let wanted = name.to_ascii_lowercase();
        let mut index = self.index();
        if let Some(stored) = index.names.get(&wanted) {
            return Some(stored.clone());
        }
        if index.built.is_some_and(|at| at.elapsed() < INDEX_REFRESH) {
            return None;
        }
        index.names = build_index(&self.root);
        index.built = Some(Instant::now());
        index.names.get(&wanted).cloned()
    }
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn build_index(root: &Path) -> HashMap<String, String> {
    let mut names = HashMap::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if names.len() >= MAX_INDEXED {
                return names;
            }
            let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let relative = format!("{prefix}{file_name}");
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push((entry.path(), format!("{relative}/"))),
                Ok(_) => {}
                Err(_) => continue,
            }
            names
                .entry(relative.to_ascii_lowercase())
                .or_insert(relative);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, LocalRoot) {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let root = LocalRoot::new(dir.path()).unwrap();
        (dir, root)
    }

    fn read(body: Body) -> Vec<u8> {
        body.to_bytes().unwrap().to_vec()
    }

    #[test]
    fn names_are_found_in_any_case() {
        let (_dir, root) = root_with(&[
            ("SEP001122334455.cnf.xml", b"cfg"),
            ("Desktops/320x212x12/List.xml", b"l"),
        ]);
        assert_eq!(
            read(root.open("SEP001122334455.cnf.xml").unwrap().unwrap()),
            b"cfg"
        );
        assert_eq!(
            read(root.open("sep001122334455.CNF.XML").unwrap().unwrap()),
            b"cfg"
        );
        assert_eq!(
            read(root.open("desktops/320X212X12/list.xml").unwrap().unwrap()),
            b"l"
        );
        assert!(root.open("missing.xml").unwrap().is_none());
    }

    #[test]
    fn a_file_renamed_to_another_case_is_found_again() {
        let (dir, root) = root_with(&[("Foo.txt", b"v1")]);
        assert_eq!(read(root.open("foo.txt").unwrap().unwrap()), b"v1");
        std::fs::rename(dir.path().join("Foo.txt"), dir.path().join("FOO.TXT")).unwrap();
        assert_eq!(read(root.open("foo.txt").unwrap().unwrap()), b"v1");
        std::fs::remove_file(dir.path().join("FOO.TXT")).unwrap();
        assert!(root.open("foo.txt").unwrap().is_none());
    }

    #[test]
    fn a_dangling_symlink_does_not_rebuild_the_index_on_every_request() {
        let (dir, root) = root_with(&[("other.txt", b"x")]);
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("Dangle.txt")).unwrap();
        assert!(root.open("dangle.txt").unwrap().is_none());
        let built = root.index().built;
        assert!(built.is_some());
        for _ in 0..3 {
            assert!(root.open("dangle.txt").unwrap().is_none());
        }
        assert_eq!(root.index().built, built, "the index was rebuilt");
    }

    #[test]
    fn symlinks_leaving_the_root_are_refused() {
        let outside = tempfile::NamedTempFile::new().unwrap();
        let (dir, root) = root_with(&[("inside.txt", b"ok")]);
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("inside.txt"), dir.path().join("alias"))
            .unwrap();
        assert!(matches!(
            root.open("escape"),
            Err(LocalError::OutsideRoot(_))
        ));
        assert_eq!(read(root.open("alias").unwrap().unwrap()), b"ok");
    }

    #[test]
    fn relative_symlinks_stay_inside_or_are_refused() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir(base.path().join("root")).unwrap();
        std::fs::write(base.path().join("secret"), b"no").unwrap();
        std::fs::write(base.path().join("root/inside.txt"), b"ok").unwrap();
        std::os::unix::fs::symlink("inside.txt", base.path().join("root/rel")).unwrap();
        std::os::unix::fs::symlink("../secret", base.path().join("root/up")).unwrap();
        let root = LocalRoot::new(&base.path().join("root")).unwrap();
        assert_eq!(read(root.open("rel").unwrap().unwrap()), b"ok");
        assert!(matches!(root.open("up"), Err(LocalError::OutsideRoot(_))));
    }

    #[test]
    fn large_files_are_read_in_place() {
        let big = vec![7u8; SMALL_FILE as usize + 1];
        let (_dir, root) = root_with(&[("small", b"s"), ("big", &big)]);
        assert!(matches!(root.open("small").unwrap(), Some(Body::Memory(_))));
        assert!(matches!(root.open("big").unwrap(), Some(Body::Disk { .. })));
    }

    fn memory(body: Option<Body>) -> bytes::Bytes {
        match body {
            Some(Body::Memory(blob)) => blob.into_bytes(),
            other => panic!("not a shared copy: {other:?}"),
        }
    }

    #[test]
    fn concurrent_transfers_of_a_small_file_share_one_copy() {
        let (_dir, root) = root_with(&[("SEP1.cnf.xml", &[5u8; 200_000])]);
        let first = memory(root.open("SEP1.cnf.xml").unwrap());
        let before = shared::live_bytes();
        let others: Vec<_> = (0..100)
            .map(|_| memory(root.open("sep1.CNF.xml").unwrap()))
            .collect();
        for other in &others {
            assert_eq!(other.as_ptr(), first.as_ptr(), "a second copy was made");
        }
        // Other tests may hold copies too, but none of 100 × 200 KB.
        assert!(shared::live_bytes() < before + 200_000);
    }

    #[test]
    fn a_file_replaced_while_served_is_a_new_copy_and_the_old_one_stays() {
        let (dir, root) = root_with(&[("a.xml", b"version 1")]);
        let old = memory(root.open("a.xml").unwrap());
        let new_path = dir.path().join("a.xml.new");
        std::fs::write(&new_path, b"version 2").unwrap();
        std::fs::rename(&new_path, dir.path().join("a.xml")).unwrap();
        let second = memory(root.open("a.xml").unwrap());
        assert_eq!(&second[..], b"version 2");
        assert_eq!(&old[..], b"version 1", "a transfer under way changed");
        // Rewritten in place while `second` is served: the same inode, new
        // times and size.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.path().join("a.xml"), b"version three").unwrap();
        assert_eq!(&memory(root.open("a.xml").unwrap())[..], b"version three");
        assert_eq!(&second[..], b"version 2");
    }

    #[test]
    fn directories_and_fifos_are_not_files() {
        let (dir, root) = root_with(&[("sub/file", b"x")]);
        assert!(matches!(root.open("sub"), Err(LocalError::NotAFile(_))));
        let fifo = dir.path().join("pipe");
        use rustix::fs::{mknodat, FileType, Mode, CWD};
        mknodat(CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
        assert!(matches!(root.open("pipe"), Err(LocalError::NotAFile(_))));
    }
}
