//! The bytes that answer a name, wherever they came from: a file in the local
//! root (read in place, or a small one's copy shared by its transfers, never
//! a copy per transfer) or a buffer fetched from a cluster and held by the
//! content cache.
//!
//! [`Blob`] is a byte buffer whose `Debug` prints its size, so every type
//! that carries a body derives `Debug` and a `debug!` line never dumps a
//! file. [`Body`] is what the fronts send; it is the [`BlockSource`] the
//! TFTP state machine reads its blocks from.

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;

use crate::tftp::send::BlockSource;

mod netascii;

pub use netascii::Netascii;

/// An immutable byte buffer, cheap to clone (reference counted), shown by
/// `Debug` as `<N bytes>`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Blob(Bytes);

impl Blob {
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl Deref for Blob {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Bytes> for Blob {
    fn from(bytes: Bytes) -> Blob {
        Blob(bytes)
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Blob {
        Blob(bytes.into())
    }
}

impl From<&'static [u8]> for Blob {
    fn from(bytes: &'static [u8]) -> Blob {
        Blob(Bytes::from_static(bytes))
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl fmt::Display for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

/// A readable, immutable file body. Cloning is cheap (reference counted).
#[derive(Clone, Debug)]
pub enum Body {
    /// Bytes in memory (cache, upstream fetch, the shared copy of a small
    /// local file).
    Memory(Blob),
    /// A file opened in the local root; read with positional reads so that
    /// many transfers can share one descriptor.
    Disk { file: Arc<File>, len: u64 },
    /// Another body, sent in netascii: converted as it is read.
    Netascii(Arc<Netascii>),
}

impl Body {
    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(bytes) => bytes.len() as u64,
            Body::Disk { len, .. } => *len,
            Body::Netascii(view) => view.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset`. Fails with `UnexpectedEof`
    /// when the body has fewer (a local file that shrank while it was
    /// being served: the phone must not get a silently short file).
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let shrank = || {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being served",
            )
        };
        match self {
            Body::Memory(bytes) => {
                let start = usize::try_from(offset).map_err(|_| shrank())?;
                let source = bytes
                    .get(start..start.saturating_add(buf.len()))
                    .ok_or_else(shrank)?;
                buf.copy_from_slice(source);
                Ok(())
            }
            Body::Disk { file, len } => {
                if offset.saturating_add(buf.len() as u64) > *len {
                    return Err(shrank());
                }
                // A regular file read is served from the page cache in
                // microseconds; a blocking-pool hop would cost more.
                file.read_exact_at(buf, offset).map_err(|error| {
                    if error.kind() == io::ErrorKind::UnexpectedEof {
                        shrank()
                    } else {
                        error
                    }
                })
            }
            Body::Netascii(view) => view.read_exact_at(offset, buf),
        }
    }

    /// The whole body in memory (copies a disk file).
    pub fn to_bytes(&self) -> io::Result<Bytes> {
        match self {
            Body::Memory(bytes) => Ok(bytes.as_bytes().clone()),
            Body::Disk { .. } | Body::Netascii(_) => {
                let mut buf = vec![0; self.len() as usize];
                self.read_exact_at(0, &mut buf)?;
                Ok(Bytes::from(buf))
            }
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body::Memory(bytes.into())
    }
}

impl From<Blob> for Body {
    fn from(blob: Blob) -> Body {
        Body::Memory(blob)
    }
}

impl BlockSource for Body {
    fn len(&self) -> u64 {
        Body::len(self)
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        Body::read_exact_at(self, offset, buf)
    }

    fn reads_in_place(&self) -> bool {
        matches!(self, Body::Disk { .. })
    }

    fn in_memory(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let Body::Memory(bytes) = self else {
            return None;
        };
        let start = usize::try_from(offset).ok()?;
        bytes.get(start..start.checked_add(len)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_reads_stop_at_the_end() {
        let body = Body::from(Bytes::from_static(b"hello"));
        let mut buf = [0u8; 2];
        body.read_exact_at(3, &mut buf).unwrap();
        assert_eq!(&buf, b"lo");
        let mut buf = [0u8; 4];
        let error = body.read_exact_at(3, &mut buf).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn only_memory_lends_its_blocks_and_never_past_the_end() {
        let body = Body::from(Bytes::from_static(b"hello"));
        assert_eq!(body.in_memory(1, 3), Some(&b"ell"[..]));
        assert_eq!(body.in_memory(3, 3), None);
        assert_eq!(body.in_memory(u64::MAX, 1), None);
        let disk = Body::Disk {
            file: Arc::new(tempfile::tempfile().unwrap()),
            len: 0,
        };
        assert_eq!(disk.in_memory(0, 0), None);
    }

    #[test]
    fn disk_reads_match_memory_reads() {
        let mut tmp = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut tmp, b"0123456789").unwrap();
        let body = Body::Disk {
            file: Arc::new(tmp),
            len: 10,
        };
        let mut buf = [0u8; 2];
        body.read_exact_at(8, &mut buf).unwrap();
        assert_eq!(&buf, b"89");
        assert_eq!(body.to_bytes().unwrap(), Bytes::from_static(b"0123456789"));
    }

    #[test]
    fn a_disk_file_shorter_than_its_length_is_an_error() {
        let mut tmp = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut tmp, b"0123").unwrap();
        let body = Body::Disk {
            file: Arc::new(tmp),
            len: 10,
        };
        let mut buf = [0u8; 8];
        let error = body.read_exact_at(0, &mut buf).unwrap_err();
        assert_eq!(error.to_string(), "file shrank while being served");
    }

    #[test]
    fn debug_shows_the_size_not_the_bytes() {
        let body = Body::from(Bytes::from(vec![0u8; 4096]));
        assert_eq!(format!("{body:?}"), "Memory(<4096 bytes>)");
    }
}
