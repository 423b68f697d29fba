//! Configuration parsing and validation: located errors, defaults, the
//! example file, the `render` round trip, address normalisation, values.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tftproxy::config::{
    format_duration, format_size, normalize_address, parse_duration, parse_size, Config,
    ConfigError, LogFormat, OnUnreachable, Strategy,
};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

fn parse_ok(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("config should be valid, got: {e}\n---\n{text}"),
    }
}

/// Bad configurations are fixture files, one per case: `tests/fixtures/
/// bad-config/<case>.toml` is the whole configuration, headed by comments
/// stating what the error must say (format in the README there):
///
/// ```text
/// # expect-key: tftp.max_block_size
/// # expect-line: 6
/// # expect-message: must be between 512 and 65464, got 70000
/// ```
///
/// The line counts the header: it is the real line of the file. Every case is
/// plain text, so none is left in code (`root-is-a-file.toml` names
/// `Cargo.toml`, found in the crate root where `cargo test` runs).
const BAD_CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bad-config");

/// The number of cases when they moved to files; fewer means files were lost.
const MIN_BAD_CONFIGS: usize = 72;

/// What a fixture's header says the error is.
struct Expectation {
    key: String,
    line: usize,
    message: String,
}

/// Reads the `# expect-FIELD: value` lines that open a fixture.
fn read_expectation(text: &str) -> Result<Expectation, String> {
    let (mut key, mut line, mut message) = (None, None, None);
    for header in text.lines() {
        let Some(rest) = header.strip_prefix("# expect-") else {
            break;
        };
        let Some((field, value)) = rest.split_once(':') else {
            return Err(format!("header line without `:`: {header:?}"));
        };
        let slot = match field {
            "key" => &mut key,
            "line" => &mut line,
            "message" => &mut message,
            _ => return Err(format!("unknown header field `expect-{field}`")),
        };
        if slot.replace(value.trim().to_owned()).is_some() {
            return Err(format!("`expect-{field}` given twice"));
        }
    }
    let missing = |field: &str| format!("header has no `# expect-{field}:` line");
    let line = line.ok_or_else(|| missing("line"))?;
    Ok(Expectation {
        key: key.ok_or_else(|| missing("key"))?,
        line: line
            .parse()
            .map_err(|_| format!("`expect-line` is not a line number: {line:?}"))?,
        message: message.ok_or_else(|| missing("message"))?,
    })
}

#[test]
fn bad_configs_name_key_line_and_what_is_allowed() {
    let dir = Path::new(BAD_CONFIG_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= MIN_BAD_CONFIGS,
        "{}: {} fixtures, expected at least {MIN_BAD_CONFIGS}",
        dir.display(),
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                failures.push(format!("{name}: cannot read: {e}"));
                continue;
            }
        };
        let expect = match read_expectation(&text) {
            Ok(expect) => expect,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if name.starts_with("crlf-") && !text.contains("\r\n") {
            failures.push(format!("{name}: has lost its CRLF line endings"));
        }
        match Config::parse(&text, file) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(ConfigError::Invalid {
                path,
                line,
                key,
                message,
            }) => {
                if path != *file {
                    failures.push(format!("{name}: error names path {}", path.display()));
                }
                if key != expect.key || line != expect.line || !message.contains(&expect.message) {
                    failures.push(format!(
                        "{name}:\n  expected {}: {}: …{}…\n  got      {line}: {key}: {message}",
                        expect.line, expect.key, expect.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: unexpected error {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures in {} failed:\n{}",
        failures.len(),
        files.len(),
        dir.display(),
        failures.join("\n")
    );
}

#[test]
fn error_display_names_file_line_key() {
    let err = Config::parse(
        "[tftp]\n\nmax_block_size = 70000\n",
        Path::new("config/x.toml"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "config/x.toml:3: tftp.max_block_size: must be between 512 and 65464, got 70000"
    );
}

#[test]
fn load_of_missing_file_is_a_read_error() {
    let err = Config::load(Path::new("/nonexistent/tftproxy.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with("/nonexistent/tftproxy.toml: cannot read"));
}

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
    assert!(c.http.is_none() && c.admin.is_none());
    assert_eq!(c.cache.max_bytes, 512 << 20);
    assert_eq!(c.cache.max_file_size, 128 << 20);
    assert_eq!(c.cache.ttl, Duration::from_secs(1800));
    assert_eq!(c.cache.negative_ttl, Duration::from_secs(30));
    assert_eq!(c.cache.device_ttl, Duration::from_secs(5));
    assert_eq!(c.cache.max_homes, 100_000);
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

/// A CA certificate as PEM, made now (the test needs a real one).
fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

/// The error a `[remote]` section with `ca_file = path` gives (on line 2).
fn ca_file_error(path: &Path) -> String {
    let text = format!("[remote]\nca_file = {:?}\n", path.to_str().unwrap());
    let err = parse(&text).expect_err(&text);
    match &err {
        ConfigError::Invalid { key, line, .. } => {
            assert_eq!((key.as_str(), *line), ("remote.ca_file", 2), "{err}");
        }
        other => panic!("unexpected error {other}"),
    }
    err.to_string()
}

#[test]
fn ca_file_that_does_not_exist_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-ca.pem");
    let p = path.display();
    assert_eq!(
        ca_file_error(&path),
        format!(
            "test.toml:2: remote.ca_file: file \"{p}\" cannot be read: No such file or directory \
             (os error 2) (a relative path is relative to the current directory)"
        )
    );
}

#[test]
fn ca_file_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Empty, text, and a private key alone: no certificate in any of them.
    let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    for (name, content) in [
        ("empty.pem", String::new()),
        ("text.pem", "not a certificate\n".to_string()),
        ("key.pem", key),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        assert_eq!(
            ca_file_error(&path),
            format!(
                "test.toml:2: remote.ca_file: file \"{}\" holds no PEM certificate \
                 (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
            "{name}"
        );
    }
    let path = dir.path().join("broken.pem");
    std::fs::write(
        &path,
        "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert_eq!(
        ca_file_error(&path),
        format!(
            "test.toml:2: remote.ca_file: file \"{}\" holds a PEM certificate that cannot be decoded",
            path.display()
        )
    );
}

#[test]
fn ca_file_with_certificates_is_read_and_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cucm-ca.pem");
    // A bundle of two roots.
    std::fs::write(&path, ca_pem() + &ca_pem()).unwrap();
    let text = format!(
        "[remote]\nca_file = {:?}\n\n[[cluster]]\nid = \"a\"\naddresses = [\"https://127.0.0.1:6972\"]\n",
        path.to_str().unwrap()
    );
    let c = parse_ok(&text);
    assert_eq!(c.remote.ca_file.as_deref(), Some(path.as_path()));
    let rendered = c.render();
    assert!(
        rendered.contains(&format!("ca_file = {:?}", path.to_str().unwrap())),
        "{rendered}"
    );
    assert_eq!(parse_ok(&rendered), c);
    // Not set: rendered as a comment.
    assert_eq!(Config::default().remote.ca_file, None);
    assert!(Config::default().render().contains("# ca_file: not set"));
}

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
        "max_block_size",
        "max_window_size",
        "port_range",
        "retransmit_timeout",
        "max_retries",
        "shutdown_grace",
        "fetch_wait",
        "max_connections",
        "max_bytes",
        "max_file_size",
        "ttl",
        "negative_ttl",
        "device_ttl",
        "max_homes",
        "port",
        "connect_timeout",
        "request_timeout",
        "strategy",
        "on_unreachable",
        "prefer_home_cluster",
        "max_requests_per_address",
        "ca_file",
        "level",
        "format",
        "id",
        "description",
        "fqdn",
        "enabled",
        "addresses",
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
