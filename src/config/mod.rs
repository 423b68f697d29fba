//! The configuration file: one TOML document, parsed into typed, validated
//! settings. Every error names the file, the line and the key, and says what
//! is allowed. Unknown keys are errors (a typo must not silently fall back to
//! a default).
//!
//! How it works: the text is parsed twice — once by `toml_edit` into a
//! span-keeping document (used only to know on which line each key sits), and
//! once by serde into private "raw" structs whose every field is optional.
//! The raw structs are then validated, field by field, into [`Config`]; a
//! missing key takes the value of the `Default` impls below.
//!
//! # Keys in error messages
//!
//! A key is written as a dotted path from the top of the document:
//! `tftp.max_block_size`, `cluster[2].addresses[1]`. **Array indices are
//! 1-based** — `cluster[1]` is the first `[[cluster]]` table in the file,
//! `addresses[1]` the first address of its list — because these names are
//! read by people counting tables in a file. The line is the 1-based line of
//! the key; when the key is absent (a required key left out) it is the line
//! of the enclosing table's header.
//!
//! # Values
//!
//! * durations: strings understood by `humantime`: `"500ms"`, `"30s"`,
//!   `"5m"`, `"1h 30m"`;
//! * sizes: an integer number of bytes (`1048576`) or a string with a unit:
//!   `"64KiB"`, `"512MiB"`, `"1GiB"` (binary) or `"512MB"` (decimal);
//! * socket addresses: `"0.0.0.0:69"`, `"[::]:69"`, `"127.0.0.1:6969"`;
//! * relative paths (`tftp.root`) are relative to the current directory of
//!   the process, not to the configuration file.
//!
//! # Layout
//!
//! * this file: the public types, [`ConfigError`], the limits, the defaults,
//!   [`Config::load`] and [`Config::parse`];
//! * `access`: who may use the daemon and how much (`[admin]`: the token,
//!   loopback; the client allow-lists; the per-client TFTP limits);
//! * `file`: reading the file (a regular file of sane size);
//! * `raw`: the private serde structs the text is first read into;
//! * `key_lines`: which line each key sits on, and which key a parse error is at;
//! * `validate`: raw structs → [`Config`], with located errors;
//! * `units`: durations and sizes, parsed and formatted;
//! * `address`: cluster addresses, normalised to base URLs;
//! * `render`: [`Config::render`], the effective configuration as TOML.

mod access;
mod address;
mod clusters;
mod file;
mod key_lines;
mod raw;
mod render;
mod tls_relay;
mod units;
mod validate;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use access::{read_token, AllowList};
pub use address::normalize_address;
pub use file::MAX_CONFIG_BYTES;
pub use units::{format_duration, format_size, parse_duration, parse_size};

use key_lines::{line_of_offset, syntax_error_key, Locator};
use validate::Ctx;

/// The whole, validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub tftp: TftpConfig,
    pub http: Option<HttpConfig>,
    pub admin: Option<AdminConfig>,
    pub cache: CacheConfig,
    pub remote: RemoteConfig,
    /// Every `[[cluster]]`, in file order (= priority), disabled ones
    /// included; see [`Config::enabled_clusters`].
    pub clusters: Vec<ClusterConfig>,
    pub log: LogConfig,
    /// `[tls_relay]`: the secure-config relay (off when absent).
    pub tls_relay: Option<TlsRelayConfig>,
}

/// `[tls_relay]`: phones' HTTPS connections (6971, 6972) relayed unopened to
/// their home cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsRelayConfig {
    pub listen: Vec<SocketAddr>,
    /// The cluster port a connection goes to; `None`: the port it arrived on
    /// (6971 → 6971, 6972 → 6972).
    pub upstream_port: Option<u16>,
    pub max_connections: usize,
    /// A relayed connection with no byte either way for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for TlsRelayConfig {
    /// The values taken by keys left out of a `[tls_relay]` section.
    fn default() -> Self {
        TlsRelayConfig {
            listen: vec![
                "0.0.0.0:6971".parse().unwrap(),
                "0.0.0.0:6972".parse().unwrap(),
            ],
            upstream_port: None,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TftpConfig {
    pub listen: Vec<SocketAddr>,
    pub root: Option<PathBuf>,
    pub max_transfers: usize,
    /// Lookups waiting on the clusters at once (more remote misses: busy);
    /// not counted in `max_transfers`.
    pub max_resolving: usize,
    pub max_block_size: u16,
    pub max_window_size: u16,
    pub port_range: Option<RangeInclusive<u16>>,
    /// First retransmit time-out when the client asks for none.
    pub retransmit_timeout: Duration,
    /// Retransmissions of one packet before a transfer is abandoned.
    pub max_retries: u32,
    /// How long running transfers may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Every transfer on the listening port (for NAT, firewalls, containers)
    /// instead of the listener's transfer ports.
    pub single_port: bool,
    /// The clients answered (others get no answer at all).
    pub allow: AllowList,
    /// Transfers one client address may run at once (more: busy).
    pub max_transfers_per_client: usize,
    /// New requests per second one client address may make, and the burst
    /// (more: no answer).
    pub client_request_rate: u32,
    /// How long a request that needs the clusters waits before `busy, retry
    /// later` (the fetch goes on; the retry is served from the cache).
    pub fetch_wait: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    pub listen: Vec<SocketAddr>,
    /// How long a request that needs an upstream fetch waits before 503.
    pub fetch_wait: Duration,
    pub max_connections: usize,
    /// This instance's id in `Via` entries (`1.1 tftproxy-<id>`); `None`:
    /// the host name. Must differ between the instances of one chain.
    pub via_id: Option<String>,
    /// The clients answered (others get 403).
    pub allow: AllowList,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// A file holding the bearer token every admin request but the probes
    /// (`/healthz`, `/readyz`) must present. Without it the API must listen
    /// on loopback, and requests naming another host are refused.
    pub token_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CacheConfig {
    pub max_bytes: u64,
    pub max_file_size: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub device_ttl: Duration,
    /// Bound on the home-cluster tables (devices and client IPs).
    pub max_homes: u64,
    /// Bound on the location cache (where names are, "nowhere" included):
    /// entries, about 1 KiB of memory each (README, "Memory").
    pub max_locations: u64,
    /// The persistent cache's directory; `None`: memory only.
    pub dir: Option<PathBuf>,
    /// Bound on the persistent cache's file contents.
    pub disk_max_bytes: u64,
    /// How long after its last confirmation a copy may still be served
    /// when its clusters cannot answer (stale-if-error).
    pub max_stale: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Parallel,
    Sequential,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnUnreachable {
    RetryLater,
    NotFound,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RemoteConfig {
    pub port: u16,
    pub connect_timeout: Duration,
    /// Longest wait for an answer to begin, then for each piece of its body.
    pub request_timeout: Duration,
    pub strategy: Strategy,
    pub on_unreachable: OnUnreachable,
    pub prefer_home_cluster: bool,
    /// Requests in flight to one cluster address at most; more wait their
    /// turn (a cold boot storm must not open a connection per phone).
    pub max_requests_per_address: usize,
    /// Fetches that may wait for a turn at one cluster's addresses; beyond
    /// them a new miss for that cluster is answered busy at once.
    pub max_queued: usize,
    /// Slowest a body may arrive, in bytes per second over each window of
    /// [`BODY_RATE_WINDOW`] after its first byte; slower fails the
    /// address. Zero: no minimum.
    pub min_body_rate: u64,
    /// Most bytes of upstream bodies being received at once, over every
    /// cluster; a body that would exceed it fails (busy).
    pub max_inflight_bytes: u64,
    /// A PEM bundle of extra root certificates trusted for `https://`
    /// cluster addresses, on top of the public (webpki) roots: CUCM's HTTPS
    /// port presents a certificate signed by the cluster's own CA or
    /// self-signed. Checked at load to hold at least one certificate.
    pub ca_file: Option<PathBuf>,
    /// Most tftproxy instances a request may travel through on its way to a
    /// cluster (their entries in `Via`, ours included): 1 is the single
    /// level of Cisco's model 1.
    pub max_hops: usize,
    /// How long an address that failed to connect or timed out is skipped
    /// at first; doubles while it keeps failing, up to
    /// [`RemoteConfig::hold_down_max`]. Zero: never skipped.
    pub hold_down: Duration,
}

/// The window over which `remote.min_body_rate` is measured: a body must
/// bring `min_body_rate × window` bytes in each such window after its first
/// byte.
pub const BODY_RATE_WINDOW: Duration = Duration::from_secs(5);

/// The longest an address is held down after repeated failures, and the
/// longest a `503` with `Retry-After` holds it down.
pub const HOLD_DOWN_CAP: Duration = Duration::from_secs(60);

impl RemoteConfig {
    /// The longest hold-down: [`HOLD_DOWN_CAP`], or `hold_down` if longer.
    pub fn hold_down_max(&self) -> Duration {
        self.hold_down.max(HOLD_DOWN_CAP)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    pub id: String,
    /// Empty when not configured.
    pub description: String,
    /// Empty when not configured.
    pub fqdn: String,
    pub enabled: bool,
    /// 1–3 base URLs, e.g. `http://192.0.2.10:6970`, in the order to try.
    /// Always `scheme://host:port`, without a trailing slash; see
    /// [`normalize_address`] for how the written forms map to these.
    pub addresses: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// A tracing filter (`info`, `tftproxy=debug`); `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

/// A configuration that cannot be used, with where and why.
///
/// `Invalid.key` is a dotted key with 1-based array indices
/// (`cluster[2].addresses[1]`), `Invalid.line` the 1-based line of that key
/// (or of its table's header when the key is absent).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {error}")]
    Read {
        path: PathBuf,
        // Not `source`: the message already says it, and a source would
        // be printed a second time by `{:#}`.
        error: std::io::Error,
    },
    /// `-c` names a FIFO, a device, a directory…: refused before reading.
    #[error("{path}: is {what}, not a regular file")]
    NotARegularFile { path: PathBuf, what: &'static str },
    /// Larger than [`MAX_CONFIG_BYTES`].
    #[error(
        "{path}: is {size} bytes; a configuration file is at most {} bytes",
        MAX_CONFIG_BYTES
    )]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// Port used for an `https://` cluster address written without a port: the
/// port CUCM serves HTTPS TFTP on.
pub const DEFAULT_HTTPS_PORT: u16 = 6972;

/// Allowed `tftp.max_block_size` (RFC 2348; 65464 is the largest a UDP/IPv4
/// datagram carries).
pub const BLOCK_SIZE_RANGE: RangeInclusive<i64> = 512..=65464;
/// Allowed `tftp.max_window_size` (RFC 7440; many clients fail above 64).
pub const WINDOW_SIZE_RANGE: RangeInclusive<i64> = 1..=64;
/// Allowed `tftp.max_transfers`.
pub const MAX_TRANSFERS_RANGE: RangeInclusive<i64> = 1..=100_000;
/// Allowed `remote.max_hops`.
pub const MAX_HOPS_RANGE: RangeInclusive<i64> = 1..=16;

impl Config {
    /// `http.via_id` as configured (`None`: not set, or no `[http]`).
    pub fn via_id(&self) -> Option<&str> {
        self.http.as_ref().and_then(|h| h.via_id.as_deref())
    }

    /// Reads and validates the file at `path`: a regular file of at most
    /// [`MAX_CONFIG_BYTES`], refused at once otherwise.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::parse(&file::read(path)?, path)
    }

    /// Parses and validates `text`; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let doc = match toml_edit::ImDocument::parse(text) {
            Ok(doc) => doc,
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                let message = e.message().trim().lines().collect::<Vec<_>>().join("; ");
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    line: line_of_offset(text, offset),
                    key: syntax_error_key(text, offset),
                    message: format!("invalid TOML: {message}"),
                });
            }
        };
        let locator = Locator::new(text, &doc);
        let ctx = Ctx {
            path,
            loc: &locator,
        };
        let raw: raw::Config = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                let key = e
                    .span()
                    .and_then(|s| locator.key_at(&s))
                    .unwrap_or_else(|| syntax_error_key(text, offset));
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    line: line_of_offset(text, offset),
                    message: serde_message(e.message(), &key),
                    key,
                });
            }
        };
        ctx.validate(raw)
    }

    /// The clusters that are enabled, in priority order.
    pub fn enabled_clusters(&self) -> impl Iterator<Item = &ClusterConfig> {
        self.clusters.iter().filter(|c| c.enabled)
    }
}

impl Default for Config {
    /// All defaults: no HTTP front end, no admin endpoint, no cluster.
    fn default() -> Self {
        Config {
            tftp: TftpConfig::default(),
            http: None,
            admin: None,
            cache: CacheConfig::default(),
            remote: RemoteConfig::default(),
            clusters: Vec::new(),
            log: LogConfig::default(),
            tls_relay: None,
        }
    }
}

impl Default for TftpConfig {
    fn default() -> Self {
        TftpConfig {
            listen: vec!["0.0.0.0:69".parse().unwrap(), "[::]:69".parse().unwrap()],
            root: None,
            max_transfers: 2000,
            max_resolving: 2000,
            max_block_size: 1468,
            max_window_size: 16,
            port_range: None,
            retransmit_timeout: Duration::from_secs(1),
            max_retries: 5,
            shutdown_grace: Duration::from_secs(10),
            single_port: false,
            allow: AllowList::default(),
            max_transfers_per_client: access::DEFAULT_TRANSFERS_PER_CLIENT,
            client_request_rate: access::DEFAULT_CLIENT_REQUEST_RATE,
            fetch_wait: Duration::from_secs(5),
        }
    }
}

impl Default for HttpConfig {
    /// The values taken by keys left out of an `[http]` section.
    fn default() -> Self {
        HttpConfig {
            listen: vec!["0.0.0.0:6970".parse().unwrap()],
            fetch_wait: Duration::from_secs(3),
            max_connections: 1024,
            via_id: None,
            allow: AllowList::default(),
        }
    }
}

impl Default for AdminConfig {
    /// The values taken by keys left out of an `[admin]` section.
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9669".parse().unwrap(),
            token_file: None,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 512 << 20,
            max_file_size: 128 << 20,
            ttl: Duration::from_secs(30 * 60),
            negative_ttl: Duration::from_secs(30),
            device_ttl: Duration::from_secs(5),
            max_homes: 100_000,
            max_locations: 100_000,
            dir: None,
            disk_max_bytes: 4 << 30,
            max_stale: Duration::from_secs(7 * 86_400),
        }
    }
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            port: 6970,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            strategy: Strategy::Parallel,
            on_unreachable: OnUnreachable::RetryLater,
            prefer_home_cluster: true,
            max_requests_per_address: 64,
            max_queued: 256,
            min_body_rate: 16 * 1024,
            max_inflight_bytes: 256 * 1024 * 1024,
            ca_file: None,
            hold_down: Duration::from_secs(5),
            max_hops: 3,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `http.via_id`: 1 to 63 of `A-Z a-z 0-9 . - _` (host-name characters, all
/// valid in an RFC 9110 pseudonym); the same rule as `crate::via`'s, which
/// this layer cannot use.
fn is_via_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Rewords serde's message for a person editing a TOML file.
fn serde_message(message: &str, key: &str) -> String {
    let mut m = message
        .replace("unknown field", "unknown key")
        .replace(", expected one of", "; allowed keys:")
        .replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected an array")
        .replace("expected a boolean", "expected true or false");
    if m.starts_with("unknown key") {
        m = m.replace(", expected `", "; allowed key: `");
    }
    if key == "cluster" && m.contains("expected an array") {
        m.push_str(" (write each cluster as [[cluster]], with double brackets)");
    }
    m
}
