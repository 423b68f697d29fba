//! A body sent in netascii, converted block by block as the transfer reads
//! it, so a netascii transfer holds no converted copy of its file (it held
//! up to twice the file: `tftp.max_transfers` of them could fill gigabytes).
//!
//! Conversion changes lengths (LF → CR LF, CR → CR NUL), so an offset in the
//! converted stream has no closed form: one pass over the file at the start
//! counts the converted length and keeps a mark every [`MARK`] bytes of the
//! file (its offset there in both streams); a read starts at the mark before
//! its offset. That costs 16 bytes per 4 KiB of file and, per block, at most
//! 4 KiB of the file read again and converted.

use std::fmt;
use std::io;

use super::Body;

/// Bytes of the file between two marks.
const MARK: usize = 4096;

/// `source` as netascii.
pub struct Netascii {
    source: Body,
    len: u64,
    /// (offset in the file, offset in the converted stream), every
    /// [`MARK`] bytes of the file.
    marks: Vec<(u64, u64)>,
}

impl fmt::Debug for Netascii {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Netascii(<{} bytes>)", self.len)
    }
}

/// What one byte of the file becomes.
fn convert(byte: u8) -> ([u8; 2], usize) {
    match byte {
        b'\n' => ([b'\r', b'\n'], 2),
        b'\r' => ([b'\r', 0], 2),
        other => ([other, 0], 1),
    }
}

impl Netascii {
    /// Reads `source` once to measure it converted.
    pub fn new(source: Body) -> io::Result<Netascii> {
        let mut chunk = vec![0u8; MARK];
        let mut marks = Vec::with_capacity(source.len().div_ceil(MARK as u64) as usize);
        let (mut at, mut len) = (0u64, 0u64);
        while at < source.len() {
            let n = (source.len() - at).min(MARK as u64) as usize;
            source.read_exact_at(at, &mut chunk[..n])?;
            marks.push((at, len));
            let expanded = chunk[..n]
                .iter()
                .filter(|&&b| b == b'\n' || b == b'\r')
                .count();
            len += (n + expanded) as u64;
            at += n as u64;
        }
        Ok(Netascii { source, len, marks })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `buf` with the converted bytes at `offset`; `UnexpectedEof`
    /// when the file no longer has them (it changed while being served).
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let changed = || {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file changed while being served",
            )
        };
        if offset.saturating_add(buf.len() as u64) > self.len {
            return Err(changed());
        }
        if buf.is_empty() {
            return Ok(());
        }
        let mark = self
            .marks
            .partition_point(|&(_, converted)| converted <= offset)
            - 1;
        let (mut at, mut position) = self.marks[mark];
        let mut chunk = [0u8; MARK];
        let mut filled = 0;
        while at < self.source.len() {
            let n = (self.source.len() - at).min(MARK as u64) as usize;
            self.source.read_exact_at(at, &mut chunk[..n])?;
            for &byte in &chunk[..n] {
                let (out, count) = convert(byte);
                for &converted in &out[..count] {
                    if position >= offset {
                        buf[filled] = converted;
                        filled += 1;
                        if filled == buf.len() {
                            return Ok(());
                        }
                    }
                    position += 1;
                }
            }
            at += n as u64;
        }
        Err(changed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tftp::netascii::encode;

    fn text(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| match i % 7 {
                0 => b'\n',
                3 => b'\r',
                _ => b'a' + (i % 26) as u8,
            })
            .collect()
    }

    #[test]
    fn every_range_reads_as_the_whole_file_converted() {
        let file = text(3 * MARK + 123);
        let whole = encode(&file);
        let view = Netascii::new(Body::from(bytes::Bytes::from(file))).unwrap();
        assert_eq!(view.len(), whole.len() as u64);
        for (offset, len) in [
            (0, 512),
            (4095, 2),
            (4096, 512),
            (whole.len() - 5, 5),
            (7000, 3000),
        ] {
            let mut buf = vec![0u8; len];
            view.read_exact_at(offset as u64, &mut buf).unwrap();
            assert_eq!(buf, whole[offset..offset + len], "at {offset}");
        }
        let mut beyond = [0u8; 2];
        assert!(view
            .read_exact_at(whole.len() as u64 - 1, &mut beyond)
            .is_err());
    }

    #[test]
    fn an_empty_file_is_empty() {
        let view = Netascii::new(Body::from(bytes::Bytes::new())).unwrap();
        assert!(view.is_empty());
        view.read_exact_at(0, &mut []).unwrap();
    }
}
