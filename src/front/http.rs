//! The HTTP front (`[http]`, port 6970): phones try `GET /<name>` over
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
//! A request whose `Via` header carries our token ([`crate::via`]) comes
//! from another tftproxy: it is answered from local files and caches only,
//! never forwarded, so two proxies configured as each other's cluster cannot
//! loop.
//!
//! A client outside `http.allow` (when set) gets `403` and the connection
//! is closed.
//!
//! Connections are capped at `http.max_connections`; the other bounds on
//! slow or hostile clients are [`super::conn`]'s. Targets longer than
//! [`MAX_URI_BYTES`] that fit in the head get `414`.
//!
//! Files from the local root are streamed from disk in chunks read on the
//! blocking pool; a 70 MB firmware is never read whole into memory.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::{Body as HttpBody, Bytes};
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::{Frame, Incoming, SizeHint};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::conn::{accept_until_stopped, serve_http1};
use super::slots::Slots;
use super::ListenerHandle;
use crate::body::Body;
use crate::config::{AllowList, HttpConfig};
use crate::metrics::{ClientRefusal, Front, FrontLabels, Metrics, RequestResult};
use crate::resolve::{Answer, Lookup, ResolverHandle};
use crate::via;

/// Longest request target accepted (longer: `414`).
pub(crate) const MAX_URI_BYTES: usize = 1024;
/// Bound on producing a response head once the request is read, beyond
/// `fetch_wait` (the resolve itself is cut at `fetch_wait`).
const RESPONSE_SLACK: Duration = Duration::from_secs(5);
/// Bytes read from disk (or sliced from memory) per body frame.
const CHUNK: usize = 128 * 1024;
/// The `Retry-After` value sent with `503`, in seconds: phones fall back to
/// TFTP at once anyway.
const RETRY_AFTER: &str = "1";

/// What every HTTP listener and connection of the daemon shares, across
/// reloads.
pub(crate) struct HttpFront {
    resolver: ResolverHandle,
    metrics: Arc<Metrics>,
    /// `http.fetch_wait`; a reload may change it.
    fetch_wait: ArcSwap<Duration>,
    /// `http.allow`; a reload may change it.
    allow: ArcSwap<AllowList>,
    /// `http.max_connections`, for every listener together.
    slots: Slots,
    /// Open connections.
    connections: TaskTracker,
}

impl HttpFront {
    pub(crate) fn new(
        config: &HttpConfig,
        resolver: ResolverHandle,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(HttpFront {
            resolver,
            metrics,
            fetch_wait: ArcSwap::from_pointee(config.fetch_wait),
            allow: ArcSwap::from_pointee(config.allow.clone()),
            slots: Slots::new(config.max_connections.max(1)),
            connections: TaskTracker::new(),
        })
    }

    /// Applies `fetch_wait`, `allow` and `max_connections` from a reloaded
    /// config.
    pub(crate) fn update(&self, config: &HttpConfig) {
        self.fetch_wait.store(Arc::new(config.fetch_wait));
        self.allow.store(Arc::new(config.allow.clone()));
        self.slots.resize(config.max_connections.max(1));
    }

    /// The open connections (to count them, or wait for them to end).
    pub(crate) fn connections(&self) -> &TaskTracker {
        &self.connections
    }

    /// Starts serving on a listener from [`super::conn::bind`] until the
    /// handle is dropped; then connections in flight finish their current
    /// response and close.
    pub(crate) fn start(
        self: &Arc<Self>,
        configured: SocketAddr,
        listener: std::net::TcpListener,
    ) -> io::Result<ListenerHandle> {
        let listener = TcpListener::from_std(listener)?;
        let bound = listener.local_addr()?;
        let stop = CancellationToken::new();
        tokio::spawn(self.clone().accept(listener, stop.clone()));
        Ok(ListenerHandle::new(configured, bound, stop))
    }

    async fn accept(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) {
        let front = self.clone();
        accept_until_stopped(
            listener,
            "HTTP",
            &self.slots,
            stop.clone(),
            |stream, peer, slot| {
                let _ = stream.set_nodelay(true);
                let front = front.clone();
                let stop = stop.clone();
                self.connections
                    .spawn(async move { front.connection(stream, peer, slot, stop).await });
            },
        )
        .await;
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        _slot: OwnedSemaphorePermit,
        stop: CancellationToken,
    ) {
        self.metrics.http_connections.inc();
        let client = peer.ip().to_canonical();
        let service = {
            let front = self.clone();
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let front = front.clone();
                async move {
                    // Whole-request bound: the resolve is cut at fetch_wait;
                    // the rest is local work.
                    let limit = **front.fetch_wait.load() + RESPONSE_SLACK;
                    let response = tokio::time::timeout(limit, handle(&front, client, request))
                        .await
                        .unwrap_or_else(|_| {
                            front.metrics.request(Front::Http, RequestResult::Busy);
                            busy(false)
                        });
                    Ok::<_, std::convert::Infallible>(response)
                }
            })
        };
        if let Err(error) = serve_http1(stream, service, stop).await {
            debug!(%client, %error, "HTTP connection ended");
        }
        self.metrics.http_connections.dec();
    }
}

/// Answers one request.
async fn handle<B>(front: &HttpFront, client: IpAddr, request: Request<B>) -> Response<HttpBody> {
    let started = Instant::now();
    let method = request.method().clone();
    let head_only = method == Method::HEAD;
    if !front.allow.load().allows(client) {
        front
            .metrics
            .client_refusal(Front::Http, ClientRefusal::NotAllowed);
        front.metrics.request(Front::Http, RequestResult::Denied);
        debug!(%client, status = 403, "client not in http.allow");
        let mut response = text(StatusCode::FORBIDDEN, "forbidden\n", head_only);
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    if method != Method::GET && !head_only {
        front.metrics.request(Front::Http, RequestResult::Denied);
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
        front.metrics.request(Front::Http, RequestResult::Denied);
        info!(%client, bytes = target_len, status = 414, "HTTP request target too long");
        return text(
            StatusCode::URI_TOO_LONG,
            "request target too long\n",
            head_only,
        );
    }
    let Ok(name) = percent_encoding::percent_decode_str(request.uri().path()).decode_utf8() else {
        front.metrics.request(Front::Http, RequestResult::Denied);
        info!(%client, path = request.uri().path(), status = 400, "HTTP name is not UTF-8");
        return text(StatusCode::BAD_REQUEST, "name is not UTF-8\n", head_only);
    };
    let name = name.strip_prefix('/').unwrap_or(&name);
    let from_proxy = via::any_from_proxy(
        request
            .headers()
            .get_all(header::VIA)
            .iter()
            .map(HeaderValue::as_bytes),
    );
    let fetch_wait = **front.fetch_wait.load();
    let lookup = Lookup {
        name,
        client,
        from_proxy,
    };
    let resolver = front.resolver.current();
    // Upstream fetches run in their own tasks: giving up here leaves the
    // fetch running, and its result lands in the cache for the TFTP retry.
    let answer = tokio::time::timeout(fetch_wait, resolver.resolve(&lookup))
        .await
        .ok();
    let ms = started.elapsed().as_millis() as u64;
    let metrics = &front.metrics;
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
                bytes.as_bytes().slice(start..start + want)
            }
            Body::Disk { .. } => {
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

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding_keeps_malformed_escapes_and_refuses_non_utf8() {
        let decode = |path: &str| {
            percent_encoding::percent_decode_str(path)
                .decode_utf8()
                .ok()
                .map(|name| name.into_owned())
        };
        assert_eq!(decode("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(decode("/a%2").as_deref(), Some("/a%2"));
        assert_eq!(decode("/a%zz").as_deref(), Some("/a%zz"));
        assert_eq!(decode("/%41").as_deref(), Some("/A"));
        assert_eq!(decode("/%ff"), None);
        assert_eq!(
            decode("/Desktops/320x212x12/List.xml").as_deref(),
            Some("/Desktops/320x212x12/List.xml")
        );
    }
}
