//! The admin front (`[admin] listen`, loopback by default): what an operator
//! or a monitoring system asks the running daemon.
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | every metric, Prometheus text (OpenMetrics when the scraper asks for it) |
//! | `GET /healthz` | `200`, JSON: `status`, version, uptime, active transfers, open HTTP connections |
//! | `GET /readyz` | `200` once the listeners are bound and the caches loaded (`503` before), whatever the clusters' state; JSON: each cluster's reachability |
//! | `GET /clusters` | JSON: every cluster and address, last status, last error, last latency, up or not, held down until when |
//! | `GET /locate?name=<name>&client=IP` | `tftproxy locate --admin`: every address asked now, what the daemon has learned (homes, location, cached copies, hold-downs) and what a phone at `IP` gets now (JSON; `text` is the report, `exit_code` locate's status) |
//! | `DELETE /cache/<name>` | forgets `<name>` in every cache; JSON `{"name": …, "purged": N}` |
//! | `DELETE /cache` | empties the caches; JSON `{"purged": N}` |
//!
//! Purging is the answer to Cisco's "restart the TFTP service so that phones
//! stop getting not-found": a negative entry for a phone just added on its
//! cluster goes away at once.
//!
//! Who may ask is `admin_auth`'s job: a bearer token (`[admin] token_file`)
//! for everything but the probes, or, without one, loopback and a `Host`
//! that is an IP address or `localhost`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Router;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::admin_auth::{self, AdminAuth};
use super::conn::{accept_until_stopped, serve_http1, start_listener};
use super::slots::Slots;
use super::ListenerHandle;
use crate::metrics::Metrics;
use crate::resolve::{AddressStatus, ClusterStatus, ResolverHandle};

/// Content type of the classic Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of the OpenMetrics text format (what the encoder writes;
/// Prometheus asks for it in `Accept`).
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Admin connections served at once (an operator and a scraper or two).
pub const MAX_ADMIN_CONNECTIONS: usize = 64;

/// What the admin API reads: the resolver, the metrics, and the work
/// running now. Nothing else of the daemon.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) resolver: ResolverHandle,
    pub(crate) metrics: Arc<Metrics>,
    /// HTTP front connections open.
    pub(crate) http_connections: TaskTracker,
    /// When the daemon started (uptime).
    pub(crate) started: Instant,
    /// Every listener is bound and the caches are loaded (`/readyz`).
    pub(crate) ready: Arc<AtomicBool>,
    /// The token in force (`[admin] token_file`), if any.
    pub(crate) auth: AdminAuth,
}

/// Serves the admin API on a listener from [`super::conn::bind`] until the
/// handle is dropped; at most [`MAX_ADMIN_CONNECTIONS`] at a time, with the
/// HTTP front's time-outs: idle or slow clients cannot hold descriptors the
/// TFTP and HTTP fronts need.
pub(crate) fn start(
    configured: SocketAddr,
    listener: std::net::TcpListener,
    state: AdminState,
) -> std::io::Result<ListenerHandle> {
    let app = router(state);
    start_listener(configured, listener, |listener, stop| async move {
        {
            let slots = Slots::new(MAX_ADMIN_CONNECTIONS);
            accept_until_stopped(
                listener,
                "admin",
                &slots,
                stop.clone(),
                |stream, _, slot| {
                    let service = TowerToHyperService::new(app.clone());
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        if let Err(error) = serve_http1(stream, service, stop).await {
                            debug!(%error, "admin connection ended");
                        }
                        drop(slot);
                    });
                },
            )
            .await;
        }
    })
}

fn router(state: AdminState) -> Router {
    let auth = axum::middleware::from_fn_with_state(state.auth.clone(), admin_auth::check);
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/clusters", get(clusters))
        .route("/locate", get(locate))
        .route("/cache", delete(purge_all))
        .route("/cache/{*name}", delete(purge_one))
        .fallback(not_found)
        .layer(auth)
        .with_state(state)
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text,
    )
        .into_response()
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "tftproxy admin\n\
         GET    /metrics        Prometheus metrics\n\
         GET    /healthz        liveness and live counts (JSON)\n\
         GET    /readyz         200 once serving (whatever the clusters' state); their reachability (JSON)\n\
         GET    /clusters       every cluster and address: last status, error, latency, hold-down (JSON)\n\
         GET    /locate?name=N&client=IP  what a phone there gets now and why (JSON; asks every cluster)\n\
         DELETE /cache/<name>   forget one name in every cache\n\
         DELETE /cache          empty the caches\n",
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "no such admin endpoint; GET / lists them\n",
    )
        .into_response()
}

async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    // Exact cache and home-table counts before the scrape.
    state.resolver.current().refresh_gauges();
    let text = state.metrics.encode();
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS_TEXT)], text).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            openmetrics_to_prometheus(&text),
        )
            .into_response()
    }
}

/// Turns the OpenMetrics text the encoder writes into the classic
/// Prometheus text format (0.0.4): a counter family is named with its
/// `_total` suffix in `# HELP` and `# TYPE` (as its samples are), and there
/// is no `# EOF` line. Samples are the same in both formats.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + 16 * counters.len());
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match rewritten {
            Some(line) => out.push_str(line.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

async fn healthz(State(state): State<AdminState>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": state.started.elapsed().as_secs(),
            "active_transfers": state.metrics.active_transfers.get().max(0),
            "http_connections": state.http_connections.len(),
        }),
    )
}

/// Ready to serve: the status says only that (a load balancer or systemd
/// must not take a proxy out because the WAN is down: it still serves its
/// caches and local root); the body says which clusters can be reached.
async fn readyz(State(state): State<AdminState>) -> Response {
    let ready = state.ready.load(Ordering::Acquire);
    let clusters: Vec<serde_json::Value> = state
        .resolver
        .current()
        .cluster_status()
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "enabled": c.enabled,
                "reachable": c.up,
                "addresses": c.addresses.iter().map(|a| json!({
                    "address": a.base_url,
                    "up": a.up,
                    "held_down_until": a.held_down_until.map(rfc3339),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        &json!({
            "status": if ready { "ready" } else { "starting" },
            "clusters": clusters,
        }),
    )
}

async fn clusters(State(state): State<AdminState>) -> Response {
    let clusters: Vec<serde_json::Value> = state
        .resolver
        .current()
        .cluster_status()
        .iter()
        .map(cluster_json)
        .collect();
    json_response(StatusCode::OK, &json!({ "clusters": clusters }))
}

#[derive(serde::Deserialize)]
struct LocateQuery {
    name: String,
    client: Option<String>,
}

/// `tftproxy locate --admin`: asks every address like offline `locate`
/// (and, like it, learns and caches nothing) and adds the daemon's tables.
async fn locate(
    State(state): State<AdminState>,
    query: Result<Query<LocateQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "usage: /locate?name=<file name>[&client=<IP>]" }),
        );
    };
    let name = query.name;
    let client = match query.client.as_deref().map(str::parse::<IpAddr>) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({ "error": "client must be an IP address" }),
            )
        }
    };
    let resolver = state.resolver.current();
    let live = crate::diagnose::locate_live(&resolver, &name, client).await;
    info!(name, client = ?client, verdict = live.verdict.exit_code(), "locate by the admin API");
    json_response(StatusCode::OK, &live_json(&live))
}

fn live_json(live: &crate::diagnose::LiveReport) -> serde_json::Value {
    use crate::diagnose::LocateVerdict;
    use crate::resolve::LearnedPlan;
    let (verdict, cluster) = match &live.verdict {
        LocateVerdict::Local { .. } => ("local", None),
        LocateVerdict::Cluster { id, .. } => ("cluster", Some(id)),
        LocateVerdict::Cached {
            id, fresh: true, ..
        } => ("cached", Some(id)),
        LocateVerdict::Cached {
            id, fresh: false, ..
        } => ("cached_stale", Some(id)),
        LocateVerdict::NotFound => ("not_found", None),
        LocateVerdict::RetryLater => ("retry_later", None),
        LocateVerdict::Denied(_) => ("refused", None),
    };
    let learned = live.learned.as_ref().map(|l| {
        let (location, located) = match &l.plan {
            LearnedPlan::Home(id) => ("device_home", Some(id)),
            LearnedPlan::Located(id) => ("cluster", Some(id)),
            LearnedPlan::Nowhere => ("nowhere", None),
            LearnedPlan::Unknown => ("unknown", None),
        };
        json!({
            "device": l.device,
            "device_home": l.device_home,
            "client_home": l.client_home,
            "location": location,
            "location_cluster": located,
            "clusters": l.clusters.iter().map(|c| json!({
                "id": c.id,
                "enabled": c.enabled,
                "cached_bytes": c.copy.as_ref().map(|c| c.size),
                "cached_age_seconds": c.copy.as_ref().map(|c| c.age.as_secs()),
                "cached_fresh": c.copy.as_ref().map(|c| c.fresh),
                "remembered_not_found": c.not_found,
            })).collect::<Vec<_>>(),
        })
    });
    let held_down: Vec<serde_json::Value> = live
        .report
        .clusters
        .iter()
        .flat_map(|c| {
            c.held_down.iter().map(|(url, left)| {
                json!({ "cluster": c.id, "address": url, "seconds_left": left.as_secs_f64() })
            })
        })
        .collect();
    json!({
        "name": live.report.name,
        "client": live.client.map(|c| c.to_string()),
        "verdict": verdict,
        "cluster": cluster,
        "exit_code": live.verdict.exit_code(),
        "why": live.reason,
        "learned": learned,
        "held_down": held_down,
        "text": crate::diagnose::render_live(live),
    })
}

async fn purge_one(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let purged = purge(&state, Some(&name));
    info!(name, purged, "cache purged by the admin API");
    json_response(StatusCode::OK, &json!({ "name": name, "purged": purged }))
}

async fn purge_all(State(state): State<AdminState>) -> Response {
    let purged = purge(&state, None);
    info!(purged, "every cache purged by the admin API");
    json_response(StatusCode::OK, &json!({ "purged": purged }))
}

/// Removes `name` (or everything) from the resolver's caches.
fn purge(state: &AdminState, name: Option<&str>) -> usize {
    let purged = state.resolver.current().purge(name);
    state.metrics.cache_purged.inc_by(purged as u64);
    purged
}

fn cluster_json(cluster: &ClusterStatus) -> serde_json::Value {
    json!({
        "id": cluster.id,
        "description": cluster.description,
        "fqdn": cluster.fqdn,
        "enabled": cluster.enabled,
        "up": cluster.up,
        "addresses": cluster.addresses.iter().map(address_json).collect::<Vec<_>>(),
    })
}

fn address_json(address: &AddressStatus) -> serde_json::Value {
    json!({
        "address": address.base_url,
        "up": address.up,
        "last_outcome": address.last_outcome.map(|o| o.as_str()),
        "last_status": address.last_status,
        "last_latency_ms": address.last_latency.map(|d| d.as_secs_f64() * 1000.0),
        "last_checked": address.last_checked.map(rfc3339),
        "last_error": address.last_error,
        "last_error_at": address.last_error_at.map(rfc3339),
        "held_down_until": address.held_down_until.map(rfc3339),
    })
}

/// `2026-01-02T03:04:05.678Z`.
fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Front, Metrics, RequestResult};

    #[test]
    fn classic_text_names_counters_with_total() {
        let metrics = Metrics::new();
        metrics.request(Front::Http, RequestResult::Served);
        metrics.active_transfers.set(2);
        let open = metrics.encode();
        assert!(open.contains("# TYPE tftproxy_requests counter"), "{open}");
        assert!(open.ends_with("# EOF\n"));
        let classic = openmetrics_to_prometheus(&open);
        assert!(
            classic.contains(
                "# HELP tftproxy_requests_total Read requests by front end and result.\n"
            ),
            "{classic}"
        );
        assert!(classic.contains("# TYPE tftproxy_requests_total counter\n"));
        assert!(classic.contains("tftproxy_requests_total{front=\"http\",result=\"served\"} 1\n"));
        assert!(classic.contains("# TYPE tftproxy_active_transfers gauge\n"));
        assert!(classic.contains("tftproxy_active_transfers 2\n"));
        assert!(classic.contains("# TYPE tftproxy_upstream_duration_seconds histogram\n"));
        assert!(!classic.contains("# EOF"));
    }
}
