//! The configuration file: one TOML document, parsed into typed, validated
//! settings. Every error names the file, the line and the key, and says what
//! is allowed. Unknown keys are errors (a typo must not silently fall back to
//! a default).
//!
//! STATUS: skeleton — the shapes below are the contract the rest of the crate
//! uses; validation and located errors are being filled in.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
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
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    pub id: String,
    pub description: String,
    pub fqdn: String,
    pub enabled: bool,
    /// 1–3 base URLs, e.g. `http://192.0.2.10:6970`, in the order to try.
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
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {key}: {message}")]
    Invalid { path: PathBuf, line: usize, key: String, message: String },
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let _ = text;
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            line: 1,
            key: String::new(),
            message: "not implemented yet".into(),
        })
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
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Text }
    }
}
