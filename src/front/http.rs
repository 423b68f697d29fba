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
//! A request's `Via` chain ([`crate::via`]) goes to the resolver, which
//! forwards it with our entry added, or answers from local files and caches
//! only when the chain already names us (a loop) or is at
//! `remote.max_hops`. Every response names us, so that another tftproxy
//! (and `tftproxy locate`) can tell who answered and how:
//!
//! | header | value |
//! |---|---|
//! | `Server` | `tftproxy/<version>` |
//! | `Via` | our entry, `1.1 tftproxy-<id>` |
//! | `tftproxy-source` (200) | `local`, `cache:<cluster>` or `cluster:<cluster>` |
//! | `tftproxy-partial` (404) | `loop`, `max-hops` or `upstream`: the "not found" may miss files |
//!
//! A client outside `http.allow` (when set) gets `403` and the connection
//! is closed.
//!
//! Connections are capped at `http.max_connections`; the other bounds on
//! slow or hostile clients are [`super::conn`]'s. Targets longer than
//! [`MAX_URI_BYTES`] that fit in the head get `414`.
//!
//! Files from the local root are streamed from disk in chunks read on the
//! blocking pool ([`super::file_body`]); a 70 MB firmware is never read
//! whole into memory. A single byte `Range` is honoured (`206`, `416`:
//! [`super::range`]) so a firmware download can resume.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::Body as HttpBody;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::conn::{accept_until_stopped, serve_http1, start_listener};
use super::file_body::FileBody;
use super::range::{self, Requested};
use super::slots::Slots;
use super::ListenerHandle;
use crate::config::{AllowList, HttpConfig};
use crate::metrics::{ClientRefusal, Front, FrontLabels, Metrics, RequestResult};
use crate::resolve::{Answer, Lookup, Resolved, Resolver, ResolverHandle};
use crate::via::{Chain, PARTIAL_HEADER, SOURCE_HEADER};

/// Longest request target accepted (longer: `414`).
pub(crate) const MAX_URI_BYTES: usize = 1024;
/// Bound on producing a response head once the request is read, beyond
/// `fetch_wait` (the resolve itself is cut at `fetch_wait`).
const RESPONSE_SLACK: Duration = Duration::from_secs(5);
/// The `Retry-After` value sent with `503`, in seconds: phones fall back to
/// TFTP at once anyway.
const RETRY_AFTER: &str = "1";
/// The `Server` of every response: another tftproxy recognises us by it.
const SERVER: &str = concat!("tftproxy/", env!("CARGO_PKG_VERSION"));

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
        let front = self.clone();
        start_listener(configured, listener, |listener, stop| {
            front.accept(listener, stop)
        })
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
    let Some(name) = decode_path(request.uri().path()) else {
        front.metrics.request(Front::Http, RequestResult::Denied);
        info!(%client, path = request.uri().path(), status = 400, "HTTP name is not UTF-8");
        return text(StatusCode::BAD_REQUEST, "name is not UTF-8\n", head_only);
    };
    let name = name.as_str();
    let request_range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let via = Chain::parse(
        request
            .headers()
            .get_all(header::VIA)
            .iter()
            .map(HeaderValue::as_bytes),
    );
    let fetch_wait = **front.fetch_wait.load();
    let lookup = Lookup { name, client, via };
    let resolver = front.resolver.current();
    // Upstream fetches run in their own tasks: giving up here leaves the
    // fetch running, and its result lands in the cache for the TFTP retry.
    let resolved = tokio::time::timeout(fetch_wait, resolver.resolve_chained(&lookup))
        .await
        .ok();
    let ms = started.elapsed().as_millis() as u64;
    let metrics = &front.metrics;
    let via = &lookup.via;
    let mut extra: Option<(&'static str, String)> = None;
    let (result, response) = match resolved.map(|r: Resolved| (r.answer, r.partial)) {
        Some((Answer::File { body, source }, _)) => {
            let len = body.len();
            let range_header = request_range.as_deref();
            let (status, range) = match range::requested(range_header, len) {
                Requested::Whole => (StatusCode::OK, 0..len),
                Requested::Part(range) => (StatusCode::PARTIAL_CONTENT, range),
                Requested::Unsatisfiable => {
                    info!(%client, name, %source, bytes = len, ms, status = 416, range = range_header, "HTTP range not satisfiable");
                    let mut response = text(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "range not satisfiable\n",
                        head_only,
                    );
                    let content_range = format!("bytes */{len}");
                    if let Ok(value) = HeaderValue::from_str(&content_range) {
                        response.headers_mut().insert(header::CONTENT_RANGE, value);
                    }
                    return finish(metrics, RequestResult::Denied, response, &resolver, None);
                }
            };
            let sent = range.end - range.start;
            info!(%client, name, %source, %via, bytes = sent, ms, method = %method, status = status.as_u16(), "HTTP served");
            extra = Some((SOURCE_HEADER, source.to_string()));
            let mut response = if head_only {
                let mut response = Response::new(HttpBody::empty());
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(sent));
                response
            } else {
                let counter = metrics
                    .bytes_sent
                    .get_or_create(&FrontLabels { front: Front::Http })
                    .clone();
                Response::new(HttpBody::new(FileBody::new(body, range.clone(), counter)))
            };
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if status == StatusCode::PARTIAL_CONTENT {
                let content_range = format!("bytes {}-{}/{len}", range.start, range.end - 1);
                if let Ok(value) = HeaderValue::from_str(&content_range) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
            }
            (RequestResult::Served, response)
        }
        Some((Answer::NotFound, partial)) => {
            let partial = partial.map(|p| p.as_str());
            info!(%client, name, %via, partial, status = 404, ms, "File not found");
            extra = partial.map(|p| (PARTIAL_HEADER, p.to_owned()));
            (
                RequestResult::NotFound,
                text(StatusCode::NOT_FOUND, "File not found\n", head_only),
            )
        }
        Some((Answer::Denied(reason), _)) => {
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
        Some((Answer::RetryLater, _)) => {
            info!(%client, name, %via, status = 503, ms, "busy, retry later");
            (RequestResult::Busy, busy(head_only))
        }
        None => {
            metrics.http_fetch_wait_expired.inc();
            info!(%client, name, status = 503, ms, "not resolved within http.fetch_wait; retry later");
            (RequestResult::Busy, busy(head_only))
        }
    };
    finish(metrics, result, response, &resolver, extra)
}

/// The name a request path asks for: `%XX` escapes decoded (malformed ones
/// kept literally), the leading `/` dropped; `None` when the result is not
/// UTF-8.
pub(super) fn decode_path(path: &str) -> Option<String> {
    let name = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    Some(name.strip_prefix('/').unwrap_or(&name).to_owned())
}

/// Counts the request and adds the headers every answer carries: no
/// caching, who we are (`Server`, our `Via` entry, so a proxy in front of us
/// can tell it asked a tftproxy) and `extra` (`tftproxy-source`,
/// `tftproxy-partial`).
fn finish(
    metrics: &Metrics,
    result: RequestResult,
    mut response: Response<HttpBody>,
    resolver: &Resolver,
    extra: Option<(&'static str, String)>,
) -> Response<HttpBody> {
    metrics.request(Front::Http, result);
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::SERVER, HeaderValue::from_static(SERVER));
    if let Ok(ours) = HeaderValue::from_str(&resolver.via_id().to_string()) {
        headers.insert(header::VIA, ours);
    }
    if let Some((name, value)) = extra {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
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
