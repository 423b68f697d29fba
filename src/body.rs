//! The bytes that answer a name, wherever they came from: a file in the local
//! root (read in place, never copied whole into memory) or a buffer fetched
//! from a cluster and held by the content cache.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;

/// A readable, immutable file body. Cloning is cheap (reference counted).
#[derive(Clone, Debug)]
pub enum Body {
    /// Bytes in memory (cache, upstream fetch, netascii conversion).
    Memory(Bytes),
    /// A file opened in the local root; read with positional reads so that
    /// many transfers can share one descriptor.
    Disk { file: Arc<File>, len: u64 },
}

impl Body {
    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(bytes) => bytes.len() as u64,
            Body::Disk { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies up to `buf.len()` bytes starting at `offset` into `buf` and
    /// returns how many were copied (fewer only at the end of the body).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Memory(bytes) => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let n = buf.len().min(bytes.len() - start);
                buf[..n].copy_from_slice(&bytes[start..start + n]);
                Ok(n)
            }
            Body::Disk { file, len } => {
                let want = (buf.len() as u64).min(len.saturating_sub(offset)) as usize;
                let mut done = 0;
                while done < want {
                    // A regular file read is served from the page cache in
                    // microseconds; a blocking-pool hop would cost more.
                    match file.read_at(&mut buf[done..want], offset + done as u64) {
                        Ok(0) => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "file shrank while being served",
                            ))
                        }
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(done)
            }
        }
    }

    /// The whole body in memory (copies a disk file).
    pub fn to_bytes(&self) -> io::Result<Bytes> {
        match self {
            Body::Memory(bytes) => Ok(bytes.clone()),
            Body::Disk { len, .. } => {
                let mut buf = vec![0; *len as usize];
                let n = self.read_at(0, &mut buf)?;
                buf.truncate(n);
                Ok(Bytes::from(buf))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_reads_stop_at_the_end() {
        let body = Body::Memory(Bytes::from_static(b"hello"));
        let mut buf = [0u8; 4];
        assert_eq!(body.read_at(3, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"lo");
        assert_eq!(body.read_at(9, &mut buf).unwrap(), 0);
    }

    #[test]
    fn disk_reads_match_memory_reads() {
        let mut tmp = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut tmp, b"0123456789").unwrap();
        let body = Body::Disk {
            file: Arc::new(tmp),
            len: 10,
        };
        let mut buf = [0u8; 4];
        assert_eq!(body.read_at(8, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"89");
        assert_eq!(body.to_bytes().unwrap(), Bytes::from_static(b"0123456789"));
    }
}
