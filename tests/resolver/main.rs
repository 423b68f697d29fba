//! `resolve::Resolver` against real HTTP servers on loopback playing the
//! clusters (DESIGN.md "Resolution semantics" and "Caches").
//!
//! Timing assertions compare orders of magnitude with generous margins: the
//! suite runs on loaded 2-core machines.
//!
//! One test binary; the tests are grouped by theme in the modules below, the
//! shared set-up and answer helpers live here.

#[path = "../support/mod.rs"]
mod support;

mod bad_answers;
mod cache;
mod fanout;
mod home;
mod nearby;
mod operations;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use support::daemon::cluster_config;
use support::http_cluster::HttpCluster;
use tftproxy::config::{ClusterConfig, Config};
use tftproxy::metrics::Metrics;
use tftproxy::resolve::{Answer, Lookup, Resolver, Source};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);
/// Scheduling slack on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(1500);

const MAC: &str = "001122AABBCC";
const PHONE: &str = "10.0.0.2";

fn cnf() -> String {
    format!("SEP{MAC}.cnf.xml")
}

fn itl() -> String {
    format!("ITLSEP{MAC}.tlv")
}

// ---- set-up ----------------------------------------------------------------------

/// One cluster per server, each with its single address, ids c1, c2, …
fn clusters_of<'a>(servers: impl IntoIterator<Item = &'a HttpCluster>) -> Vec<ClusterConfig> {
    servers
        .into_iter()
        .enumerate()
        .map(|(i, s)| cluster_config(&format!("c{}", i + 1), vec![s.base_url()]))
        .collect()
}

fn config(clusters: Vec<ClusterConfig>) -> Config {
    let mut config = Config {
        clusters,
        ..Config::default()
    };
    config.remote.connect_timeout = CONNECT_TIMEOUT;
    config.remote.request_timeout = REQUEST_TIMEOUT;
    config
}

fn resolver(config: &Config) -> Resolver {
    Resolver::new(config, Arc::new(Metrics::new())).expect("resolver")
}

async fn get(resolver: &Resolver, name: &str) -> Answer {
    get_from(resolver, name, "192.0.2.1").await
}

async fn get_from(resolver: &Resolver, name: &str, client: &str) -> Answer {
    let client: IpAddr = client.parse().unwrap();
    resolver
        .resolve(&Lookup {
            name,
            client,
            via: Default::default(),
        })
        .await
}

/// The body and source of a File answer.
fn file(answer: &Answer) -> (Bytes, Source) {
    match answer {
        Answer::File { body, source } => (body.to_bytes().unwrap(), source.clone()),
        other => panic!("expected a file, got {other:?}"),
    }
}

fn body(answer: &Answer) -> Bytes {
    file(answer).0
}

fn source(answer: &Answer) -> Source {
    file(answer).1
}

fn from_cluster(id: &str) -> Source {
    Source::Cluster {
        cluster: Arc::from(id),
    }
}

fn from_cache(id: &str) -> Source {
    Source::Cache {
        cluster: Arc::from(id),
    }
}

fn assert_not_found(answer: &Answer) {
    assert!(
        matches!(answer, Answer::NotFound),
        "expected NotFound, got {answer:?}"
    );
}

fn assert_retry_later(answer: &Answer) {
    assert!(
        matches!(answer, Answer::RetryLater),
        "expected RetryLater, got {answer:?}"
    );
}

fn device_config<'a>(
    servers: impl IntoIterator<Item = &'a HttpCluster>,
    device_ttl: Duration,
) -> Config {
    let mut config = config(clusters_of(servers));
    config.cache.device_ttl = device_ttl;
    config
}
