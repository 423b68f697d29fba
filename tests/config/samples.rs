//! The shipped samples: `config/example.toml` loads, documents every key and
//! its commented-out cluster is valid; the files of `config/root`.

use std::path::Path;

use tftproxy::config::Config;

use crate::parse_ok;

#[test]
fn example_config_loads() {
    let c = Config::load(Path::new("config/example.toml")).unwrap();
    assert_eq!(
        c.tftp.listen,
        vec![
            "127.0.0.1:6969".parse().unwrap(),
            "[::1]:6969".parse().unwrap()
        ]
    );
    assert_eq!(c.tftp.root.as_deref(), Some(Path::new("config/root")));
    assert_eq!(
        c.http.as_ref().unwrap().listen,
        vec!["127.0.0.1:6970".parse().unwrap()]
    );
    assert_eq!(
        c.admin.as_ref().unwrap().listen,
        "127.0.0.1:9669".parse().unwrap()
    );
    // Nothing outside loopback is contacted.
    for cluster in c.enabled_clusters() {
        for a in &cluster.addresses {
            assert!(a.contains("127.0.0.1") || a.contains("[::1]") || a.contains("localhost"));
        }
    }
    assert_eq!(parse_ok(&c.render()), c);
}

#[test]
fn example_documents_every_key_it_checks() {
    let text = std::fs::read_to_string("config/example.toml").unwrap();
    for key in [
        "listen",
        "root",
        "max_transfers",
        "max_resolving",
        "max_block_size",
        "max_window_size",
        "port_range",
        "retransmit_timeout",
        "max_retries",
        "shutdown_grace",
        "single_port",
        "allow",
        "max_transfers_per_client",
        "client_request_rate",
        "fetch_wait",
        "max_connections",
        "via_id",
        "max_bytes",
        "max_file_size",
        "ttl",
        "negative_ttl",
        "device_ttl",
        "max_homes",
        "max_locations",
        "port",
        "connect_timeout",
        "request_timeout",
        "strategy",
        "on_unreachable",
        "prefer_home_cluster",
        "max_requests_per_address",
        "max_queued",
        "min_body_rate",
        "max_inflight_bytes",
        "ca_file",
        "max_hops",
        "token_file",
        "level",
        "format",
        "id",
        "description",
        "fqdn",
        "enabled",
        "addresses",
        "idle_timeout",
        "upstream_port",
    ] {
        assert!(
            text.contains(&format!("{key} = ")),
            "example.toml lacks {key}"
        );
    }
}

/// The commented-out cluster in example.toml, uncommented, is valid.
#[test]
fn example_cluster_block_is_valid_when_uncommented() {
    let text = std::fs::read_to_string("config/example.toml").unwrap();
    let (before, block) = text.split_once("# --- example cluster ---\n").unwrap();
    let mut uncommented = before.to_string();
    for line in block.lines() {
        uncommented.push_str(
            line.strip_prefix("# ")
                .or(line.strip_prefix('#'))
                .unwrap_or(line),
        );
        uncommented.push('\n');
    }
    let c = Config::parse(&uncommented, Path::new("example+cluster.toml")).unwrap();
    assert_eq!(c.clusters.len(), 1);
    let cl = &c.clusters[0];
    assert_eq!(cl.id, "cluster-a");
    assert_eq!(cl.fqdn, "cucm-a.example.com");
    assert!(cl.enabled);
    assert_eq!(
        cl.addresses,
        [
            "http://192.0.2.10:6970",
            "http://192.0.2.11:6970",
            "https://cucm-a.example.com:6972"
        ]
    );
    assert_eq!(parse_ok(&c.render()), c);
}

#[test]
fn sample_root_files() {
    let root = Path::new("config/root");
    for name in [
        "SEP001122334455.cnf.xml",
        "XMLDefault.cnf.xml",
        "Ringlist.xml",
        "AppDialRules.xml",
        "OS79XX.TXT",
    ] {
        let text = std::fs::read_to_string(root.join(name)).unwrap();
        assert!(!text.is_empty(), "{name}");
    }
    let sep = std::fs::read_to_string(root.join("SEP001122334455.cnf.xml")).unwrap();
    assert!(
        sep.len() > 2048 && sep.contains("<device"),
        "a few KB of device config"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("OS79XX.TXT"))
            .unwrap()
            .trim(),
        "P0030801SR02"
    );

    // The firmware sample: 2 MiB from a reproducible generator —
    // SHA-256 in counter mode, as it was made with
    // python3 -c "import hashlib; open('cmterm-88xx-sip.14-2-1.loads','wb').write(b''.join(
    //   hashlib.sha256(b'tftproxy-sample-firmware:'+i.to_bytes(8,'big')).digest()
    //   for i in range(65536)))"
    use sha2::{Digest, Sha256};
    let firmware = std::fs::read(root.join("cmterm-88xx-sip.14-2-1.loads")).unwrap();
    assert_eq!(firmware.len(), 2_097_152);
    let mut expected = Vec::with_capacity(firmware.len());
    for i in 0u64..65536 {
        let mut h = Sha256::new();
        h.update(b"tftproxy-sample-firmware:");
        h.update(i.to_be_bytes());
        expected.extend_from_slice(&h.finalize());
    }
    assert!(
        firmware == expected,
        "firmware sample differs from its generator"
    );
}

/// The production example the package installs as
/// /etc/tftproxy/tftproxy.toml.example passes `check` once its root exists,
/// listens on port 69 for both families and caches where the unit's
/// `CacheDirectory=` is; its commented clusters are valid uncommented.
#[test]
fn production_example_passes_check_once_its_root_exists() {
    let text = std::fs::read_to_string("config/production.toml").unwrap();
    assert!(text.contains("root = \"/srv/tftp\"\n"), "{text}");
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("tftproxy.toml");
    let moved = text.replace(
        "root = \"/srv/tftp\"",
        &format!("root = {:?}", root.path().display().to_string()),
    );
    std::fs::write(&path, &moved).unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_tftproxy"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let c = Config::load(&path).unwrap();
    assert_eq!(
        c.tftp.listen,
        vec!["0.0.0.0:69".parse().unwrap(), "[::]:69".parse().unwrap()]
    );
    let unit = std::fs::read_to_string("config/tftproxy.service").unwrap();
    assert!(unit.contains("\nCacheDirectory=tftproxy\n"));
    assert_eq!(
        c.cache.dir.as_deref(),
        Some(Path::new("/var/cache/tftproxy"))
    );
    assert!(c.admin.as_ref().unwrap().listen.ip().is_loopback());

    let (head, clusters) = moved.split_once("# [[cluster]]").unwrap();
    let uncommented = format!(
        "{head}{}",
        format!("# [[cluster]]{clusters}")
            .lines()
            .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
            .collect::<String>()
    );
    let c = Config::parse(&uncommented, &path).unwrap();
    let ids: Vec<&str> = c.clusters.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["cluster-a", "cluster-b"]);
}
