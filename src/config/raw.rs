//! The "raw" serde structs the text is first deserialized into: every field
//! optional, unknown keys refused. Validation turns them into the public
//! types.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Config {
    pub tftp: Tftp,
    pub http: Option<Http>,
    pub admin: Option<Admin>,
    pub cache: Cache,
    pub remote: Remote,
    pub cluster: Vec<Cluster>,
    pub log: Log,
    pub tls_relay: Option<TlsRelay>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct TlsRelay {
    pub listen: Option<OneOrMany>,
    pub upstream_port: Option<i64>,
    pub max_connections: Option<i64>,
    pub idle_timeout: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Tftp {
    pub listen: Option<OneOrMany>,
    pub root: Option<String>,
    pub max_transfers: Option<i64>,
    pub max_resolving: Option<i64>,
    pub max_block_size: Option<i64>,
    pub max_window_size: Option<i64>,
    pub port_range: Option<String>,
    pub retransmit_timeout: Option<Dur>,
    pub max_retries: Option<i64>,
    pub shutdown_grace: Option<Dur>,
    pub single_port: Option<bool>,
    pub allow: Option<Vec<String>>,
    pub max_transfers_per_client: Option<i64>,
    pub client_request_rate: Option<i64>,
    pub fetch_wait: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Http {
    pub listen: Option<OneOrMany>,
    pub fetch_wait: Option<Dur>,
    pub max_connections: Option<i64>,
    pub via_id: Option<String>,
    pub allow: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Admin {
    pub listen: Option<String>,
    pub token_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Cache {
    pub max_bytes: Option<Size>,
    pub max_file_size: Option<Size>,
    pub ttl: Option<Dur>,
    pub negative_ttl: Option<Dur>,
    pub device_ttl: Option<Dur>,
    pub max_homes: Option<i64>,
    pub max_locations: Option<i64>,
    pub dir: Option<String>,
    pub disk_max_bytes: Option<Size>,
    pub max_stale: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Remote {
    pub port: Option<i64>,
    pub connect_timeout: Option<Dur>,
    pub request_timeout: Option<Dur>,
    pub strategy: Option<String>,
    pub on_unreachable: Option<String>,
    pub prefer_home_cluster: Option<bool>,
    pub max_requests_per_address: Option<i64>,
    pub max_queued: Option<i64>,
    pub min_body_rate: Option<Size>,
    pub max_inflight_bytes: Option<Size>,
    pub ca_file: Option<String>,
    pub hold_down: Option<Dur>,
    pub max_hops: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Cluster {
    pub id: Option<String>,
    pub description: Option<String>,
    pub fqdn: Option<String>,
    pub enabled: Option<bool>,
    pub addresses: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct Log {
    pub level: Option<String>,
    pub format: Option<String>,
}

/// A duration as written (a string); parsed during validation.
pub(super) struct Dur(pub String);

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
pub(super) enum Size {
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
pub(super) struct OneOrMany(pub Vec<String>);

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
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
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
