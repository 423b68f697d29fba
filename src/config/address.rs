//! Cluster addresses: the written forms (`host`, `host:port`, `[v6]:port`,
//! `http(s)://host[:port]`) normalised to base URLs, and the check that an
//! address does not point back at our own HTTP front.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::render::quote;
use super::DEFAULT_HTTPS_PORT;

/// The host part of a cluster address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Host {
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

pub(super) fn parse_address(
    written: &str,
    default_port: u16,
) -> Result<(String, Host, u16), String> {
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
pub(super) fn is_own_address(host: &Host, port: u16, listen: &SocketAddr) -> bool {
    if listen.port() != port {
        return false;
    }
    // `[::ffff:127.0.0.1]` is 127.0.0.1.
    let ours = listen.ip().to_canonical();
    match host {
        Host::Ip(ip) => {
            let ip = ip.to_canonical();
            ip == ours || (ours.is_unspecified() && ip.is_loopback())
        }
        Host::Name(name) => name == "localhost" && (ours.is_unspecified() || ours.is_loopback()),
    }
}
