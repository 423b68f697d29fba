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

/// Label values in Prometheus style (`not_found`, not `NotFound`).
macro_rules! snake_case_labels {
    ($($ty:ty { $($variant:ident => $text:literal),* $(,)? })*) => {$(
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
                let text = match self { $(Self::$variant => $text),* };
                EncodeLabelValue::encode(&text, encoder)
            }
        }
    )*};
}

snake_case_labels! {
    Front { Tftp => "tftp", Http => "http" }
    RequestResult { Served => "served", NotFound => "not_found", Busy => "busy", Denied => "denied", Error => "error" }
    TransferOutcome {
        Completed => "completed", TimedOut => "timed_out", ClientError => "client_error",
        ReadFailed => "read_failed",
    }
    CacheKind { Location => "location", Content => "content" }
    UpstreamOutcome { Found => "found", NotModified => "not_modified", NotFound => "not_found", Busy => "busy", Failed => "failed" }
    HomeTable { Device => "device", ClientIp => "client_ip" }
    ReloadResult { Applied => "applied", Rejected => "rejected" }
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
pub struct ClusterLabels {
    pub cluster: String,
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
    pub transfers: Family<TransferLabels, Counter>,
    pub retransmissions: Counter,
    pub malformed_packets: Counter,
    pub cache_hits: Family<CacheLabels, Counter>,
    pub cache_misses: Family<CacheLabels, Counter>,
    pub cache_entries: Family<CacheLabels, Gauge>,
    pub cache_bytes: Gauge,
    pub upstream_requests: Family<UpstreamLabels, Counter>,
    pub upstream_latency: Family<ClusterLabels, Histogram, fn() -> Histogram>,
    pub home_entries: Family<HomeLabels, Gauge>,
    pub config_reloads: Family<ReloadLabels, Counter>,
    /// HTTP front connections open now.
    pub http_connections: Gauge,
    /// HTTP requests answered 503 because the resolve did not finish within
    /// `http.fetch_wait` (the fetch goes on and fills the cache).
    pub http_fetch_wait_expired: Counter,
    /// Cache entries removed through the admin API.
    pub cache_purged: Counter,
    /// Answers served from a copy older than its freshness because its
    /// clusters could not answer (stale-if-error, `cache.max_stale`).
    pub stale_served: Counter,
    /// Bytes of file contents in the persistent cache (`cache.dir`).
    pub cache_disk_bytes: Gauge,
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
            transfers: Family::default(),
            retransmissions: Counter::default(),
            malformed_packets: Counter::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            cache_entries: Family::default(),
            cache_bytes: Gauge::default(),
            upstream_requests: Family::default(),
            upstream_latency: Family::new_with_constructor(latency_histogram),
            home_entries: Family::default(),
            config_reloads: Family::default(),
            http_connections: Gauge::default(),
            http_fetch_wait_expired: Counter::default(),
            cache_purged: Counter::default(),
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
            "cache_purged_entries",
            "Cache entries removed through the admin API",
            metrics.cache_purged.clone(),
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
