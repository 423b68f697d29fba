//! Asking a remote cluster for a name over HTTP.
//!
//! [`Upstream`] owns the one HTTP client the daemon uses to talk to clusters
//! (connection reuse, no redirects, bounded time-outs, the `Via` loop guard
//! of [`crate::via`]). [`Upstream::fetch_address`] asks one address and
//! classifies its answer ([`AddressOutcome`], table in `answer.rs`);
//! [`Upstream::fetch_cluster`] walks a cluster's replica addresses in order
//! until one is authoritative (skipping those an [`AddressGate`] says are
//! held down), and [`Upstream::fetch_every_address`] asks
//! them all at once (for `locate`); both reduce the answers with the same
//! rule, [`crate::verdict::over_replicas`].
//!
//! A leaf: it knows HTTP and the classification, nothing of caches, homes
//! or priorities (that is the resolver's job).

mod answer;
mod body;
mod limits;
mod peer;
mod url;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prometheus_client::metrics::gauge::Gauge;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
    RETRY_AFTER, VIA,
};

use crate::config::RemoteConfig;
use crate::via::ViaId;

pub use answer::{
    AddressOutcome, AddressReport, ClusterFound, ClusterReport, ClusterVerdict, Conditional,
    Declined, FailReason, Validators,
};
use body::foreign_encoding;
pub use limits::WaitLine;
use limits::{AddressLimits, Budget};
pub use peer::Peer;
pub use url::build_url;

/// Longest a body may take to arrive, however steadily: a 73 MB firmware
/// image at 1 Mbit/s takes about 10 minutes.
pub const BODY_CEILING: Duration = Duration::from_secs(15 * 60);

/// The `User-Agent` of upstream requests.
pub const USER_AGENT: &str = concat!("tftproxy/", env!("CARGO_PKG_VERSION"));

/// The client could not be built (TLS back end initialisation, or
/// `remote.ca_file` no longer readable).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(String),
    #[error("remote.ca_file {path}: {message}")]
    CaFile { path: String, message: String },
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

/// Which of a cluster's addresses may be asked now. The upstream client
/// knows addresses, not their history: the resolver keeps which are held
/// down and answers here, at the moment each address would be asked (so
/// that the one request that tries an address again is the one that asks).
pub trait AddressGate: Sync {
    /// `None`: ask the address at `index` (in the cluster's list) now.
    /// `Some(remaining)`: it is held down that long still; skip it.
    fn held_down(&self, index: usize) -> Option<Duration>;

    /// The cluster's line of fetches waiting for a turn
    /// (`remote.max_queued`); `None`: no bound.
    fn wait_line(&self) -> Option<&Arc<WaitLine>> {
        None
    }

    /// Resolves when nobody waits for this fetch's answer (for now: a
    /// request may still join it). Never, by default.
    fn unwanted(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }

    /// Gives the fetch up if nobody waits for it: true when it may stop
    /// (nobody can join it any more), false while somebody waits.
    fn withdraw(&self) -> bool {
        false
    }
}

/// Resolves once nobody waits for the fetch and it has been given up.
async fn abandoned(gate: &dyn AddressGate) {
    loop {
        gate.unwanted().await;
        if gate.withdraw() {
            return;
        }
    }
}

/// Every address may be asked (no hold-down).
#[derive(Clone, Copy, Debug, Default)]
pub struct AskEvery;

impl AddressGate for AskEvery {
    fn held_down(&self, _: usize) -> Option<Duration> {
        None
    }
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
    /// `remote.max_queued`, for each cluster's [`WaitLine`].
    max_queued: usize,
    /// `remote.min_body_rate` (bytes per second; 0: none).
    min_body_rate: u64,
    /// `remote.max_inflight_bytes`.
    budget: Budget,
    /// Our own `Via` entry: the chain of a request that came from no proxy.
    own_via: HeaderValue,
}

impl Upstream {
    /// Builds the shared client from `[remote]` and `cache.max_file_size`.
    pub fn new(remote: &RemoteConfig, max_file_size: u64) -> Result<Upstream, UpstreamError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
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
            per_address: Arc::new(AddressLimits::new(remote.max_requests_per_address.max(1))),
            max_queued: remote.max_queued,
            min_body_rate: remote.min_body_rate,
            budget: Budget::new(remote.max_inflight_bytes, Gauge::default()),
            own_via: Upstream::via_value(&ViaId::from_host_name().to_string()),
        })
    }

    /// The same client counting the bytes of bodies being received in
    /// `gauge` (`tftproxy_upstream_inflight_bytes`): the budget of
    /// `remote.max_inflight_bytes` is checked against it, so clients that
    /// share it (the daemon's, across reloads) share the budget.
    pub fn with_inflight_gauge(mut self, gauge: Gauge) -> Upstream {
        self.budget = Budget::new(self.budget.limit, gauge);
        self
    }

    /// The bytes of bodies being received now, over every client sharing
    /// this one's budget.
    pub fn inflight_bytes(&self) -> i64 {
        self.budget.gauge().get()
    }

    /// The same client naming this instance `id` in its `Via` entry.
    pub fn with_via_id(mut self, id: &ViaId) -> Upstream {
        self.own_via = Upstream::via_value(&id.to_string());
        self
    }

    /// A `Via` value (a chain from [`crate::via::Chain::forward`]) as a
    /// header value. The chain's text came from header values and our
    /// entry, so it is valid; if not, the tftproxy entries alone are kept.
    pub fn via_value(chain: &str) -> HeaderValue {
        HeaderValue::from_bytes(chain.as_bytes()).unwrap_or_else(|_| {
            let kept: Vec<&str> = chain
                .split(", ")
                .filter(|e| e.is_ascii() && e.contains(crate::via::PSEUDONYM))
                .collect();
            HeaderValue::from_str(&kept.join(", ")).unwrap_or_else(|_| HeaderValue::from_static(""))
        })
    }

    /// Asks one address (`base_url`, e.g. `http://192.0.2.10:6970`) for `name`
    /// and classifies the answer. Never panics, never returns an error: every
    /// failure is an [`AddressOutcome::Failed`] with its reason. The request
    /// carries our own `Via` entry alone.
    pub async fn fetch_address(&self, base_url: &str, name: &str) -> AddressReport {
        self.fetch_address_with(base_url, name, &self.own_via, None)
            .await
    }

    /// [`Upstream::fetch_address`] with `via` as the `Via` header (the
    /// incoming chain and our entry).
    pub async fn fetch_address_via(
        &self,
        base_url: &str,
        name: &str,
        via: &HeaderValue,
    ) -> AddressReport {
        self.fetch_address_with(base_url, name, via, None).await
    }

    /// [`Upstream::fetch_address`], conditional on `held` if given (a 304
    /// is then [`AddressOutcome::NotModified`]).
    pub async fn fetch_address_if(
        &self,
        base_url: &str,
        name: &str,
        held: Option<&Conditional>,
    ) -> AddressReport {
        self.fetch_address_with(base_url, name, &self.own_via, held)
            .await
    }

    /// [`Upstream::fetch_address`] with `via` as the `Via` header and,
    /// when a copy is `held`, conditional on its validators.
    pub async fn fetch_address_with(
        &self,
        base_url: &str,
        name: &str,
        via: &HeaderValue,
        held: Option<&Conditional>,
    ) -> AddressReport {
        self.fetch_address_gated(base_url, name, via, held, &AskEvery)
            .await
    }

    /// [`Upstream::fetch_address_with`] as a cluster walk asks: through
    /// the cluster's wait line, leaving it when `gate` says nobody waits
    /// any more.
    async fn fetch_address_gated(
        &self,
        base_url: &str,
        name: &str,
        via: &HeaderValue,
        held: Option<&Conditional>,
        gate: &dyn AddressGate,
    ) -> AddressReport {
        let turns = self.per_address.of(base_url);
        let _turn = match turns.permits.clone().try_acquire_owned() {
            Ok(turn) => Some(turn),
            Err(_) => {
                let _place = match gate.wait_line().map(|line| line.join(self.max_queued)) {
                    Some(None) => {
                        return AddressReport::of(AddressOutcome::Declined(Declined::QueueFull))
                    }
                    Some(place) => place,
                    None => None,
                };
                let _waiting = turns.wait();
                tokio::select! {
                    turn = turns.permits.clone().acquire_owned() => turn.ok(),
                    () = abandoned(gate) => {
                        return AddressReport::of(AddressOutcome::Declined(Declined::Abandoned));
                    }
                }
            }
        };
        // Waiting for a turn is not the address's latency: start the clock
        // once the request may go.
        let start = Instant::now();
        let mut report = AddressReport::of(AddressOutcome::NotFound);
        // Until its answer begins, a fetch nobody waits for gives its turn
        // up to one somebody waits for (a hung cluster must not keep the
        // turns of phones that left); once a body flows, it may finish. It
        // is given up only then: a slow answer nobody else needs the turn
        // for goes on, and the phone's retry joins it.
        let give_way = async {
            loop {
                turns.someone_waits().await;
                gate.unwanted().await;
                if turns.is_wanted_elsewhere() && gate.withdraw() {
                    return;
                }
                // Either changed meanwhile: wait for the next change.
                tokio::task::yield_now().await;
            }
        };
        report.outcome = self
            .fetch_inner(base_url, name, via, held, &mut report, give_way)
            .await;
        report.elapsed = start.elapsed();
        report
    }

    /// One request; fills `report`'s status, `Retry-After`, peer and
    /// validators as the answer gives them, and returns its outcome.
    async fn fetch_inner(
        &self,
        base_url: &str,
        name: &str,
        via: &HeaderValue,
        held: Option<&Conditional>,
        report: &mut AddressReport,
        give_way: impl Future<Output = ()>,
    ) -> AddressOutcome {
        let url = match build_url(base_url, name) {
            Ok(url) => url,
            Err(reason) => return AddressOutcome::Failed(reason),
        };
        // `request_timeout` bounds the wait for the response head, then each
        // wait for body data: a firmware image arriving steadily over a slow
        // WAN link is not cut off, a stalled one is.
        let mut request = self.client.get(url.as_str()).header(VIA, via.clone());
        if let Some(held) = held {
            let v = &held.validators;
            if let Some(etag) = &v.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(date) = &v.last_modified {
                request = request.header(IF_MODIFIED_SINCE, date);
            }
        }
        let head = tokio::time::timeout(self.request_timeout, request.send());
        let response = tokio::select! {
            head = head => match head {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => return AddressOutcome::Failed(self.classify(&e, false)),
                Err(_) => {
                    return AddressOutcome::Failed(FailReason::Timeout {
                        after: self.request_timeout,
                    })
                }
            },
            () = give_way => return AddressOutcome::Declined(Declined::Abandoned),
        };
        let code = response.status().as_u16();
        report.status = Some(code);
        report.peer = Peer::of(response.headers());
        if code == 503 {
            report.retry_after = retry_after(response.headers(), std::time::SystemTime::now());
        }
        if code == 200 {
            let header = |name| {
                let value = response.headers().get(name)?.to_str().ok()?;
                Some(value.to_owned())
            };
            report.validators.etag = header(ETAG);
            report.validators.last_modified = header(LAST_MODIFIED);
        }
        match code {
            304 if held.is_some() => {
                AddressOutcome::NotModified(held.map(|h| h.body.clone()).unwrap_or_default())
            }
            200 => match foreign_encoding(response.headers()) {
                Some(coding) => AddressOutcome::Failed(FailReason::ContentEncoding(coding)),
                None => match self.read_body(response).await {
                    Ok(body) => AddressOutcome::Found(body.into()),
                    Err(outcome) => outcome,
                },
            },
            404 | 403 | 410 => AddressOutcome::NotFound,
            503 => AddressOutcome::Busy,
            other => AddressOutcome::Failed(FailReason::Status(other)),
        }
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
    /// addresses are skipped; an answer unusable for this name is logged at
    /// `warn`, an address failure at `debug` (whoever keeps the addresses'
    /// state says when one goes down).
    pub async fn fetch_cluster(&self, addresses: &[String], name: &str) -> ClusterReport {
        self.fetch_cluster_with(addresses, name, &self.own_via, &AskEvery, None)
            .await
    }

    /// [`Upstream::fetch_cluster`] with `via` as the `Via` header.
    pub async fn fetch_cluster_via(
        &self,
        addresses: &[String],
        name: &str,
        via: &HeaderValue,
    ) -> ClusterReport {
        self.fetch_cluster_with(addresses, name, via, &AskEvery, None)
            .await
    }

    /// [`Upstream::fetch_cluster`], conditional on `held` if given.
    pub async fn fetch_cluster_if(
        &self,
        addresses: &[String],
        name: &str,
        held: Option<&Conditional>,
    ) -> ClusterReport {
        self.fetch_cluster_with(addresses, name, &self.own_via, &AskEvery, held)
            .await
    }

    /// [`Upstream::fetch_cluster`] with `via` as the `Via` header, skipping
    /// the addresses `gate` says are held down (reported as failed,
    /// [`FailReason::HeldDown`], without a request, so a cluster whose every
    /// address is held down is unreachable at once), and conditional on
    /// `held` if a copy is held.
    pub async fn fetch_cluster_with(
        &self,
        addresses: &[String],
        name: &str,
        via: &HeaderValue,
        gate: &dyn AddressGate,
        held: Option<&Conditional>,
    ) -> ClusterReport {
        let mut reports = Vec::with_capacity(addresses.len());
        for (index, base_url) in addresses.iter().enumerate() {
            if let Some(remaining) = gate.held_down(index) {
                tracing::debug!(upstream = %base_url, name, "held down: not asked");
                reports.push((base_url.clone(), AddressReport::held_down(remaining)));
                continue;
            }
            let report = self
                .fetch_address_gated(base_url, name, via, held, gate)
                .await;
            let elapsed_ms = report.elapsed.as_millis() as u64;
            match &report.outcome {
                AddressOutcome::Busy => tracing::debug!(
                    upstream = %base_url,
                    name,
                    elapsed_ms,
                    "upstream busy (503), trying the next address"
                ),
                // The resolver warns once when an address goes down; an
                // answer unusable for this name is worth a warning each time.
                AddressOutcome::Failed(reason) if reason.is_address_failure() => tracing::debug!(
                    upstream = %base_url,
                    name,
                    elapsed_ms,
                    "upstream request failed: {reason}"
                ),
                AddressOutcome::Failed(reason) => tracing::warn!(
                    upstream = %base_url,
                    name,
                    elapsed_ms,
                    "upstream request failed: {reason}"
                ),
                AddressOutcome::Declined(why) => tracing::debug!(
                    upstream = %base_url,
                    name,
                    "upstream not asked: {why}"
                ),
                AddressOutcome::Found(_)
                | AddressOutcome::NotModified(_)
                | AddressOutcome::NotFound => {}
            }
            // Nobody waits for the answer: ask no further address.
            let decided = report.outcome.verdict().is_authoritative()
                || report.outcome == AddressOutcome::Declined(Declined::Abandoned);
            reports.push((base_url.clone(), report));
            if decided {
                break;
            }
        }
        ClusterReport::of(reports)
    }

    /// Asks every address of a cluster at once and waits for all of them
    /// (for `tftproxy locate`: each replica's own answer). The verdict is the
    /// one [`Upstream::fetch_cluster`] would reach walking the same answers
    /// in order. Failures are not logged here.
    pub async fn fetch_every_address(&self, addresses: &[String], name: &str) -> ClusterReport {
        let reports = futures::future::join_all(
            addresses
                .iter()
                .map(|base_url| self.fetch_address(base_url, name)),
        )
        .await;
        ClusterReport::of(addresses.iter().cloned().zip(reports).collect())
    }
}

/// A `Retry-After` header as a delay from `now`: delay-seconds or an HTTP
/// date (RFC 9110 §10.2.3). A date in the past is no delay; an unreadable
/// value is ignored.
fn retry_after(headers: &HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
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
pub(super) fn io_error_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
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
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after(&headers, now)
        };
        assert_eq!(with("2"), Some(Duration::from_secs(2)));
        assert_eq!(with(" 120 "), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(with(&later), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(with(&earlier), Some(Duration::ZERO));
        assert_eq!(with("soon"), None);
        assert_eq!(with("-1"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
