//! Validation: the raw serde structs turned, field by field, into the public
//! types, every refusal a [`ConfigError`] naming the key and its line.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::key_lines::Locator;
use super::raw;
use super::render::quote;
use super::{
    format_duration, is_via_id, parse_duration, parse_size, CacheConfig, Config, ConfigError,
    HttpConfig, LogConfig, LogFormat, OnUnreachable, RemoteConfig, Strategy, TftpConfig,
    BLOCK_SIZE_RANGE, MAX_HOPS_RANGE, MAX_TRANSFERS_RANGE, WINDOW_SIZE_RANGE,
};

pub(super) struct Ctx<'a> {
    pub(super) path: &'a Path,
    pub(super) loc: &'a Locator,
}

pub(super) type Res<T> = Result<T, ConfigError>;

impl Ctx<'_> {
    pub(super) fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: self.loc.line_of(key),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    pub(super) fn int(
        &self,
        key: &str,
        v: Option<i64>,
        range: RangeInclusive<i64>,
        default: i64,
    ) -> Res<i64> {
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

    pub(super) fn duration(
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

    pub(super) fn listen_list(
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

    pub(super) fn socket_addr(&self, key: &str, s: &str, example: &str) -> Res<SocketAddr> {
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

    pub(super) fn validate(&self, raw: raw::Config) -> Res<Config> {
        let tftp = self.tftp(raw.tftp)?;
        let http = match raw.http {
            Some(h) => Some(self.http(h)?),
            None => None,
        };
        let admin = match raw.admin {
            Some(a) => Some(self.admin(a)?),
            None => None,
        };
        let cache = self.cache(raw.cache)?;
        let inflight_set = raw.remote.max_inflight_bytes.is_some();
        let mut remote = self.remote(raw.remote)?;
        // The in-flight budget must hold the largest file a cluster may send.
        if remote.max_inflight_bytes < cache.max_file_size {
            if inflight_set {
                return Err(self.err(
                    "remote.max_inflight_bytes",
                    format!(
                        "must be at least cache.max_file_size ({} bytes), or a file that large could never be fetched, got {}",
                        cache.max_file_size, remote.max_inflight_bytes
                    ),
                ));
            }
            remote.max_inflight_bytes = cache.max_file_size;
        }
        let log = self.log(raw.log)?;
        let http_listen = http.as_ref().map_or(&[][..], |h| &h.listen[..]);
        let clusters = self.clusters(raw.cluster, remote.port, http_listen)?;
        let tls_relay = match raw.tls_relay {
            Some(t) => Some(self.tls_relay(t)?),
            None => None,
        };
        Ok(Config {
            tftp,
            http,
            admin,
            cache,
            remote,
            clusters,
            log,
            tls_relay,
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
        let max_resolving = self.int(
            "tftp.max_resolving",
            t.max_resolving,
            MAX_TRANSFERS_RANGE,
            d.max_resolving as i64,
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
        let (max_transfers_per_client, client_request_rate) =
            self.client_limits(t.max_transfers_per_client, t.client_request_rate)?;
        let fetch_wait = Duration::ZERO..=Duration::from_secs(60);
        let fetch_wait =
            self.duration("tftp.fetch_wait", t.fetch_wait, fetch_wait, d.fetch_wait)?;
        Ok(TftpConfig {
            fetch_wait,
            allow: self.allow_list("tftp.allow", t.allow)?,
            max_transfers_per_client,
            client_request_rate,
            listen,
            root,
            max_transfers,
            max_resolving,
            max_block_size,
            max_window_size,
            port_range,
            retransmit_timeout,
            max_retries,
            shutdown_grace,
            single_port: t.single_port.unwrap_or(d.single_port),
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
            allow: self.allow_list("http.allow", h.allow)?,
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
            via_id: match h.via_id {
                None => None,
                Some(id) if is_via_id(&id) => Some(id),
                Some(id) => {
                    return Err(self.err(
                        "http.via_id",
                        format!("must be 1 to 63 of A-Z a-z 0-9 . - _, got {}", quote(&id)),
                    ))
                }
            },
        })
    }

    fn cache(&self, c: raw::Cache) -> Res<CacheConfig> {
        // Ten (Julian) years: longer is "forever" in practice, and the cache
        // crate refuses lifetimes beyond 1,000 years.
        const MAX_CACHE_TTL: Duration = Duration::from_secs(10 * 31_557_600);
        let d = CacheConfig::default();
        Ok(CacheConfig {
            max_bytes: self.size("cache.max_bytes", c.max_bytes, false, d.max_bytes)?,
            max_file_size: self.size(
                "cache.max_file_size",
                c.max_file_size,
                true,
                d.max_file_size,
            )?,
            ttl: self.duration("cache.ttl", c.ttl, Duration::ZERO..=MAX_CACHE_TTL, d.ttl)?,
            negative_ttl: self.duration(
                "cache.negative_ttl",
                c.negative_ttl,
                Duration::ZERO..=MAX_CACHE_TTL,
                d.negative_ttl,
            )?,
            device_ttl: self.duration(
                "cache.device_ttl",
                c.device_ttl,
                Duration::ZERO..=MAX_CACHE_TTL,
                d.device_ttl,
            )?,
            max_homes: self.int(
                "cache.max_homes",
                c.max_homes,
                1..=100_000_000,
                d.max_homes as i64,
            )? as u64,
            max_locations: self.int(
                "cache.max_locations",
                c.max_locations,
                1..=100_000_000,
                d.max_locations as i64,
            )? as u64,
            dir: match c.dir {
                Some(dir) if dir.trim().is_empty() => {
                    return Err(self.err("cache.dir", "must be a directory path, got \"\""))
                }
                dir => dir.map(PathBuf::from),
            },
            disk_max_bytes: self.size(
                "cache.disk_max_bytes",
                c.disk_max_bytes,
                true,
                d.disk_max_bytes,
            )?,
            max_stale: self.duration(
                "cache.max_stale",
                c.max_stale,
                Duration::ZERO..=MAX_CACHE_TTL,
                d.max_stale,
            )?,
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
            max_queued: self.int(
                "remote.max_queued",
                r.max_queued,
                0..=1_000_000,
                d.max_queued as i64,
            )? as usize,
            min_body_rate: self.size(
                "remote.min_body_rate",
                r.min_body_rate,
                false,
                d.min_body_rate,
            )?,
            max_inflight_bytes: self.size(
                "remote.max_inflight_bytes",
                r.max_inflight_bytes,
                true,
                d.max_inflight_bytes,
            )?,
            ca_file: match r.ca_file {
                None => None,
                Some(f) => Some(self.ca_file(&f)?),
            },
            hold_down: self.duration(
                "remote.hold_down",
                r.hold_down,
                Duration::ZERO..=Duration::from_secs(3600),
                d.hold_down,
            )?,
            max_hops: self.int(
                "remote.max_hops",
                r.max_hops,
                MAX_HOPS_RANGE,
                d.max_hops as i64,
            )? as usize,
        })
    }

    /// `remote.ca_file`: a readable PEM bundle with at least one certificate.
    fn ca_file(&self, f: &str) -> Res<PathBuf> {
        const KEY: &str = "remote.ca_file";
        if f.trim().is_empty() {
            return Err(self.err(KEY, "must be the path of a PEM file, got \"\""));
        }
        let p = PathBuf::from(f);
        let pem = std::fs::read(&p).map_err(|e| {
            self.err(
                KEY,
                format!(
                    "file {} cannot be read: {e} (a relative path is relative to the \
                     current directory)",
                    quote(f)
                ),
            )
        })?;
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => Ok(p),
            Ok(_) => Err(self.err(
                KEY,
                format!(
                    "file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    quote(f)
                ),
            )),
            Err(_) => Err(self.err(
                KEY,
                format!(
                    "file {} holds a PEM certificate that cannot be decoded",
                    quote(f)
                ),
            )),
        }
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
}
