//! `[tls_relay]`: validation of the secure-config relay's section.

use std::time::Duration;

use super::raw;
use super::validate::{Ctx, Res};
use super::TlsRelayConfig;

impl Ctx<'_> {
    pub(super) fn tls_relay(&self, t: raw::TlsRelay) -> Res<TlsRelayConfig> {
        let d = TlsRelayConfig::default();
        let example = "\"0.0.0.0:6971\", \"0.0.0.0:6972\"";
        Ok(TlsRelayConfig {
            listen: self.listen_list("tls_relay.listen", t.listen, d.listen, example)?,
            upstream_port: match t.upstream_port {
                Some(_) => {
                    Some(self.int("tls_relay.upstream_port", t.upstream_port, 1..=65535, 0)? as u16)
                }
                None => None,
            },
            max_connections: self.int(
                "tls_relay.max_connections",
                t.max_connections,
                1..=1_000_000,
                d.max_connections as i64,
            )? as usize,
            idle_timeout: self.duration(
                "tls_relay.idle_timeout",
                t.idle_timeout,
                Duration::from_secs(1)..=Duration::from_secs(86_400),
                d.idle_timeout,
            )?,
        })
    }
}
