//! The on-disk format of one cached file: a small header, then the body.
//!
//! ```text
//! magic "TFPXCACH" | format version u16 | header length u32
//! header: cluster, name (u16 length + UTF-8 each) | fetched, confirmed
//!         (u64 Unix milliseconds) | ETag, Last-Modified (u16 length +
//!         bytes, empty when absent) | body length u64 | SHA-256 of the body
//! body
//! ```
//!
//! All integers little-endian. [`decode`] refuses anything whose length or
//! checksum does not match: a torn or damaged file is never served.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"TFPXCACH";
const VERSION: u16 = 1;

/// What is known about a cached body besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::resolve) struct Meta {
    pub cluster: String,
    pub name: String,
    pub fetched: SystemTime,
    /// When a cluster last said this copy is current.
    pub confirmed: SystemTime,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Why a file is not a usable entry.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum Corrupt {
    #[error("not a cache entry (bad magic)")]
    Magic,
    #[error("unknown format version {0}")]
    Version(u16),
    #[error("header truncated or malformed")]
    Header,
    #[error("body is {got} bytes, the header says {expected}")]
    Length { expected: u64, got: u64 },
    #[error("body checksum mismatch")]
    Checksum,
}

/// The header bytes for `body` described by `meta`.
pub(super) fn encode_header(meta: &Meta, body: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(128 + meta.name.len());
    put_str(&mut h, meta.cluster.as_bytes());
    put_str(&mut h, meta.name.as_bytes());
    h.extend_from_slice(&unix_ms(meta.fetched).to_le_bytes());
    h.extend_from_slice(&unix_ms(meta.confirmed).to_le_bytes());
    put_str(&mut h, meta.etag.as_deref().unwrap_or("").as_bytes());
    put_str(
        &mut h,
        meta.last_modified.as_deref().unwrap_or("").as_bytes(),
    );
    h.extend_from_slice(&(body.len() as u64).to_le_bytes());
    h.extend_from_slice(&Sha256::digest(body));
    let mut out = Vec::with_capacity(14 + h.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    out.extend_from_slice(&h);
    out
}

/// The entry in `file` (a whole file's bytes), verified: the body's length
/// and SHA-256 match the header's.
pub(super) fn decode(file: Bytes) -> Result<(Meta, Bytes), Corrupt> {
    if file.len() < 14 || &file[..8] != MAGIC {
        return Err(Corrupt::Magic);
    }
    let version = u16::from_le_bytes([file[8], file[9]]);
    if version != VERSION {
        return Err(Corrupt::Version(version));
    }
    let header_len = u32::from_le_bytes([file[10], file[11], file[12], file[13]]) as usize;
    let header = file.get(14..14 + header_len).ok_or(Corrupt::Header)?;
    let mut r = Reader(header);
    let cluster = r.string()?;
    let name = r.string()?;
    let fetched = from_unix_ms(r.u64()?);
    let confirmed = from_unix_ms(r.u64()?);
    let etag = Some(r.string()?).filter(|s| !s.is_empty());
    let last_modified = Some(r.string()?).filter(|s| !s.is_empty());
    let expected = r.u64()?;
    let sum = r.take(32)?;
    let body = file.slice(14 + header_len..);
    if body.len() as u64 != expected {
        return Err(Corrupt::Length {
            expected,
            got: body.len() as u64,
        });
    }
    if Sha256::digest(&body)[..] != *sum {
        return Err(Corrupt::Checksum);
    }
    let meta = Meta {
        cluster,
        name,
        fetched,
        confirmed,
        etag,
        last_modified,
    };
    Ok((meta, body))
}

/// Where the confirmation time of the entry whose first bytes are `head`
/// (at least the fixed prefix and header) is, if it is the entry of
/// `cluster` and `name`. The time is outside the checksum: it may be
/// rewritten in place (8 bytes, one sector) without rewriting the body.
pub(super) fn confirmed_offset(head: &[u8], cluster: &str, name: &str) -> Result<usize, Corrupt> {
    if head.len() < 14 || &head[..8] != MAGIC {
        return Err(Corrupt::Magic);
    }
    let mut r = Reader(&head[14..]);
    if r.string()? != cluster || r.string()? != name {
        return Err(Corrupt::Header);
    }
    Ok(14 + 2 + cluster.len() + 2 + name.len() + 8)
}

/// The length of the fixed prefix and header of an entry starting with
/// `prefix` (its first 14 bytes).
pub(super) fn head_len(prefix: &[u8; 14]) -> usize {
    14 + u32::from_le_bytes([prefix[10], prefix[11], prefix[12], prefix[13]]) as usize
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len().min(u16::MAX as usize);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&s[..len]);
}

pub(in crate::resolve) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(in crate::resolve) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt::Header);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, Corrupt> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(|_| Corrupt::Header)?,
        ))
    }

    fn string(&mut self) -> Result<String, Corrupt> {
        let len = self.take(2)?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| Corrupt::Header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            cluster: "c1".into(),
            name: "SEP001122334455.cnf.xml".into(),
            fetched: from_unix_ms(1_700_000_000_000),
            confirmed: from_unix_ms(1_700_000_000_500),
            etag: Some("\"abc\"".into()),
            last_modified: None,
        }
    }

    fn file(body: &[u8]) -> Vec<u8> {
        let mut f = encode_header(&meta(), body);
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn round_trip() {
        let (m, body) = decode(Bytes::from(file(b"hello"))).unwrap();
        assert_eq!(m, meta());
        assert_eq!(&body[..], b"hello");
    }

    #[test]
    fn the_confirmation_time_is_rewritten_in_place() {
        let mut f = file(b"hello");
        let at = confirmed_offset(&f, "c1", "SEP001122334455.cnf.xml").unwrap();
        f[at..at + 8].copy_from_slice(&1_800_000_000_000u64.to_le_bytes());
        let (m, body) = decode(Bytes::from(f)).unwrap();
        assert_eq!(m.confirmed, from_unix_ms(1_800_000_000_000));
        assert_eq!(m.fetched, meta().fetched);
        assert_eq!(&body[..], b"hello");
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let good = file(b"some body bytes");
        for len in 0..good.len() {
            assert!(decode(Bytes::from(good[..len].to_vec())).is_err(), "{len}");
        }
        // Flipping a byte of the magic, version, lengths, sizes, checksum or
        // body is caught; only the timestamps and strings may change unseen
        // (they are not what is served).
        let header_end = good.len() - 15;
        for i in (0..14).chain(header_end - 40..good.len()) {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(decode(Bytes::from(bad)).is_err(), "byte {i}");
        }
    }
}
