//! HTTP/1 plumbing shared by the phone front (`front::http`) and the admin
//! front ([`super::admin`]): binding, the accept loop with its connection
//! limit, and one connection served with the bounds every front needs.
//!
//! Slow or hostile clients cannot pin a front: connections are capped
//! (excess ones wait in the kernel's accept queue), request heads must
//! arrive within [`HEADER_READ_TIMEOUT`] (idle keep-alive connections
//! included) and fit in [`MAX_HEAD_BYTES`] (else `431`), and a response
//! that makes no progress towards a client for [`SEND_STALL_TIMEOUT`] ends
//! its connection.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::slots::Slots;
use super::ListenerHandle;

/// A request head (request line and headers) must arrive within this time;
/// it also closes keep-alive connections left idle this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted (larger: `431`). Phones send a few hundred
/// bytes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// A response that cannot send a byte to its client for this long ends the
/// connection.
pub const SEND_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds a TCP listener for the HTTP or admin front (`SO_REUSEADDR`, so a
/// restart does not wait for old connections in TIME_WAIT; IPv6 sockets are
/// IPv6-only so `0.0.0.0:P` and `[::]:P` can be listed together).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Runs `accept` (a front's accept loop) on a listener from [`bind`] until
/// the returned handle is dropped.
pub(crate) fn start_listener<F, Fut>(
    configured: SocketAddr,
    listener: std::net::TcpListener,
    accept: F,
) -> io::Result<ListenerHandle>
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::from_std(listener)?;
    let bound = listener.local_addr()?;
    let stop = CancellationToken::new();
    tokio::spawn(accept(listener, stop.clone()));
    Ok(ListenerHandle::new(configured, bound, stop))
}

/// Accepts TCP connections until `stop` is cancelled, at most as many at
/// once as `slots` allows: excess connections wait in the kernel's accept
/// queue. `serve` starts serving an accepted connection, holding its slot
/// until the connection ends.
pub(crate) async fn accept_until_stopped(
    listener: TcpListener,
    front: &'static str,
    slots: &Slots,
    stop: CancellationToken,
    mut serve: impl FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
) {
    let local = listener.local_addr().ok();
    if let Some(local) = local {
        info!(listen = %local, "{front} listening");
    }
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.take() => slot,
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off a little rather than spin.
                    warn!(%error, "{front} accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        serve(stream, peer, slot);
    }
    if let Some(local) = local {
        info!(listen = %local, "{front} listener stopped");
    }
}

/// Serves HTTP/1.1 on one connection with the bounds every front needs:
/// the request head within [`HEADER_READ_TIMEOUT`] (idle keep-alive
/// included), at most [`MAX_HEAD_BYTES`] of it, and a reader that stops
/// reading for [`SEND_STALL_TIMEOUT`] is cut off. When `stop` is cancelled
/// the response in flight finishes and the connection closes.
pub(crate) async fn serve_http1<S>(
    stream: TcpStream,
    service: S,
    stop: CancellationToken,
) -> Result<(), hyper::Error>
where
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(StallGuard::new(stream, SEND_STALL_TIMEOUT));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Ends a connection whose writes make no progress for `limit` (a client
/// that stopped reading). Reads pass through: request heads have their own
/// time-out in hyper.
struct StallGuard<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    fn new(inner: T, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After the inner write returned `result`: clears the stall timer on
    /// progress, arms (or checks) it while pending.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match result {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client stopped reading",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, result)
    }
}
