//! Defaults (an empty file, empty sections) and every key read as written.

use std::path::Path;
use std::time::Duration;

use tftproxy::config::{Config, LogFormat, OnUnreachable, Strategy};

use crate::parse_ok;

#[test]
fn empty_file_gives_defaults() {
    let c = parse_ok("");
    assert_eq!(c, Config::default());
    assert_eq!(
        c.tftp.listen,
        vec!["0.0.0.0:69".parse().unwrap(), "[::]:69".parse().unwrap()]
    );
    assert_eq!(c.tftp.max_transfers, 2000);
    assert_eq!(c.tftp.max_block_size, 1468);
    assert_eq!(c.tftp.max_window_size, 16);
    assert_eq!(c.tftp.port_range, None);
    assert_eq!(c.tftp.retransmit_timeout, Duration::from_secs(1));
    assert_eq!(c.tftp.max_retries, 5);
    assert_eq!(c.tftp.shutdown_grace, Duration::from_secs(10));
    assert!(!c.tftp.single_port);
    assert!(c.http.is_none() && c.admin.is_none());
    assert_eq!(c.cache.max_bytes, 512 << 20);
    assert_eq!(c.cache.max_file_size, 128 << 20);
    assert_eq!(c.cache.ttl, Duration::from_secs(1800));
    assert_eq!(c.cache.negative_ttl, Duration::from_secs(30));
    assert_eq!(c.cache.device_ttl, Duration::from_secs(5));
    assert_eq!(c.cache.max_homes, 100_000);
    assert_eq!(c.cache.max_locations, 100_000);
    assert_eq!(c.remote.port, 6970);
    assert_eq!(c.remote.strategy, Strategy::Parallel);
    assert_eq!(c.remote.on_unreachable, OnUnreachable::RetryLater);
    assert!(c.remote.prefer_home_cluster);
    assert!(c.clusters.is_empty());
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);
}

#[test]
fn empty_sections_take_section_defaults() {
    let c = parse_ok("[tftp]\n[http]\n[admin]\n[cache]\n[remote]\n[log]\n");
    let http = c.http.unwrap();
    assert_eq!(http.listen, vec!["0.0.0.0:6970".parse().unwrap()]);
    assert_eq!(http.fetch_wait, Duration::from_secs(3));
    assert_eq!(http.max_connections, 1024);
    assert_eq!(c.admin.unwrap().listen, "127.0.0.1:9669".parse().unwrap());
}

#[test]
fn every_key_is_read() {
    let c = parse_ok(
        r#"
[tftp]
listen = "127.0.0.1:6969"
root = "config/root"
max_transfers = 100000
max_block_size = 65464
max_window_size = 64
port_range = "1024-65535"
retransmit_timeout = "100ms"
max_retries = 20
shutdown_grace = "0s"
single_port = true

[http]
listen = ["[::1]:8080"]
fetch_wait = "500ms"
max_connections = 7

[admin]
listen = "[::1]:9669"

[cache]
max_bytes = 1048576
max_file_size = "64KiB"
ttl = "1h 30m"
negative_ttl = "0s"
device_ttl = "2m"
max_homes = 1
max_locations = 7

[remote]
port = 80
connect_timeout = "250ms"
request_timeout = "1m"
strategy = "sequential"
on_unreachable = "not-found"
prefer_home_cluster = false
max_requests_per_address = 4

[log]
level = "info,tftproxy=debug"
format = "json"
"#,
    );
    assert_eq!(c.tftp.listen, vec!["127.0.0.1:6969".parse().unwrap()]);
    assert_eq!(c.tftp.root.as_deref(), Some(Path::new("config/root")));
    assert_eq!(c.tftp.max_transfers, 100_000);
    assert_eq!(c.tftp.max_block_size, 65464);
    assert_eq!(c.tftp.max_window_size, 64);
    assert_eq!(c.tftp.port_range, Some(1024..=65535));
    assert_eq!(c.tftp.retransmit_timeout, Duration::from_millis(100));
    assert_eq!(c.tftp.max_retries, 20);
    assert_eq!(c.tftp.shutdown_grace, Duration::ZERO);
    assert!(c.tftp.single_port);
    let http = c.http.as_ref().unwrap();
    assert_eq!(http.listen, vec!["[::1]:8080".parse().unwrap()]);
    assert_eq!(http.fetch_wait, Duration::from_millis(500));
    assert_eq!(http.max_connections, 7);
    assert_eq!(
        c.admin.as_ref().unwrap().listen,
        "[::1]:9669".parse().unwrap()
    );
    assert_eq!(c.cache.max_bytes, 1 << 20);
    assert_eq!(c.cache.max_file_size, 64 << 10);
    assert_eq!(c.cache.ttl, Duration::from_secs(5400));
    assert_eq!(c.cache.negative_ttl, Duration::ZERO);
    assert_eq!(c.cache.device_ttl, Duration::from_secs(120));
    assert_eq!(c.cache.max_homes, 1);
    assert_eq!(c.cache.max_locations, 7);
    assert_eq!(c.remote.port, 80);
    assert_eq!(c.remote.connect_timeout, Duration::from_millis(250));
    assert_eq!(c.remote.request_timeout, Duration::from_secs(60));
    assert_eq!(c.remote.strategy, Strategy::Sequential);
    assert_eq!(c.remote.on_unreachable, OnUnreachable::NotFound);
    assert!(!c.remote.prefer_home_cluster);
    assert_eq!(c.remote.max_requests_per_address, 4);
    assert_eq!(c.log.level, "info,tftproxy=debug");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(parse_ok(&c.render()), c);
}
