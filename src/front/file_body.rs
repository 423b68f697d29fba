//! The body of a `200`/`206` on the HTTP front: memory bodies are sliced
//! (no copy), disk bodies read in chunks with positional reads on the
//! blocking pool, so a 70 MB firmware is never read whole into memory.

use std::future::Future;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::Bytes;
use hyper::body::{Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::body::Body;

/// Bytes read from disk (or sliced from memory) per body frame.
const CHUNK: usize = 128 * 1024;

/// A file body sent in chunks: memory bodies are sliced (no copy), disk
/// bodies read with positional reads on the blocking pool. Its size is
/// exact, so hyper sends `Content-Length`.
pub(super) struct FileBody {
    body: Body,
    /// Next byte to send.
    offset: u64,
    /// One past the last byte to send.
    end: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
    sent: Counter,
}

impl FileBody {
    /// The bytes of `body` in `range` (the whole body, or one `Range`).
    pub(super) fn new(body: Body, range: Range<u64>, sent: Counter) -> FileBody {
        FileBody {
            body,
            offset: range.start,
            end: range.end,
            pending: None,
            sent,
        }
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.offset >= this.end {
            return Poll::Ready(None);
        }
        let want = (this.end - this.offset).min(CHUNK as u64) as usize;
        let chunk = match &this.body {
            Body::Memory(bytes) => {
                let start = this.offset as usize;
                bytes.as_bytes().slice(start..start + want)
            }
            Body::Disk { .. } | Body::Netascii(_) => {
                let pending = this.pending.get_or_insert_with(|| {
                    let body = this.body.clone();
                    let offset = this.offset;
                    tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0u8; want];
                        body.read_exact_at(offset, &mut buf)?;
                        Ok(Bytes::from(buf))
                    })
                });
                let joined = ready!(Pin::new(pending).poll(cx));
                this.pending = None;
                match joined {
                    Ok(Ok(bytes)) => bytes,
                    Ok(Err(error)) => {
                        warn!(%error, "reading a file for HTTP failed");
                        this.offset = this.end;
                        return Poll::Ready(Some(Err(error)));
                    }
                    Err(join) => {
                        this.offset = this.end;
                        return Poll::Ready(Some(Err(io::Error::other(join.to_string()))));
                    }
                }
            }
        };
        this.offset += chunk.len() as u64;
        this.sent.inc_by(chunk.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.offset >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.offset)
    }
}
