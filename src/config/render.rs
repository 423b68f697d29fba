//! [`Config::render`]: the effective configuration written back as TOML,
//! and the TOML quoting used both there and in error messages.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::{format_duration, format_size, Config, LogFormat, OnUnreachable, Strategy};

impl Config {
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
        let _ = writeln!(o, "max_resolving = {}", t.max_resolving);
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
        let _ = writeln!(o, "single_port = {}", t.single_port);
        let _ = writeln!(o, "allow = {}", net_list(&t.allow));
        let _ = writeln!(
            o,
            "max_transfers_per_client = {}",
            t.max_transfers_per_client
        );
        let _ = writeln!(o, "client_request_rate = {}", t.client_request_rate);
        let _ = writeln!(o, "fetch_wait = {}", quote(&format_duration(t.fetch_wait)));
        let _ = writeln!(o);
        match &self.http {
            Some(h) => {
                let _ = writeln!(o, "[http]");
                let _ = writeln!(o, "listen = {}", addr_list(&h.listen));
                let _ = writeln!(o, "fetch_wait = {}", quote(&format_duration(h.fetch_wait)));
                let _ = writeln!(o, "max_connections = {}", h.max_connections);
                match &h.via_id {
                    Some(id) => {
                        let _ = writeln!(o, "via_id = {}", quote(id));
                    }
                    None => {
                        let _ = writeln!(o, "# via_id: not set (this host's name)");
                    }
                }
                let _ = writeln!(o, "allow = {}", net_list(&h.allow));
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
                match &a.token_file {
                    Some(path) => {
                        let _ = writeln!(o, "token_file = {}", quote(&path.display().to_string()));
                    }
                    None => {
                        let _ = writeln!(o, "# token_file: not set (loopback only, Host checked)");
                    }
                }
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
        let _ = writeln!(o, "max_locations = {}", c.max_locations);
        if let Some(dir) = &c.dir {
            let _ = writeln!(o, "dir = {}", quote(&dir.display().to_string()));
        }
        let _ = writeln!(
            o,
            "disk_max_bytes = {}",
            quote(&format_size(c.disk_max_bytes))
        );
        let _ = writeln!(o, "max_stale = {}", quote(&format_duration(c.max_stale)));
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
        let _ = writeln!(o, "max_queued = {}", r.max_queued);
        let _ = writeln!(
            o,
            "min_body_rate = {}",
            quote(&format_size(r.min_body_rate))
        );
        let _ = writeln!(
            o,
            "max_inflight_bytes = {}",
            quote(&format_size(r.max_inflight_bytes))
        );
        let _ = writeln!(o, "hold_down = {}", quote(&format_duration(r.hold_down)));
        let _ = writeln!(o, "max_hops = {}", r.max_hops);
        match &r.ca_file {
            Some(ca_file) => {
                let _ = writeln!(o, "ca_file = {}", quote(&ca_file.to_string_lossy()));
            }
            None => {
                let _ = writeln!(o, "# ca_file: not set (https:// clusters: public CAs only)");
            }
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "[log]");
        let _ = writeln!(o, "level = {}", quote(&self.log.level));
        let format = match self.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        let _ = writeln!(o, "format = \"{format}\"");
        let _ = writeln!(o);
        match &self.tls_relay {
            Some(t) => {
                let _ = writeln!(o, "[tls_relay]");
                let _ = writeln!(o, "listen = {}", addr_list(&t.listen));
                match t.upstream_port {
                    Some(port) => {
                        let _ = writeln!(o, "upstream_port = {port}");
                    }
                    None => {
                        let _ = writeln!(
                            o,
                            "# upstream_port: not set (the port a connection arrived on)"
                        );
                    }
                }
                let _ = writeln!(o, "max_connections = {}", t.max_connections);
                let _ = writeln!(
                    o,
                    "idle_timeout = {}",
                    quote(&format_duration(t.idle_timeout))
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "# [tls_relay]: not configured (phones' HTTPS 6971/6972 is not relayed)"
                );
            }
        }
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

/// A TOML basic string.
pub(super) fn quote(s: &str) -> String {
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

/// `["10.0.0.0/8", "2001:db8::/32"]`; `[]` is everyone.
fn net_list(list: &super::AllowList) -> String {
    let items: Vec<String> = list
        .prefixes()
        .iter()
        .map(|net| quote(&net.to_string()))
        .collect();
    format!("[{}]", items.join(", "))
}

fn addr_list(addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| quote(&a.to_string())).collect();
    format!("[{}]", list.join(", "))
}
