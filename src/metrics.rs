//! Counters and gauges that tell an operator what the daemon is doing,
//! exported in the Prometheus text format by the admin front.
//!
//! One [`Metrics`] lives as long as the daemon (it survives config reloads);
//! each instance has its own registry, so two daemons in one test process
//! never share counts.

use std::fmt;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label values in Prometheus style (`not_found`, not `NotFound`); log
/// lines print the same words (`Display`), so logs and metrics share one
/// vocabulary.
macro_rules! snake_case_labels {
    ($($ty:ty { $($variant:ident => $text:literal),* $(,)? })*) => {$(
        impl $ty {
            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
        }

        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

snake_case_labels! {
    Front { Tftp => "tftp", Http => "http" }
    RequestResult { Served => "served", NotFound => "not_found", Busy => "busy", Denied => "denied", ClientGone => "client_gone", Error => "error" }
    TransferOutcome {
        Completed => "completed", TimedOut => "timed_out", ClientError => "client_error",
        ReadFailed => "read_failed",
    }
    CacheKind { Location => "location", Content => "content" }
    UpstreamOutcome { Found => "found", NotModified => "not_modified", NotFound => "not_found", Busy => "busy", Failed => "failed" }
    HomeTable { Device => "device", ClientIp => "client_ip" }
    ReloadResult { Applied => "applied", Rejected => "rejected" }
    RelayResult { Relayed => "relayed", NoHome => "no_home", Unreachable => "unreachable" }
    DeclinedReason { QueueFull => "queue_full", Abandoned => "abandoned", OverBudget => "over_budget" }
    ClientRefusal {
        NotAllowed => "not_allowed", RateLimited => "rate_limited",
        TooManyTransfers => "too_many_transfers",
    }
}

/// Why a client was refused before its request was looked at: not in the
/// front's allow-list (TFTP: no answer; HTTP: 403), over
/// `tftp.client_request_rate` (no answer) or over
/// `tftp.max_transfers_per_client` (busy).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ClientRefusal {
    NotAllowed,
    RateLimited,
    TooManyTransfers,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub front: Front,
    pub reason: ClientRefusal,
}

/// Which front end a request came through.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Front {
    Tftp,
    Http,
}

/// How a request was answered (`not_found` is Cisco's "request not found").
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RequestResult {
    Served,
    NotFound,
    Busy,
    Denied,
    /// The phone stopped answering (its port closed, or every retransmit
    /// went unacknowledged): nothing wrong on our side.
    ClientGone,
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub front: Front,
    pub result: RequestResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontLabels {
    pub front: Front,
}

/// How a TFTP transfer ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum TransferOutcome {
    Completed,
    TimedOut,
    ClientError,
    ReadFailed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransferLabels {
    pub outcome: TransferOutcome,
}

/// Which cache.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum CacheKind {
    Location,
    Content,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: CacheKind,
}

/// What one upstream address answered.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum UpstreamOutcome {
    Found,
    /// 304 to a revalidation: the cached copy is current.
    NotModified,
    NotFound,
    Busy,
    Failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub cluster: String,
    pub address: String,
    pub outcome: UpstreamOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AddressLabels {
    pub cluster: String,
    pub address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

/// Why this proxy did not ask a cluster address, or stopped asking it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DeclinedReason {
    /// `remote.max_queued` fetches already waited for the cluster.
    QueueFull,
    /// Nobody waited for the answer any more.
    Abandoned,
    /// `remote.max_inflight_bytes` would have been exceeded.
    OverBudget,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeclinedLabels {
    pub cluster: String,
    pub reason: DeclinedReason,
}

/// The home-cluster tables.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum HomeTable {
    Device,
    ClientIp,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HomeLabels {
    pub table: HomeTable,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub bytes_sent: Family<FrontLabels, Counter>,
    pub active_transfers: Gauge,
    pub busy_rejections: Counter,
    /// TFTP lookups waiting on the clusters now (`tftp.max_resolving`).
    pub tftp_resolving: Gauge,
    /// TFTP requests answered busy at once because `tftp.max_resolving`
    /// lookups were already waiting on the clusters.
    pub tftp_resolving_busy: Counter,
    pub transfers: Family<TransferLabels, Counter>,
    pub retransmissions: Counter,
    pub malformed_packets: Counter,
    pub cache_hits: Family<CacheLabels, Counter>,
    pub cache_misses: Family<CacheLabels, Counter>,
    pub cache_entries: Family<CacheLabels, Gauge>,
    pub cache_bytes: Gauge,
    pub upstream_requests: Family<UpstreamLabels, Counter>,
    pub upstream_latency: Family<ClusterLabels, Histogram, fn() -> Histogram>,
    /// 1 while a cluster address is asked, 0 while it is down (held down
    /// after a failure or a `Retry-After`, until it answers again).
    pub upstream_address_up: Family<AddressLabels, Gauge>,
    /// Times a cluster address went down (one per transition, as the
    /// warning).
    pub upstream_address_downs: Family<AddressLabels, Counter>,
    /// Upstream requests not made, or cut off, by this proxy's own limits.
    pub upstream_declined: Family<DeclinedLabels, Counter>,
    /// Bodies that arrived more slowly than `remote.min_body_rate`.
    pub upstream_slow_bodies: Family<AddressLabels, Counter>,
    /// Bytes of upstream bodies being received now (bounded by
    /// `remote.max_inflight_bytes`; the budget counts on this gauge).
    pub upstream_inflight_bytes: Gauge,
    /// Fetches waiting for a turn at a cluster's addresses (bounded by
    /// `remote.max_queued`), as of the last scrape.
    pub upstream_queued: Family<ClusterLabels, Gauge>,
    pub home_entries: Family<HomeLabels, Gauge>,
    pub config_reloads: Family<ReloadLabels, Counter>,
    /// HTTP front connections open now.
    pub http_connections: Gauge,
    /// HTTP requests answered 503 because the resolve did not finish within
    /// `http.fetch_wait` (the fetch goes on and fills the cache).
    pub http_fetch_wait_expired: Counter,
    /// TFTP requests answered `busy, retry later` because the resolve did
    /// not finish within `tftp.fetch_wait` (the fetch goes on).
    pub tftp_fetch_wait_expired: Counter,
    /// Cache entries removed through the admin API.
    pub cache_purged: Counter,
    /// Request to first byte sent (TFTP: first DATA or OACK queued; HTTP:
    /// response head), by front.
    pub first_byte: Family<FrontLabels, Histogram, fn() -> Histogram>,
    /// Whole TFTP transfers, request to last ACK.
    pub transfer_duration: Histogram,
    /// Connections to the secure-config relay, by what became of them.
    pub tls_relay_connections: Family<RelayLabels, Counter>,
    /// HTTP requests whose `Via` chain already named this instance.
    pub loops_detected: Counter,
    /// HTTP requests not forwarded because their chain was at `remote.max_hops`.
    pub max_hops_reached: Counter,
    /// Requests refused for who sent them ([`ClientRefusal`]).
    pub client_refusals: Family<RefusalLabels, Counter>,
    /// Answers served from a copy older than its freshness because its
    /// clusters could not answer (stale-if-error, `cache.max_stale`).
    pub stale_served: Counter,
    /// Bytes of file contents in the persistent cache (`cache.dir`).
    pub cache_disk_bytes: Gauge,
}

/// What became of a connection to the secure-config relay.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RelayResult {
    /// Relayed to the phone's home cluster.
    Relayed,
    /// No learned home: closed at once (the phone falls back to HTTP).
    NoHome,
    /// No address of the home cluster accepted the connection.
    Unreachable,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RelayLabels {
    pub result: RelayResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Buckets for whole transfers: a boot-storm file takes milliseconds to
/// seconds, a firmware image over a slow link minutes.
fn transfer_histogram() -> Histogram {
    Histogram::new([
        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ])
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReloadResult {
    Applied,
    Rejected,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: ReloadResult,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tftproxy");
        let metrics = Metrics {
            requests: Family::default(),
            bytes_sent: Family::default(),
            active_transfers: Gauge::default(),
            busy_rejections: Counter::default(),
            tftp_resolving: Gauge::default(),
            tftp_resolving_busy: Counter::default(),
            transfers: Family::default(),
            retransmissions: Counter::default(),
            malformed_packets: Counter::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            cache_entries: Family::default(),
            cache_bytes: Gauge::default(),
            upstream_requests: Family::default(),
            upstream_latency: Family::new_with_constructor(latency_histogram),
            upstream_address_up: Family::default(),
            upstream_address_downs: Family::default(),
            upstream_declined: Family::default(),
            upstream_slow_bodies: Family::default(),
            upstream_inflight_bytes: Gauge::default(),
            upstream_queued: Family::default(),
            home_entries: Family::default(),
            config_reloads: Family::default(),
            http_connections: Gauge::default(),
            http_fetch_wait_expired: Counter::default(),
            tftp_fetch_wait_expired: Counter::default(),
            cache_purged: Counter::default(),
            first_byte: Family::new_with_constructor(latency_histogram),
            transfer_duration: transfer_histogram(),
            tls_relay_connections: Family::default(),
            loops_detected: Counter::default(),
            max_hops_reached: Counter::default(),
            client_refusals: Family::default(),
            stale_served: Counter::default(),
            cache_disk_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "requests",
            "Read requests by front end and result",
            metrics.requests.clone(),
        );
        r.register(
            "sent_bytes",
            "File bytes sent to phones",
            metrics.bytes_sent.clone(),
        );
        r.register(
            "active_transfers",
            "TFTP transfers in progress",
            metrics.active_transfers.clone(),
        );
        r.register(
            "busy_rejections",
            "Requests refused because max_transfers was reached",
            metrics.busy_rejections.clone(),
        );
        r.register(
            "tftp_resolving",
            "TFTP lookups waiting on the remote clusters",
            metrics.tftp_resolving.clone(),
        );
        r.register(
            "tftp_resolving_busy",
            "TFTP requests answered busy because tftp.max_resolving lookups were waiting on the clusters",
            metrics.tftp_resolving_busy.clone(),
        );
        r.register(
            "transfers",
            "Finished TFTP transfers by outcome",
            metrics.transfers.clone(),
        );
        r.register(
            "retransmissions",
            "TFTP packets sent again after a time-out",
            metrics.retransmissions.clone(),
        );
        r.register(
            "malformed_packets",
            "Datagrams on a TFTP listener that were not valid requests",
            metrics.malformed_packets.clone(),
        );
        r.register(
            "cache_hits",
            "Lookups answered by a cache",
            metrics.cache_hits.clone(),
        );
        r.register(
            "cache_misses",
            "Lookups a cache could not answer",
            metrics.cache_misses.clone(),
        );
        r.register(
            "cache_entries",
            "Entries held by each cache",
            metrics.cache_entries.clone(),
        );
        r.register(
            "cache_content_bytes",
            "Bytes held by the content cache",
            metrics.cache_bytes.clone(),
        );
        r.register(
            "upstream_requests",
            "HTTP requests to cluster addresses by outcome",
            metrics.upstream_requests.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "Time for a cluster address to answer",
            metrics.upstream_latency.clone(),
        );
        r.register(
            "upstream_address_up",
            "1 while a cluster address is asked, 0 while it is held down after a failure or a Retry-After",
            metrics.upstream_address_up.clone(),
        );
        r.register(
            "upstream_address_downs",
            "Times a cluster address went down (failed, or asked for time with Retry-After)",
            metrics.upstream_address_downs.clone(),
        );
        r.register(
            "upstream_declined",
            "Cluster requests not made or cut off by this proxy's limits (max_queued, abandoned, max_inflight_bytes)",
            metrics.upstream_declined.clone(),
        );
        r.register(
            "upstream_slow_bodies",
            "Bodies that arrived more slowly than remote.min_body_rate (the address failed)",
            metrics.upstream_slow_bodies.clone(),
        );
        r.register(
            "upstream_inflight_bytes",
            "Bytes of cluster bodies being received now (remote.max_inflight_bytes)",
            metrics.upstream_inflight_bytes.clone(),
        );
        r.register(
            "upstream_queued",
            "Fetches waiting for a turn at a cluster's addresses now (remote.max_queued)",
            metrics.upstream_queued.clone(),
        );
        r.register(
            "home_entries",
            "Learned home-cluster entries",
            metrics.home_entries.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads by result",
            metrics.config_reloads.clone(),
        );
        r.register(
            "http_connections",
            "HTTP front connections open",
            metrics.http_connections.clone(),
        );
        r.register(
            "http_fetch_wait_expired",
            "HTTP requests answered 503 because the answer was not ready within http.fetch_wait",
            metrics.http_fetch_wait_expired.clone(),
        );
        r.register(
            "tftp_fetch_wait_expired",
            "TFTP requests answered busy because the answer was not ready within tftp.fetch_wait",
            metrics.tftp_fetch_wait_expired.clone(),
        );
        r.register(
            "cache_purged_entries",
            "Cache entries removed through the admin API",
            metrics.cache_purged.clone(),
        );
        r.register(
            "first_byte_seconds",
            "Time from a request to its first byte sent, by front",
            metrics.first_byte.clone(),
        );
        r.register(
            "transfer_duration_seconds",
            "Time from a TFTP request to the last acknowledgement",
            metrics.transfer_duration.clone(),
        );
        r.register(
            "tls_relay_connections",
            "Connections to the secure-config relay (6971/6972) by result",
            metrics.tls_relay_connections.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("build_info", "The running tftproxy's version", build);
        r.register_collector(Box::new(crate::process_metrics::ProcessCollector::new()));
        r.register(
            "loops_detected",
            "Requests whose Via chain already named this instance (answered from local files and caches only)",
            metrics.loops_detected.clone(),
        );
        r.register(
            "max_hops_reached",
            "Requests not forwarded because their Via chain was at remote.max_hops",
            metrics.max_hops_reached.clone(),
        );
        r.register(
            "client_refusals",
            "Requests refused for their client: not allowed, over its request rate, over its transfers",
            metrics.client_refusals.clone(),
        );
        r.register(
            "stale_served",
            "Answers served from an outdated cached copy because its clusters could not answer",
            metrics.stale_served.clone(),
        );
        r.register(
            "cache_disk_bytes",
            "Bytes held by the persistent cache directory",
            metrics.cache_disk_bytes.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Counts one answered request.
    pub fn request(&self, front: Front, result: RequestResult) {
        self.requests
            .get_or_create(&RequestLabels { front, result })
            .inc();
    }

    /// Counts one request refused for its client.
    pub fn client_refusal(&self, front: Front, reason: ClientRefusal) {
        self.client_refusals
            .get_or_create(&RefusalLabels { front, reason })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_with_prometheus_names() {
        let m = Metrics::new();
        m.request(Front::Tftp, RequestResult::NotFound);
        m.request(Front::Tftp, RequestResult::NotFound);
        m.active_transfers.set(3);
        let text = m.encode();
        assert!(
            text.contains("tftproxy_requests_total{front=\"tftp\",result=\"not_found\"} 2"),
            "{text}"
        );
        assert!(text.contains("tftproxy_active_transfers 3"), "{text}");
    }
}
