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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
}

#[derive(Clone, Debug, PartialEq)]
pub struct TftpConfig {
    pub listen: Vec<SocketAddr>,
    pub root: Option<PathBuf>,
    pub max_transfers: usize,
    pub max_block_size: u16,
    pub max_window_size: u16,
    pub port_range: Option<RangeInclusive<u16>>,
    /// First retransmit time-out when the client asks for none.
    pub retransmit_timeout: Duration,
    /// Retransmissions of one packet before a transfer is abandoned.
    pub max_retries: u32,
    /// How long running transfers may finish after SIGTERM.
    pub shutdown_grace: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    pub listen: Vec<SocketAddr>,
    /// How long a request that needs an upstream fetch waits before 503.
    pub fetch_wait: Duration,
    pub max_connections: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
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
    pub request_timeout: Duration,
    pub strategy: Strategy,
    pub on_unreachable: OnUnreachable,
    pub prefer_home_cluster: bool,
    /// Requests in flight to one cluster address at most; more wait their
    /// turn (a cold boot storm must not open a connection per phone).
    pub max_requests_per_address: usize,
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
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
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

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
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

    /// The effective configuration as TOML: every key with its effective
    /// value, durations and sizes in human form, clusters with their
    /// resolved base URLs. [`Config::parse`] of the result gives back an
    /// equal `Config`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let o = &mut out;
        let _ = writeln!(o, "# tftproxy effective configuration");
        let _ = writeln!(o);
        let t = &self.tftp;
        let _ = writeln!(o, "[tftp]");
        let _ = writeln!(o, "listen = {}", addr_list(&t.listen));
        match &t.root {
            Some(root) => {
                let _ = writeln!(o, "root = {}", quote(&root.to_string_lossy()));
            }
            None => {
                let _ = writeln!(o, "# root: not set (no local files)");
            }
        }
        let _ = writeln!(o, "max_transfers = {}", t.max_transfers);
        let _ = writeln!(o, "max_block_size = {}", t.max_block_size);
        let _ = writeln!(o, "max_window_size = {}", t.max_window_size);
        match &t.port_range {
            Some(r) => {
                let _ = writeln!(o, "port_range = \"{}-{}\"", r.start(), r.end());
            }
            None => {
                let _ = writeln!(
                    o,
                    "# port_range: not set (the system picks each transfer's port)"
                );
            }
        }
        let _ = writeln!(
            o,
            "retransmit_timeout = {}",
            quote(&format_duration(t.retransmit_timeout))
        );
        let _ = writeln!(o, "max_retries = {}", t.max_retries);
        let _ = writeln!(
            o,
            "shutdown_grace = {}",
            quote(&format_duration(t.shutdown_grace))
        );
        let _ = writeln!(o);
        match &self.http {
            Some(h) => {
                let _ = writeln!(o, "[http]");
                let _ = writeln!(o, "listen = {}", addr_list(&h.listen));
                let _ = writeln!(o, "fetch_wait = {}", quote(&format_duration(h.fetch_wait)));
                let _ = writeln!(o, "max_connections = {}", h.max_connections);
            }
            None => {
                let _ = writeln!(o, "# [http]: not configured (no HTTP front end)");
            }
        }
        let _ = writeln!(o);
        match &self.admin {
            Some(a) => {
                let _ = writeln!(o, "[admin]");
                let _ = writeln!(o, "listen = {}", quote(&a.listen.to_string()));
            }
            None => {
                let _ = writeln!(o, "# [admin]: not configured (no admin endpoint)");
            }
        }
        let _ = writeln!(o);
        let c = &self.cache;
        let _ = writeln!(o, "[cache]");
        let _ = writeln!(o, "max_bytes = {}", quote(&format_size(c.max_bytes)));
        let _ = writeln!(
            o,
            "max_file_size = {}",
            quote(&format_size(c.max_file_size))
        );
        let _ = writeln!(o, "ttl = {}", quote(&format_duration(c.ttl)));
        let _ = writeln!(
            o,
            "negative_ttl = {}",
            quote(&format_duration(c.negative_ttl))
        );
        let _ = writeln!(o, "device_ttl = {}", quote(&format_duration(c.device_ttl)));
        let _ = writeln!(o, "max_homes = {}", c.max_homes);
        let _ = writeln!(o);
        let r = &self.remote;
        let _ = writeln!(o, "[remote]");
        let _ = writeln!(o, "port = {}", r.port);
        let _ = writeln!(
            o,
            "connect_timeout = {}",
            quote(&format_duration(r.connect_timeout))
        );
        let _ = writeln!(
            o,
            "request_timeout = {}",
            quote(&format_duration(r.request_timeout))
        );
        let strategy = match r.strategy {
            Strategy::Parallel => "parallel",
            Strategy::Sequential => "sequential",
        };
        let _ = writeln!(o, "strategy = \"{strategy}\"");
        let on_unreachable = match r.on_unreachable {
            OnUnreachable::RetryLater => "retry-later",
            OnUnreachable::NotFound => "not-found",
        };
        let _ = writeln!(o, "on_unreachable = \"{on_unreachable}\"");
        let _ = writeln!(o, "prefer_home_cluster = {}", r.prefer_home_cluster);
        let _ = writeln!(
            o,
            "max_requests_per_address = {}",
            r.max_requests_per_address
        );
        let _ = writeln!(o);
        let _ = writeln!(o, "[log]");
        let _ = writeln!(o, "level = {}", quote(&self.log.level));
        let format = match self.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        let _ = writeln!(o, "format = \"{format}\"");
        if self.clusters.is_empty() {
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "# no [[cluster]]: files are served from the local root only"
            );
        }
        for cl in &self.clusters {
            let _ = writeln!(o);
            let _ = writeln!(o, "[[cluster]]");
            let _ = writeln!(o, "id = {}", quote(&cl.id));
            if !cl.description.is_empty() {
                let _ = writeln!(o, "description = {}", quote(&cl.description));
            }
            if !cl.fqdn.is_empty() {
                let _ = writeln!(o, "fqdn = {}", quote(&cl.fqdn));
            }
            let _ = writeln!(o, "enabled = {}", cl.enabled);
            let list: Vec<String> = cl.addresses.iter().map(|a| quote(a)).collect();
            let _ = writeln!(o, "addresses = [{}]", list.join(", "));
        }
        out
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
        }
    }
}

impl Default for TftpConfig {
    fn default() -> Self {
        TftpConfig {
            listen: vec!["0.0.0.0:69".parse().unwrap(), "[::]:69".parse().unwrap()],
            root: None,
            max_transfers: 2000,
            max_block_size: 1468,
            max_window_size: 16,
            port_range: None,
            retransmit_timeout: Duration::from_secs(1),
            max_retries: 5,
            shutdown_grace: Duration::from_secs(10),
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
        }
    }
}

impl Default for AdminConfig {
    /// The value taken by `listen` when left out of an `[admin]` section.
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9669".parse().unwrap(),
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

// ---------------------------------------------------------------------------
// Value helpers (public: the CLI uses them too)

/// Parses a duration such as `"500ms"`, `"30s"`, `"5m"`, `"1h 30m"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!(
            "must be a duration like \"500ms\", \"30s\" or \"5m\", got {} ({e})",
            quote(s)
        )
    })
}

/// Formats a duration so that [`parse_duration`] reads it back exactly:
/// `"30m"`, `"1s"`, `"1h 30m"`, `"0s"`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string()
}

/// Parses a size: an integer number of bytes (`"1048576"`), or a number with
/// a unit — binary `KiB`/`MiB`/`GiB`/`TiB`, decimal `KB`/`MB`/`GB`/`TB`, `B`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    t.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| {
            format!(
                "must be a size like \"64KiB\", \"512MiB\", \"1GiB\" or a number of bytes, got {}",
                quote(s)
            )
        })
}

/// Formats a size in the largest binary unit that divides it exactly
/// (`"512MiB"`, `"1GiB"`, `"64KiB"`), else as plain bytes (`"1000"`).
pub fn format_size(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    if n != 0 {
        for (unit, name) in UNITS {
            if n % unit == 0 {
                return format!("{}{name}", n / unit);
            }
        }
    }
    n.to_string()
}

/// The host part of a cluster address.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    /// A DNS name, lower-cased.
    Name(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// Turns a cluster address as written in the file into a base URL
/// `scheme://host:port` (no trailing slash):
///
/// | written | base URL |
/// |---|---|
/// | `192.0.2.10` | `http://192.0.2.10:<remote.port>` |
/// | `192.0.2.11:7000` | `http://192.0.2.11:7000` |
/// | `2001:db8::1` (bare IPv6) | `http://[2001:db8::1]:<remote.port>` |
/// | `[2001:db8::1]:7000` | `http://[2001:db8::1]:7000` |
/// | `cucm-a.example.com` | `http://cucm-a.example.com:<remote.port>` |
/// | `http://host` | `http://host:<remote.port>` |
/// | `https://host` | `https://host:6972` ([`DEFAULT_HTTPS_PORT`], CUCM's HTTPS TFTP port) |
/// | `https://host:443/` | `https://host:443` |
///
/// Host names are lower-cased; IPv6 addresses are written in their canonical
/// form. A URL may end in `/` but carry no other path, no query, no fragment
/// and no user information. `default_port` is `remote.port`.
pub fn normalize_address(written: &str, default_port: u16) -> Result<String, String> {
    parse_address(written, default_port).map(|(url, _, _)| url)
}

fn parse_address(written: &str, default_port: u16) -> Result<(String, Host, u16), String> {
    let s = written.trim();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("must not contain spaces, got {}", quote(written)));
    }
    let lower = s.to_ascii_lowercase();
    let (scheme, rest) = if lower.starts_with("http://") {
        (Some("http"), &s[7..])
    } else if lower.starts_with("https://") {
        (Some("https"), &s[8..])
    } else if s.contains("://") {
        return Err(format!(
            "unsupported scheme in {}: write host, host:port, http://host[:port] or https://host[:port]",
            quote(written)
        ));
    } else {
        (None, s)
    };
    let authority = match scheme {
        Some(_) => {
            let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(cut);
            if !(tail.is_empty() || tail == "/") {
                return Err(format!(
                    "a cluster address is a base URL without path, query or fragment \
                     (only a trailing \"/\"), got {}",
                    quote(written)
                ));
            }
            if authority.contains('@') {
                return Err(format!(
                    "must not contain user information, got {}",
                    quote(written)
                ));
            }
            authority
        }
        None => {
            if s.contains(['/', '?', '#', '@']) {
                return Err(format!(
                    "must be host, host:port, [IPv6]:port, http://host[:port] or \
                     https://host[:port], got {}",
                    quote(written)
                ));
            }
            s
        }
    };
    let default_port = if scheme == Some("https") {
        DEFAULT_HTTPS_PORT
    } else {
        default_port
    };
    let (host, port) = split_host_port(authority, scheme.is_none(), written)?;
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(format!(
                    "port must be a number between 1 and 65535, got {} in {}",
                    quote(p),
                    quote(written)
                ))
            }
        },
    };
    if let Host::Ip(ip) = &host {
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!(
                "{ip} is not the address of a server, in {}",
                quote(written)
            ));
        }
    }
    let url = format!("{}://{host}:{port}", scheme.unwrap_or("http"));
    Ok((url, host, port))
}

/// Splits `host[:port]`, `[v6][:port]`, or (when `bare_v6_ok`) a bare IPv6
/// address, and validates the host.
fn split_host_port<'a>(
    authority: &'a str,
    bare_v6_ok: bool,
    written: &str,
) -> Result<(Host, Option<&'a str>), String> {
    if authority.is_empty() {
        return Err(format!("has no host, in {}", quote(written)));
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Err(format!(
                "missing \"]\" after an IPv6 address, in {}",
                quote(written)
            ));
        };
        let ip: Ipv6Addr = inner.parse().map_err(|_| {
            format!(
                "{} is not a valid IPv6 address, in {}",
                quote(inner),
                quote(written)
            )
        })?;
        let port =
            match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| {
                    format!("expected \":port\" after \"]\", in {}", quote(written))
                })?),
            };
        return Ok((Host::Ip(IpAddr::V6(ip)), port));
    }
    if authority.matches(':').count() >= 2 {
        if bare_v6_ok {
            if let Ok(ip) = authority.parse::<Ipv6Addr>() {
                return Ok((Host::Ip(IpAddr::V6(ip)), None));
            }
        }
        return Err(format!(
            "an IPv6 address with a port or in a URL must be in brackets like \
             \"[2001:db8::1]:6970\", got {}",
            quote(written)
        ));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    Ok((parse_host(host, written)?, port))
}

fn parse_host(host: &str, written: &str) -> Result<Host, String> {
    if host.is_empty() {
        return Err(format!("has no host, in {}", quote(written)));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    let last_label = host.trim_end_matches('.').rsplit('.').next().unwrap_or("");
    if !last_label.is_empty() && last_label.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{} is not a valid IPv4 address", quote(host)));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let valid = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(format!(
            "{} is not a valid host name (letters, digits, \"-\" and \".\"), in {}",
            quote(host),
            quote(written)
        ));
    }
    Ok(Host::Name(name.to_ascii_lowercase()))
}

/// Whether a cluster address at `host:port` would reach our own HTTP front
/// listening on `listen`.
fn is_own_address(host: &Host, port: u16, listen: &SocketAddr) -> bool {
    if listen.port() != port {
        return false;
    }
    let ours = listen.ip();
    match host {
        Host::Ip(ip) => *ip == ours || (ours.is_unspecified() && ip.is_loopback()),
        Host::Name(name) => name == "localhost" && (ours.is_unspecified() || ours.is_loopback()),
    }
}

// ---------------------------------------------------------------------------
// Raw (serde) structs: every field optional, unknown keys refused.

mod raw {
    use serde::de::{self, Deserializer, Visitor};
    use serde::Deserialize;
    use std::fmt;

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub struct Config {
        pub tftp: Tftp,
        pub http: Option<Http>,
        pub admin: Option<Admin>,
        pub cache: Cache,
        pub remote: Remote,
        pub cluster: Vec<Cluster>,
        pub log: Log,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub struct Tftp {
        pub listen: Option<OneOrMany>,
        pub root: Option<String>,
        pub max_transfers: Option<i64>,
        pub max_block_size: Option<i64>,
        pub max_window_size: Option<i64>,
        pub port_range: Option<String>,
        pub retransmit_timeout: Option<Dur>,
        pub max_retries: Option<i64>,
        pub shutdown_grace: Option<Dur>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub struct Http {
        pub listen: Option<OneOrMany>,
        pub fetch_wait: Option<Dur>,
        pub max_connections: Option<i64>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub struct Admin {
        pub listen: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub struct Cache {
        pub max_bytes: Option<Size>,
        pub max_file_size: Option<Size>,
        pub ttl: Option<Dur>,
        pub negative_ttl: Option<Dur>,
        pub device_ttl: Option<Dur>,
        pub max_homes: Option<i64>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub struct Remote {
        pub port: Option<i64>,
        pub connect_timeout: Option<Dur>,
        pub request_timeout: Option<Dur>,
        pub strategy: Option<String>,
        pub on_unreachable: Option<String>,
        pub prefer_home_cluster: Option<bool>,
        pub max_requests_per_address: Option<i64>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub struct Cluster {
        pub id: Option<String>,
        pub description: Option<String>,
        pub fqdn: Option<String>,
        pub enabled: Option<bool>,
        pub addresses: Option<Vec<String>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub struct Log {
        pub level: Option<String>,
        pub format: Option<String>,
    }

    /// A duration as written (a string); parsed during validation.
    pub struct Dur(pub String);

    impl<'de> Deserialize<'de> for Dur {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Dur;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a duration string like \"500ms\", \"30s\" or \"5m\"")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                    Ok(Dur(v.to_owned()))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// A size as written: an integer of bytes or a string with a unit.
    pub enum Size {
        Bytes(i64),
        Text(String),
    }

    impl<'de> Deserialize<'de> for Size {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Size;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a size like \"512MiB\" or an integer number of bytes")
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                    Ok(Size::Bytes(v))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                    Ok(Size::Bytes(i64::try_from(v).unwrap_or(i64::MAX)))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                    Ok(Size::Text(v.to_owned()))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// A list of strings; a single string is accepted as a list of one.
    pub struct OneOrMany(pub Vec<String>);

    impl<'de> Deserialize<'de> for OneOrMany {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = OneOrMany;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an array of addresses like [\"0.0.0.0:69\", \"[::]:69\"]")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                    Ok(OneOrMany(vec![v.to_owned()]))
                }
                fn visit_seq<A: de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<OneOrMany, A::Error> {
                    let mut out = Vec::new();
                    while let Some(s) = seq.next_element::<String>()? {
                        out.push(s);
                    }
                    Ok(OneOrMany(out))
                }
            }
            d.deserialize_any(V)
        }
    }
}

// ---------------------------------------------------------------------------
// Locating keys: dotted path → line, and error span → dotted path.

struct Locator {
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    /// (path, span of the key or, for array elements, of the value).
    spans: Vec<(String, Range<usize>)>,
    /// path → 1-based line.
    lines: HashMap<String, usize>,
}

impl Locator {
    fn new(text: &str, doc: &toml_edit::ImDocument<&str>) -> Locator {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let mut loc = Locator {
            line_starts,
            spans: Vec::new(),
            lines: HashMap::new(),
        };
        loc.walk_table(doc.as_table(), "");
        loc
    }

    fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }

    /// Records `path`; its line is that of the first span given.
    fn record(&mut self, path: &str, spans: &[Option<Range<usize>>]) {
        let mut first = true;
        for span in spans.iter().flatten() {
            if first {
                let line = self.line(span.start);
                self.lines.entry(path.to_owned()).or_insert(line);
                first = false;
            }
            self.spans.push((path.to_owned(), span.clone()));
        }
    }

    fn walk_table(&mut self, table: &toml_edit::Table, prefix: &str) {
        for (k, item) in table.iter() {
            let path = join(prefix, k);
            let key_span = table.key(k).and_then(|k| k.span());
            // A table's line is its header's; a key-value's the key's.
            let spans = match item {
                toml_edit::Item::Table(t) if t.span().is_some() => [t.span(), key_span],
                _ => [key_span, item.span()],
            };
            self.record(&path, &spans);
            self.walk_item(item, &path);
        }
    }

    fn walk_item(&mut self, item: &toml_edit::Item, path: &str) {
        match item {
            toml_edit::Item::Table(t) => self.walk_table(t, path),
            toml_edit::Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    let p = format!("{path}[{}]", i + 1);
                    self.record(&p, &[t.span()]);
                    self.walk_table(t, &p);
                }
            }
            toml_edit::Item::Value(v) => self.walk_value(v, path),
            toml_edit::Item::None => {}
        }
    }

    fn walk_value(&mut self, value: &toml_edit::Value, path: &str) {
        match value {
            toml_edit::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    let p = format!("{path}[{}]", i + 1);
                    self.record(&p, &[v.span()]);
                    self.walk_value(v, &p);
                }
            }
            toml_edit::Value::InlineTable(t) => {
                for (k, v) in t.iter() {
                    let p = join(path, k);
                    self.record(&p, &[t.key(k).and_then(|k| k.span()), v.span()]);
                    self.walk_value(v, &p);
                }
            }
            _ => {}
        }
    }

    /// The line of `path`, or of its nearest present ancestor (a table
    /// header), or 1.
    fn line_of(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(&line) = self.lines.get(p) {
                return line;
            }
            match p.rfind(['.', '[']) {
                Some(i) if i > 0 => p = &p[..i],
                _ => return 1,
            }
        }
    }

    /// The most specific key whose span contains the start of `span`.
    fn key_at(&self, span: &Range<usize>) -> Option<String> {
        self.spans
            .iter()
            .filter(|(_, s)| s.start <= span.start && (span.start < s.end || s.start == span.start))
            .min_by_key(|(_, s)| s.end - s.start)
            .map(|(p, _)| p.clone())
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Best-effort key for a TOML syntax error at `offset`: the table header in
/// force and the last `key =` at or before the error's line.
fn syntax_error_key(text: &str, offset: usize) -> String {
    let error_line = line_of_offset(text, offset);
    let mut table = String::new();
    let mut key: Option<String> = None;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in text.lines().take(error_line) {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("[[") {
            let name = rest.split("]]").next().unwrap_or("").trim().to_owned();
            let n = counts.entry(name.clone()).or_insert(0);
            *n += 1;
            table = format!("{name}[{n}]");
            key = None;
        } else if let Some(rest) = t.strip_prefix('[') {
            table = rest.split(']').next().unwrap_or("").trim().to_owned();
            key = None;
        } else if let Some((k, _)) = t.split_once('=') {
            let k = k.trim();
            if !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            {
                key = Some(k.to_owned());
            }
        }
    }
    match key {
        Some(k) => join(&table, &k),
        None if !table.is_empty() => table,
        None => "(document)".into(),
    }
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

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn addr_list(addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| quote(&a.to_string())).collect();
    format!("[{}]", list.join(", "))
}

// ---------------------------------------------------------------------------
// Validation

struct Ctx<'a> {
    path: &'a Path,
    loc: &'a Locator,
}

type Res<T> = Result<T, ConfigError>;

impl Ctx<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: self.loc.line_of(key),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn int(&self, key: &str, v: Option<i64>, range: RangeInclusive<i64>, default: i64) -> Res<i64> {
        let v = v.unwrap_or(default);
        if !range.contains(&v) {
            return Err(self.err(
                key,
                format!(
                    "must be between {} and {}, got {v}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(v)
    }

    fn duration(
        &self,
        key: &str,
        v: Option<raw::Dur>,
        range: RangeInclusive<Duration>,
        default: Duration,
    ) -> Res<Duration> {
        let Some(raw::Dur(text)) = v else {
            return Ok(default);
        };
        let d = parse_duration(&text).map_err(|m| self.err(key, m))?;
        if !range.contains(&d) {
            let lo = format_duration(*range.start());
            let hi = format_duration(*range.end());
            return Err(self.err(
                key,
                format!("must be between {lo} and {hi}, got {}", text.trim()),
            ));
        }
        Ok(d)
    }

    fn size(&self, key: &str, v: Option<raw::Size>, nonzero: bool, default: u64) -> Res<u64> {
        let n = match v {
            None => return Ok(default),
            Some(raw::Size::Bytes(n)) => u64::try_from(n)
                .map_err(|_| self.err(key, format!("must not be negative, got {n}")))?,
            Some(raw::Size::Text(t)) => parse_size(&t).map_err(|m| self.err(key, m))?,
        };
        if nonzero && n == 0 {
            return Err(self.err(key, "must be greater than 0, got 0"));
        }
        Ok(n)
    }

    fn listen_list(
        &self,
        key: &str,
        v: Option<raw::OneOrMany>,
        default: Vec<SocketAddr>,
        example: &str,
    ) -> Res<Vec<SocketAddr>> {
        let Some(raw::OneOrMany(list)) = v else {
            return Ok(default);
        };
        if list.is_empty() {
            return Err(self.err(
                key,
                format!("must list at least one address to listen on, like [{example}]"),
            ));
        }
        let mut out: Vec<SocketAddr> = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            let k = format!("{key}[{}]", i + 1);
            let a = self.socket_addr(&k, s, example)?;
            if let Some(j) = out.iter().position(|b| *b == a) {
                return Err(self.err(&k, format!("{a} is listed twice (also {key}[{}])", j + 1)));
            }
            out.push(a);
        }
        Ok(out)
    }

    fn socket_addr(&self, key: &str, s: &str, example: &str) -> Res<SocketAddr> {
        s.trim().parse::<SocketAddr>().map_err(|_| {
            self.err(
                key,
                format!(
                    "must be an IP address and port like {example}, got {}",
                    quote(s)
                ),
            )
        })
    }

    fn validate(&self, raw: raw::Config) -> Res<Config> {
        let tftp = self.tftp(raw.tftp)?;
        let http = match raw.http {
            Some(h) => Some(self.http(h)?),
            None => None,
        };
        let admin = match raw.admin {
            Some(a) => Some(AdminConfig {
                listen: match a.listen {
                    Some(s) => self.socket_addr("admin.listen", &s, "\"127.0.0.1:9669\"")?,
                    None => AdminConfig::default().listen,
                },
            }),
            None => None,
        };
        let cache = self.cache(raw.cache)?;
        let remote = self.remote(raw.remote)?;
        let log = self.log(raw.log)?;
        let http_listen = http.as_ref().map_or(&[][..], |h| &h.listen[..]);
        let clusters = self.clusters(raw.cluster, remote.port, http_listen)?;
        Ok(Config {
            tftp,
            http,
            admin,
            cache,
            remote,
            clusters,
            log,
        })
    }

    fn tftp(&self, t: raw::Tftp) -> Res<TftpConfig> {
        let d = TftpConfig::default();
        let listen = self.listen_list(
            "tftp.listen",
            t.listen,
            d.listen,
            "\"0.0.0.0:69\", \"[::]:69\"",
        )?;
        let root = match t.root {
            None => None,
            Some(r) => {
                if r.trim().is_empty() {
                    return Err(self.err("tftp.root", "must be a directory path, got \"\""));
                }
                let p = PathBuf::from(&r);
                match std::fs::metadata(&p) {
                    Ok(m) if m.is_dir() => Some(p),
                    Ok(_) => {
                        return Err(
                            self.err("tftp.root", format!("{} is not a directory", quote(&r)))
                        )
                    }
                    Err(e) => {
                        return Err(self.err(
                            "tftp.root",
                            format!(
                                "directory {} cannot be used: {e} (a relative path is \
                                 relative to the current directory)",
                                quote(&r)
                            ),
                        ))
                    }
                }
            }
        };
        let max_transfers = self.int(
            "tftp.max_transfers",
            t.max_transfers,
            MAX_TRANSFERS_RANGE,
            2000,
        )? as usize;
        let max_block_size = self.int(
            "tftp.max_block_size",
            t.max_block_size,
            BLOCK_SIZE_RANGE,
            d.max_block_size.into(),
        )? as u16;
        let max_window_size = self.int(
            "tftp.max_window_size",
            t.max_window_size,
            WINDOW_SIZE_RANGE,
            d.max_window_size.into(),
        )? as u16;
        let port_range = match t.port_range {
            None => None,
            Some(s) => Some(self.port_range(&s)?),
        };
        let retransmit_timeout = self.duration(
            "tftp.retransmit_timeout",
            t.retransmit_timeout,
            Duration::from_millis(100)..=Duration::from_secs(60),
            d.retransmit_timeout,
        )?;
        let max_retries = self.int(
            "tftp.max_retries",
            t.max_retries,
            1..=20,
            d.max_retries.into(),
        )? as u32;
        let shutdown_grace = self.duration(
            "tftp.shutdown_grace",
            t.shutdown_grace,
            Duration::ZERO..=Duration::from_secs(3600),
            d.shutdown_grace,
        )?;
        Ok(TftpConfig {
            listen,
            root,
            max_transfers,
            max_block_size,
            max_window_size,
            port_range,
            retransmit_timeout,
            max_retries,
            shutdown_grace,
        })
    }

    fn port_range(&self, s: &str) -> Res<RangeInclusive<u16>> {
        let bad = || {
            self.err(
                "tftp.port_range",
                format!(
                    "must be \"LO-HI\" with 1024 <= LO <= HI <= 65535, like \"49152-49407\", got {}",
                    quote(s)
                ),
            )
        };
        let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
        let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
        if lo < 1024 || lo > hi {
            return Err(bad());
        }
        Ok(lo..=hi)
    }

    fn http(&self, h: raw::Http) -> Res<HttpConfig> {
        let d = HttpConfig::default();
        Ok(HttpConfig {
            listen: self.listen_list("http.listen", h.listen, d.listen, "\"0.0.0.0:6970\"")?,
            fetch_wait: self.duration(
                "http.fetch_wait",
                h.fetch_wait,
                Duration::ZERO..=Duration::from_secs(60),
                d.fetch_wait,
            )?,
            max_connections: self.int(
                "http.max_connections",
                h.max_connections,
                1..=1_000_000,
                d.max_connections as i64,
            )? as usize,
        })
    }

    fn cache(&self, c: raw::Cache) -> Res<CacheConfig> {
        let d = CacheConfig::default();
        Ok(CacheConfig {
            max_bytes: self.size("cache.max_bytes", c.max_bytes, false, d.max_bytes)?,
            max_file_size: self.size(
                "cache.max_file_size",
                c.max_file_size,
                true,
                d.max_file_size,
            )?,
            ttl: self.duration("cache.ttl", c.ttl, Duration::ZERO..=Duration::MAX, d.ttl)?,
            negative_ttl: self.duration(
                "cache.negative_ttl",
                c.negative_ttl,
                Duration::ZERO..=Duration::MAX,
                d.negative_ttl,
            )?,
            device_ttl: self.duration(
                "cache.device_ttl",
                c.device_ttl,
                Duration::ZERO..=Duration::MAX,
                d.device_ttl,
            )?,
            max_homes: self.int(
                "cache.max_homes",
                c.max_homes,
                1..=100_000_000,
                d.max_homes as i64,
            )? as u64,
        })
    }

    fn remote(&self, r: raw::Remote) -> Res<RemoteConfig> {
        let d = RemoteConfig::default();
        let timeouts = Duration::from_millis(1)..=Duration::from_secs(3600);
        let strategy = match r.strategy.as_deref() {
            None => d.strategy,
            Some("parallel") => Strategy::Parallel,
            Some("sequential") => Strategy::Sequential,
            Some(other) => {
                return Err(self.err(
                    "remote.strategy",
                    format!(
                        "must be \"parallel\" or \"sequential\", got {}",
                        quote(other)
                    ),
                ))
            }
        };
        let on_unreachable = match r.on_unreachable.as_deref() {
            None => d.on_unreachable,
            Some("retry-later") => OnUnreachable::RetryLater,
            Some("not-found") => OnUnreachable::NotFound,
            Some(other) => {
                return Err(self.err(
                    "remote.on_unreachable",
                    format!(
                        "must be \"retry-later\" or \"not-found\", got {}",
                        quote(other)
                    ),
                ))
            }
        };
        Ok(RemoteConfig {
            port: self.int("remote.port", r.port, 1..=65535, d.port.into())? as u16,
            connect_timeout: self.duration(
                "remote.connect_timeout",
                r.connect_timeout,
                timeouts.clone(),
                d.connect_timeout,
            )?,
            request_timeout: self.duration(
                "remote.request_timeout",
                r.request_timeout,
                timeouts,
                d.request_timeout,
            )?,
            strategy,
            on_unreachable,
            prefer_home_cluster: r.prefer_home_cluster.unwrap_or(d.prefer_home_cluster),
            max_requests_per_address: self.int(
                "remote.max_requests_per_address",
                r.max_requests_per_address,
                1..=10_000,
                d.max_requests_per_address as i64,
            )? as usize,
        })
    }

    fn log(&self, l: raw::Log) -> Res<LogConfig> {
        let d = LogConfig::default();
        let level = match l.level {
            None => d.level,
            Some(level) => {
                if level.trim().is_empty() {
                    return Err(self.err(
                        "log.level",
                        "must be a tracing filter like \"info\" or \"info,tftproxy=debug\", got \"\"",
                    ));
                }
                if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
                    return Err(self.err(
                        "log.level",
                        format!(
                            "must be a tracing filter like \"info\" or \"info,tftproxy=debug\", \
                             got {} ({e})",
                            quote(&level)
                        ),
                    ));
                }
                level
            }
        };
        let format = match l.format.as_deref() {
            None => d.format,
            Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(self.err(
                    "log.format",
                    format!("must be \"text\" or \"json\", got {}", quote(other)),
                ))
            }
        };
        Ok(LogConfig { level, format })
    }

    fn clusters(
        &self,
        raw: Vec<raw::Cluster>,
        default_port: u16,
        http_listen: &[SocketAddr],
    ) -> Res<Vec<ClusterConfig>> {
        let mut out: Vec<ClusterConfig> = Vec::with_capacity(raw.len());
        // Every address of an enabled cluster: (url, key where written).
        let mut seen: Vec<(String, String)> = Vec::new();
        for (i, c) in raw.into_iter().enumerate() {
            let base = format!("cluster[{}]", i + 1);
            let id_key = format!("{base}.id");
            let id = c.id.ok_or_else(|| {
                self.err(&id_key, "is required: 1-50 characters of A-Z a-z 0-9 . -")
            })?;
            let id_ok = (1..=50).contains(&id.chars().count())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !id_ok {
                return Err(self.err(
                    &id_key,
                    format!(
                        "must be 1-50 characters of A-Z a-z 0-9 . -, got {}",
                        quote(&id)
                    ),
                ));
            }
            if let Some(j) = out.iter().position(|o| o.id == id) {
                return Err(self.err(
                    &id_key,
                    format!(
                        "duplicate cluster id {} (also cluster[{}].id)",
                        quote(&id),
                        j + 1
                    ),
                ));
            }
            let description = c.description.unwrap_or_default();
            let n = description.chars().count();
            if n > 128 {
                return Err(self.err(
                    &format!("{base}.description"),
                    format!("must be at most 128 characters, got {n}"),
                ));
            }
            if description.chars().any(char::is_control) {
                return Err(self.err(
                    &format!("{base}.description"),
                    "must not contain control characters (line breaks, tabs)",
                ));
            }
            let fqdn = c.fqdn.unwrap_or_default();
            let fqdn_ok = fqdn.chars().count() <= 50
                && fqdn
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-* ".contains(&b));
            if !fqdn_ok {
                return Err(self.err(
                    &format!("{base}.fqdn"),
                    format!(
                        "must be at most 50 characters of A-Z a-z 0-9 . - * and space, got {}",
                        quote(&fqdn)
                    ),
                ));
            }
            let enabled = c.enabled.unwrap_or(true);
            let addr_key = format!("{base}.addresses");
            let written = c.addresses.unwrap_or_default();
            if enabled && !(1..=3).contains(&written.len()) {
                return Err(self.err(
                    &addr_key,
                    format!(
                        "an enabled cluster needs 1 to 3 addresses (replicas of one cluster, \
                         tried in order), got {}",
                        written.len()
                    ),
                ));
            }
            if written.len() > 3 {
                return Err(self.err(
                    &addr_key,
                    format!("must list at most 3 addresses, got {}", written.len()),
                ));
            }
            let mut addresses = Vec::with_capacity(written.len());
            for (j, w) in written.iter().enumerate() {
                let key = format!("{addr_key}[{}]", j + 1);
                let (url, host, port) =
                    parse_address(w, default_port).map_err(|m| self.err(&key, m))?;
                if let Some(own) = http_listen.iter().find(|l| is_own_address(&host, port, l)) {
                    return Err(self.err(
                        &key,
                        format!(
                            "{} points at tftproxy's own [http] listen address {own}: \
                             a request loop",
                            quote(w)
                        ),
                    ));
                }
                if addresses.contains(&url) {
                    return Err(self.err(&key, format!("{url} is listed twice in this cluster")));
                }
                if enabled {
                    if let Some((_, other)) = seen.iter().find(|(u, _)| *u == url) {
                        return Err(
                            self.err(&key, format!("{url} is already an address of {other}"))
                        );
                    }
                    seen.push((url.clone(), key.clone()));
                }
                addresses.push(url);
            }
            out.push(ClusterConfig {
                id,
                description,
                fqdn,
                enabled,
                addresses,
            });
        }
        Ok(out)
    }
}
