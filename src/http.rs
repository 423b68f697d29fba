//! The HTTP front end (`[http]`, port 6970): phones try `GET /<name>` over
//! HTTP before TFTP, and the same resolver answers.
//!
//! | resolver answer | HTTP |
//! |---|---|
//! | a file | `200` with `Content-Length` and `Cache-Control: no-store` |
//! | not found | `404` |
//! | denied (unsafe name) | `403` |
//! | retry later, or not resolved within `http.fetch_wait` | `503` with `Retry-After: 1` |
//!
//! The `503` after `fetch_wait` is what CUCM's proxy does: the upstream fetch
//! goes on in the background and lands in the cache, and the phone's TFTP
//! retry a moment later is answered from there.
//!
//! A request whose `Via` header carries our token comes from another tftproxy:
//! it is answered from local files and caches only, never forwarded, so two
//! proxies configured as each other's cluster cannot loop.
//!
//! Slow or hostile clients cannot pin the server: connections are capped at
//! `http.max_connections` (excess ones wait in the kernel's accept queue),
//! request heads must arrive within [`HEADER_READ_TIMEOUT`] (idle keep-alive
//! connections included) and fit in [`MAX_HEAD_BYTES`] (else `431`), targets
//! longer than [`MAX_URI_BYTES`] that fit get `414`, and a response that makes
//! no progress towards
//! a client for [`SEND_STALL_TIMEOUT`] ends its connection.
//!
//! Files from the local root are streamed from disk in chunks read on the
//! blocking pool; a 70 MB firmware is never read whole into memory.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::{Body as HttpBody, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Sleep;
use tracing::{debug, info, warn};

use crate::body::Body;
use crate::config::HttpConfig;
use crate::metrics::{Front, FrontLabels, Metrics, RequestResult};
use crate::resolve::upstream::is_from_proxy;
use crate::resolve::{Answer, Lookup, SharedResolver};
use crate::shutdown::{self, Shutdown, Trigger};

/// A request head (request line and headers) must arrive within this time;
/// it also closes keep-alive connections left idle this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted (larger: `431`). Phones send a few hundred
/// bytes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Longest request target accepted (longer: `414`).
pub const MAX_URI_BYTES: usize = 1024;
/// A response that cannot send a byte to its client for this long ends the
/// connection.
pub const SEND_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on producing a response head once the request is read, beyond
/// `fetch_wait` (the resolve itself is cut at `fetch_wait`).
const RESPONSE_SLACK: Duration = Duration::from_secs(5);
/// Bytes read from disk (or sliced from memory) per body frame.
const CHUNK: usize = 128 * 1024;
/// The `Retry-After` value sent with `503`, in seconds: phones fall back to
/// TFTP at once anyway.
const RETRY_AFTER: &str = "1";

/// Settings that a reload may change without rebinding.
#[derive(Clone, Debug)]
struct Settings {
    fetch_wait: Duration,
    max_connections: usize,
}

/// What every HTTP listener and connection of the daemon shares.
pub struct HttpShared {
    resolver: SharedResolver,
    metrics: Arc<Metrics>,
    settings: ArcSwap<Settings>,
    connections: AtomicUsize,
    released: Notify,
}

impl HttpShared {
    pub fn new(config: &HttpConfig, resolver: SharedResolver, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(HttpShared {
            resolver,
            metrics,
            settings: ArcSwap::from_pointee(settings_of(config)),
            connections: AtomicUsize::new(0),
            released: Notify::new(),
        })
    }

    /// Applies `fetch_wait` and `max_connections` from a reloaded config.
    pub fn update(&self, config: &HttpConfig) {
        self.settings.store(Arc::new(settings_of(config)));
        // A larger cap may let waiting accept loops go on.
        self.released.notify_waiters();
    }

    /// HTTP connections open now.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until every connection has closed or `grace` has passed;
    /// returns how many were still open.
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let open = self.connections();
            if open == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return self.connections();
            }
        }
    }

    /// Waits until fewer than `max_connections` connections are open.
    /// (Several listeners may then each accept one: the cap can be passed
    /// by at most the number of listeners.)
    async fn room(&self) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let max = self.settings.load().max_connections.max(1);
            if self.connections() < max {
                return;
            }
            released.await;
        }
    }

    /// Counts a connection just accepted.
    fn take(self: &Arc<Self>) -> ConnectionSlot {
        self.connections.fetch_add(1, Ordering::SeqCst);
        self.metrics.http_connections.inc();
        ConnectionSlot {
            shared: self.clone(),
        }
    }
}

fn settings_of(config: &HttpConfig) -> Settings {
    Settings {
        fetch_wait: config.fetch_wait,
        max_connections: config.max_connections,
    }
}

/// One of the `max_connections` slots, given back when dropped.
struct ConnectionSlot {
    shared: Arc<HttpShared>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::SeqCst);
        self.shared.metrics.http_connections.dec();
        self.shared.released.notify_waiters();
    }
}

/// Binds a TCP listener for the HTTP or admin front (`SO_REUSEADDR`, so a
/// restart does not wait for old connections in TIME_WAIT; IPv6 sockets are
/// IPv6-only so `0.0.0.0:P` and `[::]:P` can be listed together).
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
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

/// A running HTTP listener.
pub struct HttpListener {
    /// The address as configured (port 0 stays 0).
    pub configured: SocketAddr,
    /// The address actually bound.
    pub bound: SocketAddr,
    stop: Trigger,
}

impl HttpListener {
    /// Starts serving on a listener from [`bind`].
    pub fn start(
        configured: SocketAddr,
        listener: std::net::TcpListener,
        shared: Arc<HttpShared>,
    ) -> io::Result<HttpListener> {
        let listener = TcpListener::from_std(listener)?;
        let bound = listener.local_addr()?;
        let (stop, shutdown) = shutdown::channel();
        tokio::spawn(serve(listener, shared, shutdown));
        Ok(HttpListener {
            configured,
            bound,
            stop,
        })
    }

    /// Stops accepting; connections in flight finish their current response
    /// and close.
    pub fn stop(&self) {
        self.stop.fire();
    }
}

impl Drop for HttpListener {
    /// Dropping a listener stops it (its socket closes when the accept loop
    /// ends).
    fn drop(&mut self) {
        self.stop.fire();
    }
}

/// Accepts connections until shutdown; each connection runs in its own task.
async fn serve(listener: TcpListener, shared: Arc<HttpShared>, shutdown: Shutdown) {
    accept_until_shutdown(
        &listener,
        "HTTP",
        shutdown,
        || async {
            shared.room().await;
            Some(())
        },
        |stream, peer, (), shutdown| {
            let slot = shared.take();
            let _ = stream.set_nodelay(true);
            tokio::spawn(connection(stream, peer, shared.clone(), slot, shutdown));
        },
    )
    .await;
}

/// Accepts TCP connections until shutdown (for the HTTP and admin fronts).
/// `room` waits until one more connection may be served and gives what it
/// holds for it (`None` stops the loop): excess connections wait in the
/// kernel's accept queue. `serve` starts serving an accepted connection.
pub(crate) async fn accept_until_shutdown<S, R>(
    listener: &TcpListener,
    front: &'static str,
    mut shutdown: Shutdown,
    mut room: impl FnMut() -> R,
    mut serve: impl FnMut(TcpStream, SocketAddr, S, Shutdown),
) where
    R: Future<Output = Option<S>>,
{
    let local = listener.local_addr().ok();
    if let Some(local) = local {
        info!(listen = %local, "{front} listening");
    }
    loop {
        let slot = tokio::select! {
            _ = shutdown.recv() => break,
            slot = room() => match slot {
                Some(slot) => slot,
                None => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.recv() => break,
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
        serve(stream, peer, slot, shutdown.clone());
    }
    if let Some(local) = local {
        info!(listen = %local, "{front} listener stopped");
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<HttpShared>,
    _slot: ConnectionSlot,
    shutdown: Shutdown,
) {
    let client = peer.ip().to_canonical();
    let service = {
        let shared = shared.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let shared = shared.clone();
            async move {
                // Whole-request bound: the resolve is cut at fetch_wait; the
                // rest is local work.
                let limit = shared.settings.load().fetch_wait + RESPONSE_SLACK;
                let response = tokio::time::timeout(limit, handle(&shared, client, request))
                    .await
                    .unwrap_or_else(|_| {
                        shared.metrics.request(Front::Http, RequestResult::Busy);
                        busy(false)
                    });
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    if let Err(error) = serve_http1(stream, service, shutdown).await {
        debug!(%client, %error, "HTTP connection ended");
    }
}

/// Serves HTTP/1.1 on one connection with the bounds every front needs:
/// the request head within [`HEADER_READ_TIMEOUT`] (idle keep-alive
/// included), at most [`MAX_HEAD_BYTES`] of it, and a reader that stops
/// reading for [`SEND_STALL_TIMEOUT`] is cut off. On shutdown the response
/// in flight finishes and the connection closes.
pub(crate) async fn serve_http1<S>(
    stream: TcpStream,
    service: S,
    mut shutdown: Shutdown,
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
        _ = shutdown.recv() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Answers one request.
async fn handle<B>(shared: &HttpShared, client: IpAddr, request: Request<B>) -> Response<HttpBody> {
    let started = Instant::now();
    let method = request.method().clone();
    let head_only = method == Method::HEAD;
    if method != Method::GET && !head_only {
        shared.metrics.request(Front::Http, RequestResult::Denied);
        info!(%client, %method, status = 405, "HTTP method not allowed");
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n", false);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let target_len = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target_len > MAX_URI_BYTES {
        shared.metrics.request(Front::Http, RequestResult::Denied);
        info!(%client, bytes = target_len, status = 414, "HTTP request target too long");
        return text(
            StatusCode::URI_TOO_LONG,
            "request target too long\n",
            head_only,
        );
    }
    let Some(name) = percent_decode(request.uri().path()) else {
        shared.metrics.request(Front::Http, RequestResult::Denied);
        info!(%client, path = request.uri().path(), status = 400, "HTTP name is not UTF-8");
        return text(StatusCode::BAD_REQUEST, "name is not UTF-8\n", head_only);
    };
    let name = name.strip_prefix('/').unwrap_or(&name);
    let from_proxy = via_is_ours(request.headers());
    let settings = shared.settings.load_full();
    let lookup = Lookup {
        name,
        client,
        front: Front::Http,
        from_proxy,
    };
    let resolver = shared.resolver.load_full();
    // Upstream fetches run in their own tasks: giving up here leaves the
    // fetch running, and its result lands in the cache for the TFTP retry.
    let answer = tokio::time::timeout(settings.fetch_wait, resolver.resolve(&lookup))
        .await
        .ok();
    let ms = started.elapsed().as_millis() as u64;
    let metrics = &shared.metrics;
    let (result, response) = match answer {
        Some(Answer::File { body, source }) => {
            let len = body.len();
            info!(%client, name, %source, from_proxy, bytes = len, ms, method = %method, "HTTP served");
            let response = if head_only {
                let mut response = Response::new(HttpBody::empty());
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                response
            } else {
                let counter = metrics
                    .bytes_sent
                    .get_or_create(&FrontLabels { front: Front::Http })
                    .clone();
                Response::new(HttpBody::new(FileBody::new(body, counter)))
            };
            let mut response = response;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            (RequestResult::Served, response)
        }
        Some(Answer::NotFound) => {
            info!(%client, name, from_proxy, status = 404, ms, "File not found");
            (
                RequestResult::NotFound,
                text(StatusCode::NOT_FOUND, "File not found\n", head_only),
            )
        }
        Some(Answer::Denied(reason)) => {
            info!(%client, name, status = 403, ms, reason = %reason, "access denied");
            (
                RequestResult::Denied,
                text(
                    StatusCode::FORBIDDEN,
                    &format!("access denied: {reason}\n"),
                    head_only,
                ),
            )
        }
        Some(Answer::RetryLater) => {
            info!(%client, name, from_proxy, status = 503, ms, "busy, retry later");
            (RequestResult::Busy, busy(head_only))
        }
        None => {
            metrics.http_fetch_wait_expired.inc();
            info!(%client, name, status = 503, ms, "not resolved within http.fetch_wait; retry later");
            (RequestResult::Busy, busy(head_only))
        }
    };
    metrics.request(Front::Http, result);
    let mut response = response;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn busy(head_only: bool) -> Response<HttpBody> {
    let mut response = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy, retry later\n",
        head_only,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
    response
}

/// A short plain-text answer (headers only for `HEAD`, with the length the
/// `GET` body would have).
fn text(status: StatusCode, message: &str, head_only: bool) -> Response<HttpBody> {
    let len = message.len();
    let mut response = if head_only {
        Response::new(HttpBody::empty())
    } else {
        Response::new(HttpBody::from(message.to_owned()))
    };
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// True when any `Via` header names a tftproxy hop.
fn via_is_ours(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::VIA)
        .iter()
        // Comments may carry non-ASCII bytes (RFC 9110 obs-text); such a
        // header still names its hops.
        .any(|v| is_from_proxy(&String::from_utf8_lossy(v.as_bytes())))
}

/// Decodes `%XX` escapes of a request path; `None` when the result is not
/// UTF-8. Malformed escapes are kept literally.
pub fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A file body sent in chunks: memory bodies are sliced (no copy), disk
/// bodies read with positional reads on the blocking pool. Its size is
/// exact, so hyper sends `Content-Length`.
struct FileBody {
    body: Body,
    offset: u64,
    len: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
    sent: prometheus_client::metrics::counter::Counter,
}

impl FileBody {
    fn new(body: Body, sent: prometheus_client::metrics::counter::Counter) -> FileBody {
        let len = body.len();
        FileBody {
            body,
            offset: 0,
            len,
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
        if this.offset >= this.len {
            return Poll::Ready(None);
        }
        let want = (this.len - this.offset).min(CHUNK as u64) as usize;
        let chunk = match &this.body {
            Body::Memory(bytes) => {
                let start = this.offset as usize;
                bytes.slice(start..start + want)
            }
            Body::Disk { .. } => {
                let pending = this.pending.get_or_insert_with(|| {
                    let body = this.body.clone();
                    let offset = this.offset;
                    tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0u8; want];
                        let n = body.read_at(offset, &mut buf)?;
                        if n < want {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "file shrank while being served",
                            ));
                        }
                        Ok(Bytes::from(buf))
                    })
                });
                let joined = ready!(Pin::new(pending).poll(cx));
                this.pending = None;
                match joined {
                    Ok(Ok(bytes)) => bytes,
                    Ok(Err(error)) => {
                        warn!(%error, "reading a file for HTTP failed");
                        this.offset = this.len;
                        return Poll::Ready(Some(Err(error)));
                    }
                    Err(join) => {
                        this.offset = this.len;
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
        self.offset >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.offset)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(percent_decode("/a%2").as_deref(), Some("/a%2"));
        assert_eq!(percent_decode("/a%zz").as_deref(), Some("/a%zz"));
        assert_eq!(percent_decode("/%41").as_deref(), Some("/A"));
        assert_eq!(percent_decode("/%ff"), None);
        assert_eq!(
            percent_decode("/Desktops/320x212x12/List.xml").as_deref(),
            Some("/Desktops/320x212x12/List.xml")
        );
    }

    #[test]
    fn via_detection_reads_every_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::VIA, HeaderValue::from_static("1.1 squid"));
        assert!(!via_is_ours(&headers));
        headers.append(header::VIA, HeaderValue::from_static("1.1 tftproxy"));
        assert!(via_is_ours(&headers));
    }
}
