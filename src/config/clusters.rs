//! `[[cluster]]`: validation of the clusters — ids, addresses (normalised to
//! base URLs), and the rules across them (unique ids, no address twice
//! among enabled clusters, never our own HTTP front).

use std::net::SocketAddr;

use super::address::{is_own_address, parse_address};
use super::raw;
use super::render::quote;
use super::validate::{Ctx, Res};
use super::ClusterConfig;

impl Ctx<'_> {
    pub(super) fn clusters(
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
