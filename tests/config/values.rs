//! Values: cluster address normalisation (and what a disabled cluster or our
//! own port may do), durations and sizes, parsed and formatted.

use std::time::Duration;

use tftproxy::config::{
    format_duration, format_size, normalize_address, parse_duration, parse_size,
};

use crate::parse_ok;

#[test]
fn address_normalisation() {
    let cases = [
        ("192.0.2.10", "http://192.0.2.10:6970"),
        ("192.0.2.11:7000", "http://192.0.2.11:7000"),
        ("2001:db8::1", "http://[2001:db8::1]:6970"),
        ("2001:DB8:0:0::1", "http://[2001:db8::1]:6970"),
        ("[2001:db8::1]", "http://[2001:db8::1]:6970"),
        ("[2001:db8::1]:7000", "http://[2001:db8::1]:7000"),
        ("cucm-a.example.com", "http://cucm-a.example.com:6970"),
        ("CUCM-A.Example.COM.:6971", "http://cucm-a.example.com:6971"),
        (
            "http://cucm-a.example.com",
            "http://cucm-a.example.com:6970",
        ),
        (
            "http://cucm-a.example.com/",
            "http://cucm-a.example.com:6970",
        ),
        ("HTTP://192.0.2.10:80", "http://192.0.2.10:80"),
        (
            "https://cucm-a.example.com",
            "https://cucm-a.example.com:6972",
        ),
        (
            "https://cucm-a.example.com:6972",
            "https://cucm-a.example.com:6972",
        ),
        (
            "https://cucm-a.example.com:443/",
            "https://cucm-a.example.com:443",
        ),
        ("https://[2001:db8::1]", "https://[2001:db8::1]:6972"),
        ("  192.0.2.10  ", "http://192.0.2.10:6970"),
    ];
    for (written, url) in cases {
        assert_eq!(
            normalize_address(written, 6970).as_deref(),
            Ok(url),
            "{written}"
        );
    }
    for bad in [
        "",
        "http://",
        "192.0.2.10:",
        "192.0.2.10:0",
        "192.0.2.10:x",
        "host name",
        "-bad.example.com",
        "http://h/p",
        "http://h#f",
        "ftp://h",
        "h/p",
        "[2001:db8::1",
        "[2001:db8::zz]:1",
        "[2001:db8::1]7000",
        "http://2001:db8::1",
        "a_b.example.com",
        "224.0.0.1",
        "::",
    ] {
        assert!(
            normalize_address(bad, 6970).is_err(),
            "{bad:?} should be refused"
        );
    }
}

#[test]
fn disabled_cluster_may_share_an_address_and_have_none() {
    let c = parse_ok(
        "[[cluster]]\nid = \"new\"\naddresses = [\"192.0.2.10\"]\n\n\
         [[cluster]]\nid = \"old\"\nenabled = false\naddresses = [\"192.0.2.10\"]\n\n\
         [[cluster]]\nid = \"spare\"\nenabled = false\n",
    );
    let ids: Vec<_> = c.enabled_clusters().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["new"]);
    assert_eq!(c.clusters.len(), 3);
}

#[test]
fn cluster_on_our_own_port_but_another_host_is_no_loop() {
    let c = parse_ok(
        "[http]\nlisten = [\"0.0.0.0:6970\"]\n\n\
         [[cluster]]\nid = \"a\"\naddresses = [\"192.0.2.10\", \"127.0.0.1:6971\", \"localhost:6971\"]\n",
    );
    assert_eq!(c.clusters[0].addresses.len(), 3);
    // Without an HTTP front end there is nothing to loop to.
    parse_ok("[[cluster]]\nid = \"a\"\naddresses = [\"127.0.0.1:6970\"]\n");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
    assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("").is_err());
    assert!(parse_duration("soon").is_err());
    for d in [
        0, 1, 500, 1000, 1500, 60_000, 1_800_000, 5_400_500, 86_400_000,
    ] {
        let d = Duration::from_millis(d);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
    assert_eq!(format_duration(Duration::from_secs(1800)), "30m");
    assert_eq!(format_duration(Duration::ZERO), "0s");
    let c = parse_ok("[cache]\nttl = \"45s\"\nnegative_ttl = \"250ms\"\ndevice_ttl = \"1h\"\n");
    assert_eq!(c.cache.ttl, Duration::from_secs(45));
    assert_eq!(c.cache.negative_ttl, Duration::from_millis(250));
    assert_eq!(c.cache.device_ttl, Duration::from_secs(3600));
}

#[test]
fn sizes() {
    assert_eq!(parse_size("512MiB"), Ok(512 << 20));
    assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    assert_eq!(parse_size("64KiB"), Ok(64 << 10));
    assert_eq!(parse_size("1048576"), Ok(1 << 20));
    assert_eq!(parse_size("512MB"), Ok(512_000_000));
    assert!(parse_size("lots").is_err());
    assert!(parse_size("-1").is_err());
    assert_eq!(format_size(512 << 20), "512MiB");
    assert_eq!(format_size(1 << 30), "1GiB");
    assert_eq!(format_size(64 << 10), "64KiB");
    assert_eq!(format_size(1000), "1000");
    assert_eq!(format_size(0), "0");
    for n in [0, 1, 1000, 1024, 1536, 512 << 20, 3 << 30, 5 << 40] {
        assert_eq!(parse_size(&format_size(n)), Ok(n));
    }
    let c = parse_ok("[cache]\nmax_bytes = \"1GiB\"\nmax_file_size = 1048576\n");
    assert_eq!(c.cache.max_bytes, 1 << 30);
    assert_eq!(c.cache.max_file_size, 1 << 20);
    let c = parse_ok("[cache]\nmax_bytes = \"64KiB\"\nmax_file_size = \"512MiB\"\n");
    assert_eq!(c.cache.max_bytes, 64 << 10);
    assert_eq!(c.cache.max_file_size, 512 << 20);
}
