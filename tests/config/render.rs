//! `Config::render`: a full configuration and the defaults round-trip,
//! stably, in human forms.

use std::time::Duration;

use tftproxy::config::Config;

use crate::parse_ok;

#[test]
fn render_round_trips_a_full_config() {
    let text = r#"
[tftp]
listen = ["0.0.0.0:69", "[::]:69"]
root = "config/root"
port_range = "49152-49407"
retransmit_timeout = "1500ms"

[http]
listen = ["0.0.0.0:6970", "[::]:6970"]

[admin]
listen = "127.0.0.1:9669"

[cache]
max_bytes = "1GiB"
max_file_size = 1000
ttl = "1h 30m 500ms"

[remote]
port = 8080

[log]
level = "warn"
format = "json"

[[cluster]]
id = "cluster-a"
description = "Building \"A\" \\ east"
fqdn = "*.a.example.com"
addresses = ["192.0.2.10", "192.0.2.11:7000", "https://CUCM-A.example.com"]

[[cluster]]
id = "cluster-b.v6"
addresses = ["2001:db8::1", "[2001:db8:0::2]:6970", "http://cucm-b.example.com/"]

[[cluster]]
id = "old"
enabled = false
addresses = ["192.0.2.10"]

[[cluster]]
id = "empty"
enabled = false
"#;
    let c = parse_ok(text);
    assert_eq!(c.clusters.len(), 4);
    assert_eq!(c.enabled_clusters().count(), 2);
    assert_eq!(
        c.clusters[0].addresses,
        [
            "http://192.0.2.10:8080",
            "http://192.0.2.11:7000",
            "https://cucm-a.example.com:6972"
        ]
    );
    assert_eq!(
        c.clusters[1].addresses,
        [
            "http://[2001:db8::1]:8080",
            "http://[2001:db8::2]:6970",
            "http://cucm-b.example.com:8080"
        ]
    );
    assert_eq!(c.clusters[2].addresses, ["http://192.0.2.10:8080"]);
    assert!(c.clusters[3].addresses.is_empty());
    assert_eq!(c.cache.ttl, Duration::from_millis(5_400_500));
    assert_eq!(c.cache.max_file_size, 1000);

    let rendered = c.render();
    let again = parse_ok(&rendered);
    assert_eq!(again, c, "render:\n{rendered}");
    // Rendering is stable.
    assert_eq!(again.render(), rendered);
    // Human forms, not raw numbers.
    assert!(rendered.contains("max_bytes = \"1GiB\""), "{rendered}");
    assert!(rendered.contains("ttl = \"1h 30m 500ms\""), "{rendered}");
    assert!(rendered.contains("negative_ttl = \"30s\""), "{rendered}");
    assert!(
        rendered.contains("port_range = \"49152-49407\""),
        "{rendered}"
    );
}

#[test]
fn render_round_trips_defaults() {
    let c = Config::default();
    let rendered = c.render();
    assert!(rendered.contains("ttl = \"30m\""), "{rendered}");
    assert!(rendered.contains("max_bytes = \"512MiB\""), "{rendered}");
    assert_eq!(parse_ok(&rendered), c);
}
