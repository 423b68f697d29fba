//! The `proxy` subcommand: tftproxy in-process in front of HTTP clusters on
//! loopback (`tftproxy_testkit::http_cluster`), each answering after a
//! delay; a cold storm then a warm one, counting the requests the clusters
//! received. Also the helpers that start clusters for `first-byte`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Result;
use tftproxy_testkit::http_cluster::HttpCluster;

use tftproxy::config::{ClusterConfig, Config, Strategy};
use tftproxy::daemon::Daemon;

use crate::cli::ProxyArgs;
use crate::files::{
    config_name, content, CONFIG_SIZE, DEFAULT_NAME, DEFAULT_SIZE, SOFTKEY_NAME, SOFTKEY_SIZE,
    TRUST_NAME, TRUST_SIZE,
};
use crate::runtime::{client_runtime, ServerRuntime};
use crate::storm::{make_phones, storm};

/// The configuration of cluster `index` (`cluster-1`, ...) at `url`.
pub(crate) fn cluster_config(index: usize, url: String) -> ClusterConfig {
    ClusterConfig {
        id: format!("cluster-{}", index + 1),
        description: String::new(),
        fqdn: String::new(),
        enabled: true,
        addresses: vec![url],
    }
}

/// Requests the clusters received, by (cluster, name).
fn upstream_counts(clusters: &[HttpCluster]) -> HashMap<(usize, String), usize> {
    let mut counts = HashMap::new();
    for (i, cluster) in clusters.iter().enumerate() {
        for request in cluster.request_log() {
            *counts.entry((i, request.name)).or_insert(0) += 1;
        }
    }
    counts
}

/// `count` HTTP clusters on `runtime`, each answering after `delay`.
pub(crate) fn start_clusters(
    runtime: &ServerRuntime,
    count: usize,
    delay: Duration,
) -> Vec<HttpCluster> {
    runtime.block_on(async {
        let mut clusters = Vec::new();
        for _ in 0..count {
            let cluster = HttpCluster::start().await;
            cluster.set_delay(delay);
            clusters.push(cluster);
        }
        clusters
    })
}

/// Device files spread over the clusters; common files on every cluster
/// (each cluster's own copy, as each CUCM cluster signs its own).
fn put_phone_files(clusters: &[HttpCluster], phones: usize) {
    for phone in 0..phones {
        clusters[phone % clusters.len()]
            .put(config_name(phone), content(CONFIG_SIZE, phone as u64));
    }
    for (i, cluster) in clusters.iter().enumerate() {
        let seed = (i as u64 + 1) << 48;
        cluster.put(TRUST_NAME, content(TRUST_SIZE, seed + 1));
        cluster.put(SOFTKEY_NAME, content(SOFTKEY_SIZE, seed + 2));
        cluster.put(DEFAULT_NAME, content(DEFAULT_SIZE, seed + 3));
    }
}

/// The upstream fields a proxy storm appends to its `RESULT` line, from the
/// requests the clusters received so far (`counts`, `new` of them during
/// this storm).
fn upstream_fields(
    clusters: &[HttpCluster],
    counts: &HashMap<(usize, String), usize>,
    new: usize,
    distinct_names: usize,
) -> String {
    let total: usize = counts.values().sum();
    let names: HashSet<&String> = counts.keys().map(|(_, n)| n).collect();
    let max_pair = counts.values().copied().max().unwrap_or(0);
    let device_requests: usize = counts
        .iter()
        .filter(|((_, n), _)| n.starts_with("SEP"))
        .map(|(_, c)| c)
        .sum();
    let common: Vec<String> = [TRUST_NAME, SOFTKEY_NAME, DEFAULT_NAME]
        .iter()
        .map(|name| {
            let per: Vec<String> = (0..clusters.len())
                .map(|i| {
                    counts
                        .get(&(i, name.to_string()))
                        .copied()
                        .unwrap_or(0)
                        .to_string()
                })
                .collect();
            format!("{name}:{}", per.join("/"))
        })
        .collect();
    let connections: Vec<String> = clusters
        .iter()
        .map(|c| c.connections().to_string())
        .collect();
    format!(
        " upstream_connections={connections} upstream_new={new} upstream_total={total} distinct_names={distinct_names} \
         names_asked={} per_distinct_name={:.2} device_requests={device_requests} \
         max_per_cluster_name={max_pair} common_per_cluster={}",
        names.len(),
        total as f64 / distinct_names as f64,
        common.join(";"),
        connections = connections.join("/"),
    )
}

/// The value of a counter without labels in the daemon's metrics (0 when
/// absent).
fn counter(daemon: &Daemon, name: &str) -> f64 {
    daemon
        .metrics()
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Upstream answers `304 Not Modified` (revalidations that moved no body).
fn not_modified(daemon: &Daemon) -> f64 {
    daemon
        .metrics()
        .encode()
        .lines()
        .filter(|line| {
            line.starts_with("tftproxy_upstream_requests_total{")
                && line.contains("outcome=\"not_modified\"")
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// `proxy`: tftproxy in front of `--clusters` HTTP clusters; a cold storm,
/// then a warm one, each a `RESULT` line with the upstream counts appended.
pub(crate) fn proxy_command(args: ProxyArgs) -> Result<()> {
    let upstream = ServerRuntime::new("clusters", 1)?;
    let server = ServerRuntime::new("tftproxy", args.server_threads)?;
    let runtime = client_runtime(args.client.client_threads)?;
    let delay = Duration::from_millis(args.delay_ms);

    let mut clusters: Vec<HttpCluster> = start_clusters(&upstream, args.clusters, delay);
    put_phone_files(&clusters, args.phones);

    let mut config = Config::default();
    config.tftp.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.tftp.max_transfers = 10_000;
    if args.client.same_ip {
        // Every phone is 127.0.0.1: the per-client limits would measure
        // themselves.
        config.tftp.max_transfers_per_client = 10_000;
        config.tftp.client_request_rate = 1_000_000;
    }
    config.cache.device_ttl = Duration::from_secs(args.device_ttl_s);
    config.remote.strategy = Strategy::Parallel;
    config.clusters = clusters
        .iter()
        .enumerate()
        .map(|(i, c)| cluster_config(i, c.base_url()))
        .collect();
    let cache_dir = tempfile::tempdir()?;
    if args.power_cut {
        config.cache.dir = Some(cache_dir.path().to_path_buf());
    }
    let daemon = server.block_on(Daemon::start(config.clone()))?;
    let target = daemon.tftp_addrs()[0];
    println!(
        "proxy storm: {} phones, {} clusters answering after {} ms, device_ttl {} s, {}",
        args.phones,
        args.clusters,
        args.delay_ms,
        args.device_ttl_s,
        if args.client.same_ip {
            "every phone from 127.0.0.1"
        } else {
            "one source address per phone (127.1.x.y)"
        }
    );

    let distinct_names = args.phones + 3;
    let mut previous_total = 0usize;
    for (round, label) in ["proxy-cold", "proxy-warm"].iter().enumerate() {
        let phones = make_phones(args.phones, !args.client.same_ip);
        let report = runtime.block_on(storm(target, phones, &args.client))?;
        let counts = upstream_counts(&clusters);
        let total: usize = counts.values().sum();
        let new = total - previous_total;
        previous_total = total;
        let extra = upstream_fields(&clusters, &counts, new, distinct_names);
        println!("{}", report.result_line(label, round + 1, &extra));
        std::thread::sleep(Duration::from_millis(500));
        if args.power_cut {
            break; // the warm storm is the restart's
        }
    }
    if args.power_cut {
        let mut daemon = daemon;
        for label in ["power-cut-up", "power-cut-down"] {
            server.block_on(daemon.shutdown(Duration::from_secs(5)));
            drop(daemon);
            if label == "power-cut-down" {
                clusters.clear(); // every cluster gone: connections refused
            }
            // Device files go stale while the power is off.
            std::thread::sleep(Duration::from_secs(args.device_ttl_s + 1));
            let started = std::time::Instant::now();
            daemon = server.block_on(Daemon::start(config.clone()))?;
            let restart_ms = started.elapsed().as_secs_f64() * 1000.0;
            // Listening on a new port 0: the phones follow it.
            let target = daemon.tftp_addrs()[0];
            let phones = make_phones(args.phones, !args.client.same_ip);
            let report = runtime.block_on(storm(target, phones, &args.client))?;
            let counts = upstream_counts(&clusters);
            let total: usize = counts.values().sum();
            let extra = format!(
                " restart_ms={restart_ms:.1} upstream_new={} stale_served={} not_modified={}",
                total.saturating_sub(previous_total),
                counter(&daemon, "tftproxy_stale_served_total"),
                not_modified(&daemon),
            );
            previous_total = total;
            println!("{}", report.result_line(label, 1, &extra));
        }
        drop(daemon);
    } else {
        drop(daemon);
    }
    drop(server);
    drop(clusters);
    drop(upstream);
    Ok(())
}
