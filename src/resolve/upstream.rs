//! Asking one remote cluster for one name over HTTP.
//!
//! [`Upstream`] owns the one HTTP client the daemon uses to talk to clusters
//! (connection reuse, no redirects, bounded time-outs, `Via: 1.1 tftproxy`).
//! [`Upstream::fetch_address`] asks one address and classifies its answer
//! ([`AddressOutcome`]); [`Upstream::fetch_cluster`] walks a cluster's
//! replica addresses in order and reduces their answers to one
//! [`ClusterVerdict`], following the contract in `DESIGN.md`:
//!
//! | an address answers | meaning |
//! |---|---|
//! | 200 | Found (body bounded by `cache.max_file_size`) |
//! | 404, 403, 410 | NotFound — authoritative, the other addresses are not asked |
//! | 503 | Busy — try the next address |
//! | connect error, time-out, other 5xx, 3xx, other 4xx, bad body | Failed — try the next address |
//!
//! After every address: any Busy → the cluster is Busy, else Unreachable.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT_ENCODING, CONTENT_LENGTH, VIA as VIA_HEADER};
use reqwest::StatusCode;
use tokio::sync::Semaphore;

use crate::config::RemoteConfig;

/// Our token in the HTTP `Via` header, sent on every upstream request. The
/// HTTP front end answers a request carrying it from local files and caches
/// only, so proxies never forward to each other (no loops).
pub const VIA: &str = "1.1 tftproxy";

/// The pseudonym part of [`VIA`] (`received-by` in RFC 9110 terms).
const VIA_PSEUDONYM: &str = "tftproxy";

/// The `User-Agent` of upstream requests.
/// Longest a body may take to arrive, however steadily: a 73 MB firmware
/// image at 1 Mbit/s takes about 10 minutes.
pub const BODY_CEILING: Duration = Duration::from_secs(15 * 60);

pub const USER_AGENT: &str = concat!("tftproxy/", env!("CARGO_PKG_VERSION"));

/// True when a `Via` header value (possibly a comma-separated list of hops,
/// possibly with comments) contains a hop added by a tftproxy.
///
/// Each hop is `received-protocol received-by [comment]`; the hop is ours
/// when `received-by` is `tftproxy` (any case). `received-protocol` may be
/// `1.1` or `HTTP/1.1`.
pub fn is_from_proxy(headers_via_value: &str) -> bool {
    headers_via_value.split(',').any(|hop| {
        let mut words = hop.split_ascii_whitespace();
        let _protocol = words.next();
        words
            .next()
            .is_some_and(|by| by.eq_ignore_ascii_case(VIA_PSEUDONYM))
    })
}

/// The client could not be built (TLS back end initialisation, or
/// `remote.ca_file` no longer readable).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(String),
    #[error("remote.ca_file {path}: {message}")]
    CaFile { path: String, message: String },
}

/// Why one address did not give a usable answer. `Display` is written to read
/// well at the end of a log line ("… failed: connection refused").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FailReason {
    /// The TCP (or TLS) connection could not be established.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection was not established within `remote.connect_timeout`.
    #[error("connect timed out after {}", humantime::format_duration(*after))]
    ConnectTimeout { after: Duration },
    /// No response within `remote.request_timeout`, or a body still not
    /// complete after [`BODY_CEILING`].
    #[error("no complete answer within {}", humantime::format_duration(*after))]
    Timeout { after: Duration },
    /// The body stopped arriving: no data for `remote.request_timeout`.
    #[error("the body stalled: no data for {}", humantime::format_duration(*after))]
    Stalled { after: Duration },
    /// A status that is neither 200, 404/403/410 nor 503 (3xx are not followed).
    #[error("unexpected HTTP status {}", status_text(*.0))]
    Status(u16),
    /// The body did not match its `Content-Length`.
    #[error("body is {got} bytes, Content-Length said {expected}")]
    BodyLength { expected: u64, got: u64 },
    /// The body is larger than `cache.max_file_size`.
    #[error("file larger than the {limit}-byte limit (cache.max_file_size)")]
    TooLarge { limit: u64 },
    /// The body could not be read (connection reset, bad chunk encoding, …).
    #[error("error reading the body: {0}")]
    Body(String),
    /// The request failed before a response arrived, for another reason
    /// (connection closed early, malformed response, …).
    #[error("request failed: {0}")]
    Request(String),
    /// The name cannot be expressed as a URL path on this base URL
    /// (a `.`/`..` segment, or a malformed base URL).
    #[error("cannot build a URL: {0}")]
    InvalidUrl(String),
}

/// The certificates of `remote.ca_file`, trusted on top of the public roots.
/// The file was checked when the configuration was loaded; it is read again
/// here (it may have changed since).
fn extra_roots(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, UpstreamError> {
    let error = |message: String| UpstreamError::CaFile {
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| error(format!("cannot be read: {e}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| error(innermost(&e)))?;
    if certs.is_empty() {
        return Err(error("holds no PEM certificate".into()));
    }
    Ok(certs)
}

fn status_text(code: u16) -> String {
    match StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{code} {reason}"),
        None => code.to_string(),
    }
}

/// What one address answered, classified.
#[derive(Clone, PartialEq, Eq)]
pub enum AddressOutcome {
    /// 200 with a complete body.
    Found(Bytes),
    /// 404, 403 or 410.
    NotFound,
    /// 503.
    Busy,
    /// Anything else.
    Failed(FailReason),
}

impl fmt::Debug for AddressOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressOutcome::Found(body) => write!(f, "Found(<{} bytes>)", body.len()),
            AddressOutcome::NotFound => f.write_str("NotFound"),
            AddressOutcome::Busy => f.write_str("Busy"),
            AddressOutcome::Failed(reason) => f.debug_tuple("Failed").field(reason).finish(),
        }
    }
}

impl fmt::Display for AddressOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressOutcome::Found(body) => write!(f, "found ({} bytes)", body.len()),
            AddressOutcome::NotFound => f.write_str("not found"),
            AddressOutcome::Busy => f.write_str("busy"),
            AddressOutcome::Failed(reason) => write!(f, "failed: {reason}"),
        }
    }
}

/// One address's answer with how long it took and the HTTP status, if any
/// response arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressReport {
    pub outcome: AddressOutcome,
    pub elapsed: Duration,
    pub status: Option<u16>,
}

/// What a cluster (all its addresses together) answered for a name.
#[derive(Clone, PartialEq, Eq)]
pub enum ClusterVerdict {
    /// The address at index `address` (in the cluster's list) served `body`.
    Found { body: Bytes, address: usize },
    /// An address said the name does not exist on this cluster.
    NotFound,
    /// No address served it and at least one said 503.
    Busy,
    /// Every address failed.
    Unreachable,
}

impl fmt::Debug for ClusterVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterVerdict::Found { body, address } => {
                write!(
                    f,
                    "Found {{ body: <{} bytes>, address: {address} }}",
                    body.len()
                )
            }
            ClusterVerdict::NotFound => f.write_str("NotFound"),
            ClusterVerdict::Busy => f.write_str("Busy"),
            ClusterVerdict::Unreachable => f.write_str("Unreachable"),
        }
    }
}

impl fmt::Display for ClusterVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterVerdict::Found { body, address } => {
                write!(f, "found ({} bytes, address #{})", body.len(), address + 1)
            }
            ClusterVerdict::NotFound => f.write_str("not found"),
            ClusterVerdict::Busy => f.write_str("busy"),
            ClusterVerdict::Unreachable => f.write_str("unreachable"),
        }
    }
}

/// A cluster's verdict and, in the order asked, each address's report (for
/// logs, metrics and `tftproxy locate`). Addresses not asked are absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterReport {
    pub verdict: ClusterVerdict,
    pub addresses: Vec<(String, AddressReport)>,
}

/// The HTTP client for remote clusters. Cheap to clone (the connection pool
/// is shared).
#[derive(Clone, Debug)]
pub struct Upstream {
    client: reqwest::Client,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_file_size: u64,
    /// Requests in flight per address (`remote.max_requests_per_address`).
    per_address: Arc<AddressLimits>,
}

/// One semaphore per base URL, made on first use.
#[derive(Debug)]
struct AddressLimits {
    permits: usize,
    by_address: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl AddressLimits {
    fn of(&self, base_url: &str) -> Arc<Semaphore> {
        let mut map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(base_url.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.permits)))
            .clone()
    }
}

impl Upstream {
    /// Builds the shared client from `[remote]` and `cache.max_file_size`.
    pub fn new(remote: &RemoteConfig, max_file_size: u64) -> Result<Upstream, UpstreamError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        headers.insert(VIA_HEADER, HeaderValue::from_static(VIA));
        let mut builder = reqwest::Client::builder().use_rustls_tls();
        if let Some(path) = &remote.ca_file {
            for cert in extra_roots(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            // Clusters are reached directly; an HTTP_PROXY in the service's
            // environment must not silently reroute phone configurations.
            .no_proxy()
            .connect_timeout(remote.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| UpstreamError::Client(innermost(&e)))?;
        Ok(Upstream {
            client,
            connect_timeout: remote.connect_timeout,
            request_timeout: remote.request_timeout,
            max_file_size,
            per_address: Arc::new(AddressLimits {
                permits: remote.max_requests_per_address.max(1),
                by_address: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The body size limit (`cache.max_file_size`).
    pub fn max_file_size(&self) -> u64 {
        self.max_file_size
    }

    /// Asks one address (`base_url`, e.g. `http://192.0.2.10:6970`) for `name`
    /// and classifies the answer. Never panics, never returns an error: every
    /// failure is an [`AddressOutcome::Failed`] with its reason.
    pub async fn fetch_address(&self, base_url: &str, name: &str) -> AddressReport {
        // Waiting for a turn is not the address's latency: start the clock
        // once the request may go.
        let limit = self.per_address.of(base_url);
        let _turn = limit.acquire().await;
        let start = Instant::now();
        let (outcome, status) = self.fetch_inner(base_url, name).await;
        AddressReport {
            outcome,
            elapsed: start.elapsed(),
            status,
        }
    }

    async fn fetch_inner(&self, base_url: &str, name: &str) -> (AddressOutcome, Option<u16>) {
        let url = match build_url(base_url, name) {
            Ok(url) => url,
            Err(reason) => return (AddressOutcome::Failed(reason), None),
        };
        // `request_timeout` bounds the wait for the response head, then each
        // wait for body data: a firmware image arriving steadily over a slow
        // WAN link is not cut off, a stalled one is.
        let send = self.client.get(url.as_str()).send();
        let response = match tokio::time::timeout(self.request_timeout, send).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return (AddressOutcome::Failed(self.classify(&e, false)), None),
            Err(_) => {
                let reason = FailReason::Timeout {
                    after: self.request_timeout,
                };
                return (AddressOutcome::Failed(reason), None);
            }
        };
        let code = response.status().as_u16();
        let outcome = match code {
            200 => match self.read_body(response).await {
                Ok(body) => AddressOutcome::Found(body),
                Err(reason) => AddressOutcome::Failed(reason),
            },
            404 | 403 | 410 => AddressOutcome::NotFound,
            503 => AddressOutcome::Busy,
            other => AddressOutcome::Failed(FailReason::Status(other)),
        };
        (outcome, Some(code))
    }

    /// Reads a 200 body completely, bounded by `max_file_size` (never holds
    /// more than the limit) and checked against `Content-Length`.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes, FailReason> {
        let limit = self.max_file_size;
        let expected = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if expected.is_some_and(|len| len > limit) {
            return Err(FailReason::TooLarge { limit });
        }
        let capacity = expected.unwrap_or(0).min(limit).min(16 << 20);
        let mut body = BytesMut::with_capacity(capacity as usize);
        let ceiling = tokio::time::Instant::now() + BODY_CEILING;
        loop {
            let next = tokio::time::timeout(self.request_timeout, response.chunk());
            let chunk = match tokio::time::timeout_at(ceiling, next).await {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(_)) => {
                    return Err(FailReason::Stalled {
                        after: self.request_timeout,
                    })
                }
                Err(_) => {
                    return Err(FailReason::Timeout {
                        after: BODY_CEILING,
                    })
                }
            };
            match chunk {
                Ok(Some(chunk)) => {
                    if body.len() as u64 + chunk.len() as u64 > limit {
                        return Err(FailReason::TooLarge { limit });
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    let got = body.len() as u64;
                    return Err(match expected {
                        // The peer closed cleanly (FIN) before Content-Length
                        // bytes; a reset or a time-out is reported as such.
                        Some(expected)
                            if got < expected
                                && !e.is_timeout()
                                && !matches!(io_error_kind(&e),
                                    Some(k) if k != std::io::ErrorKind::UnexpectedEof) =>
                        {
                            FailReason::BodyLength { expected, got }
                        }
                        _ => self.classify(&e, true),
                    });
                }
            }
        }
        let got = body.len() as u64;
        if let Some(expected) = expected {
            if got != expected {
                return Err(FailReason::BodyLength { expected, got });
            }
        }
        Ok(body.freeze())
    }

    fn classify(&self, e: &reqwest::Error, reading_body: bool) -> FailReason {
        if e.is_connect() {
            if e.is_timeout() {
                FailReason::ConnectTimeout {
                    after: self.connect_timeout,
                }
            } else {
                FailReason::Connect(innermost(e))
            }
        } else if e.is_timeout() {
            FailReason::Timeout {
                after: self.request_timeout,
            }
        } else if reading_body || e.is_body() || e.is_decode() {
            FailReason::Body(innermost(e))
        } else if e.is_builder() {
            FailReason::InvalidUrl(innermost(e))
        } else {
            FailReason::Request(innermost(e))
        }
    }

    /// Asks a cluster's addresses (replicas, in order) for `name` until one
    /// gives an authoritative answer (Found or NotFound). Busy and failed
    /// addresses are skipped; each failure is logged at `warn`.
    pub async fn fetch_cluster(&self, addresses: &[String], name: &str) -> ClusterReport {
        let mut reports = Vec::with_capacity(addresses.len());
        let mut busy = false;
        for (index, base_url) in addresses.iter().enumerate() {
            let report = self.fetch_address(base_url, name).await;
            let verdict = match &report.outcome {
                AddressOutcome::Found(body) => Some(ClusterVerdict::Found {
                    body: body.clone(),
                    address: index,
                }),
                AddressOutcome::NotFound => Some(ClusterVerdict::NotFound),
                AddressOutcome::Busy => {
                    tracing::debug!(
                        upstream = %base_url,
                        name,
                        elapsed_ms = report.elapsed.as_millis() as u64,
                        "upstream busy (503), trying the next address"
                    );
                    busy = true;
                    None
                }
                AddressOutcome::Failed(reason) => {
                    tracing::warn!(
                        upstream = %base_url,
                        name,
                        elapsed_ms = report.elapsed.as_millis() as u64,
                        "upstream request failed: {reason}"
                    );
                    None
                }
            };
            reports.push((base_url.clone(), report));
            if let Some(verdict) = verdict {
                return ClusterReport {
                    verdict,
                    addresses: reports,
                };
            }
        }
        let verdict = if busy {
            ClusterVerdict::Busy
        } else {
            ClusterVerdict::Unreachable
        };
        ClusterReport {
            verdict,
            addresses: reports,
        }
    }
}

impl Upstream {
    /// Asks every address of a cluster at once and waits for all of them
    /// (for `tftproxy locate`: each replica's own answer). The verdict is the
    /// one [`Upstream::fetch_cluster`] would reach walking the same answers
    /// in order (see [`cluster_verdict`]). Failures are not logged here.
    pub async fn fetch_every_address(&self, addresses: &[String], name: &str) -> ClusterReport {
        let reports = futures::future::join_all(
            addresses
                .iter()
                .map(|base_url| self.fetch_address(base_url, name)),
        )
        .await;
        let addresses: Vec<(String, AddressReport)> =
            addresses.iter().cloned().zip(reports).collect();
        ClusterReport {
            verdict: cluster_verdict(&addresses),
            addresses,
        }
    }
}

/// The cluster verdict for address answers listed in the cluster's order:
/// the first Found or NotFound decides; otherwise Busy if any address said
/// 503, else Unreachable.
pub fn cluster_verdict(addresses: &[(String, AddressReport)]) -> ClusterVerdict {
    let mut busy = false;
    for (index, (_, report)) in addresses.iter().enumerate() {
        match &report.outcome {
            AddressOutcome::Found(body) => {
                return ClusterVerdict::Found {
                    body: body.clone(),
                    address: index,
                }
            }
            AddressOutcome::NotFound => return ClusterVerdict::NotFound,
            AddressOutcome::Busy => busy = true,
            AddressOutcome::Failed(_) => {}
        }
    }
    if busy {
        ClusterVerdict::Busy
    } else {
        ClusterVerdict::Unreachable
    }
}

/// `{base_url}/{name}` with each of the name's `/`-separated segments
/// percent-encoded (everything but RFC 3986 unreserved characters), so that
/// spaces, `?`, `#`, `%`, `\` and non-ASCII reach the server intact. Leading
/// `/` of the name and trailing `/` of the base are not doubled. `.` and `..`
/// segments are refused: URL normalisation would silently remove them
/// (even percent-encoded), so the server would be asked for another name.
pub fn build_url(base_url: &str, name: &str) -> Result<String, FailReason> {
    let base = base_url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(FailReason::InvalidUrl(format!(
            "base URL {base_url:?} is not http(s)"
        )));
    }
    let name = name.trim_start_matches('/');
    let mut url = String::with_capacity(base.len() + 1 + name.len() * 3);
    url.push_str(base);
    for segment in name.split('/') {
        if segment == "." || segment == ".." {
            return Err(FailReason::InvalidUrl(format!(
                "name {name:?} has a {segment:?} segment"
            )));
        }
        url.push('/');
        encode_segment(segment, &mut url);
    }
    Ok(url)
}

fn encode_segment(segment: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in segment.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xF) as usize] as char);
        }
    }
}

/// The most specific message in an error's source chain ("Connection
/// refused (os error 111)" rather than "error sending request for url …").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// The kind of the first I/O error in an error's source chain.
fn io_error_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        current = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_plain_name() {
        assert_eq!(
            build_url("http://192.0.2.10:6970", "SEP001122334455.cnf.xml").unwrap(),
            "http://192.0.2.10:6970/SEP001122334455.cnf.xml"
        );
    }

    #[test]
    fn url_keeps_slashes_and_strips_leading_one() {
        assert_eq!(
            build_url("http://h:6970/", "/Desktops/320x212x12/List.xml").unwrap(),
            "http://h:6970/Desktops/320x212x12/List.xml"
        );
        assert_eq!(
            build_url("https://h:6972", "/mk-sip.jar").unwrap(),
            "https://h:6972/mk-sip.jar"
        );
    }

    #[test]
    fn url_encodes_odd_characters() {
        assert_eq!(
            build_url("http://h", "a b?c#d%e+f&g;h").unwrap(),
            "http://h/a%20b%3Fc%23d%25e%2Bf%26g%3Bh"
        );
        assert_eq!(
            build_url("http://h", "dir\\file").unwrap(),
            "http://h/dir%5Cfile"
        );
        assert_eq!(
            build_url("http://h", "é.xml").unwrap(),
            "http://h/%C3%A9.xml"
        );
        assert_eq!(
            build_url("http://h", "a-b_c~d.e").unwrap(),
            "http://h/a-b_c~d.e"
        );
    }

    #[test]
    fn url_refuses_dot_segments_and_bad_base() {
        assert!(matches!(
            build_url("http://h", "../etc/passwd"),
            Err(FailReason::InvalidUrl(_))
        ));
        assert!(matches!(
            build_url("http://h", "a/./b"),
            Err(FailReason::InvalidUrl(_))
        ));
        assert!(matches!(
            build_url("ftp://h", "a"),
            Err(FailReason::InvalidUrl(_))
        ));
        // Dots inside a segment are fine.
        assert!(build_url("http://h", "...x/..y").is_ok());
    }

    #[test]
    fn url_is_accepted_by_reqwest_unchanged() {
        let url = build_url("http://127.0.0.1:6970", "a b/c%d/é").unwrap();
        let parsed = reqwest::Url::parse(&url).unwrap();
        assert_eq!(parsed.as_str(), url);
    }

    #[test]
    fn via_detection() {
        assert!(is_from_proxy(VIA));
        assert!(is_from_proxy("1.1 tftproxy"));
        assert!(is_from_proxy("HTTP/1.1 TFTProxy"));
        assert!(is_from_proxy("1.0 fred, 1.1 tftproxy"));
        assert!(is_from_proxy("1.1 tftproxy (tftproxy/0.1.0), 1.1 squid"));
        assert!(is_from_proxy("  1.1   tftproxy  "));
        assert!(!is_from_proxy(""));
        assert!(!is_from_proxy("1.1 squid"));
        assert!(!is_from_proxy("1.1 example.com (tftproxy)"));
        assert!(!is_from_proxy("tftproxy"));
        assert!(!is_from_proxy("1.1 tftproxy2"));
    }

    #[test]
    fn fail_reasons_read_well() {
        assert_eq!(
            FailReason::Status(302).to_string(),
            "unexpected HTTP status 302 Found"
        );
        assert_eq!(
            FailReason::Status(599).to_string(),
            "unexpected HTTP status 599"
        );
        assert_eq!(
            FailReason::Timeout {
                after: Duration::from_millis(500)
            }
            .to_string(),
            "no complete answer within 500ms"
        );
        assert_eq!(
            FailReason::BodyLength {
                expected: 10,
                got: 4
            }
            .to_string(),
            "body is 4 bytes, Content-Length said 10"
        );
        assert_eq!(
            FailReason::TooLarge { limit: 1024 }.to_string(),
            "file larger than the 1024-byte limit (cache.max_file_size)"
        );
    }

    #[test]
    fn verdict_of_listed_answers() {
        let report = |outcome| {
            (
                "http://h".to_string(),
                AddressReport {
                    outcome,
                    elapsed: Duration::ZERO,
                    status: None,
                },
            )
        };
        let failed = || AddressOutcome::Failed(FailReason::Status(500));
        assert_eq!(
            cluster_verdict(&[report(failed()), report(AddressOutcome::NotFound)]),
            ClusterVerdict::NotFound
        );
        assert_eq!(
            cluster_verdict(&[
                report(AddressOutcome::Busy),
                report(AddressOutcome::Found(Bytes::from_static(b"x")))
            ]),
            ClusterVerdict::Found {
                body: Bytes::from_static(b"x"),
                address: 1
            }
        );
        assert_eq!(
            cluster_verdict(&[report(failed()), report(AddressOutcome::Busy)]),
            ClusterVerdict::Busy
        );
        assert_eq!(
            cluster_verdict(&[report(failed())]),
            ClusterVerdict::Unreachable
        );
        assert_eq!(cluster_verdict(&[]), ClusterVerdict::Unreachable);
    }

    #[test]
    fn outcome_debug_does_not_dump_bodies() {
        let outcome = AddressOutcome::Found(Bytes::from(vec![0u8; 4096]));
        assert_eq!(format!("{outcome:?}"), "Found(<4096 bytes>)");
    }
}
