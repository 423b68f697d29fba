//! Who may use the daemon, and how much: the `[admin]` section (its token
//! file, and the rule that an admin API off loopback needs one), the client
//! allow-lists (`tftp.allow`, `http.allow`) and the per-client TFTP limits.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net};

use super::render::quote;
use super::validate::{Ctx, Res};
use super::{raw, AdminConfig, MAX_TRANSFERS_RANGE};

/// The clients a front answers: CIDR prefixes, IPv4 and IPv6 (an IPv4
/// client seen as IPv4-mapped IPv6 on a dual-stack socket is matched as
/// IPv4). Empty: everyone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList(Vec<IpNet>);

impl AllowList {
    /// A list of these prefixes (IPv4-mapped IPv6 prefixes taken as IPv4).
    pub fn new(prefixes: impl IntoIterator<Item = IpNet>) -> AllowList {
        AllowList(prefixes.into_iter().map(canonical_net).collect())
    }

    /// Whether `client` may be answered.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        self.0.is_empty() || self.0.iter().any(|net| net.contains(&client))
    }

    /// The prefixes, as configured (empty: everyone).
    pub fn prefixes(&self) -> &[IpNet] {
        &self.0
    }
}

/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        net => net,
    }
}

/// Per-client TFTP limits: (`max_transfers_per_client`, `client_request_rate`).
pub(super) type ClientLimits = (usize, u32);

impl Ctx<'_> {
    pub(super) fn admin(&self, a: raw::Admin) -> Res<AdminConfig> {
        let listen = match a.listen {
            Some(s) => self.socket_addr("admin.listen", &s, "\"127.0.0.1:9669\"")?,
            None => AdminConfig::default().listen,
        };
        let token_file = match a.token_file {
            None => None,
            Some(f) => Some(self.token_file(&f)?),
        };
        if token_file.is_none() && !is_loopback(listen) {
            return Err(self.err(
                "admin.listen",
                format!(
                    "{listen} is not a loopback address: set admin.token_file as well, or \
                     anyone who reaches it can purge the cache"
                ),
            ));
        }
        Ok(AdminConfig { listen, token_file })
    }

    /// `admin.token_file`: a readable file holding one token.
    fn token_file(&self, f: &str) -> Res<PathBuf> {
        const KEY: &str = "admin.token_file";
        if f.trim().is_empty() {
            return Err(self.err(KEY, "must be the path of a file holding a token, got \"\""));
        }
        let path = PathBuf::from(f);
        read_token(&path).map_err(|e| {
            self.err(
                KEY,
                format!(
                    "file {} {e} (a relative path is relative to the current directory)",
                    quote(f)
                ),
            )
        })?;
        Ok(path)
    }
}

impl Ctx<'_> {
    /// A list of CIDR prefixes (`"10.0.0.0/8"`, `"2001:db8::/32"`; a bare
    /// address is one host). Host bits set are refused: `10.0.0.1/8` is a
    /// typo for a host or a network, and the file should say which.
    pub(super) fn allow_list(&self, key: &str, v: Option<Vec<String>>) -> Res<AllowList> {
        let mut prefixes = Vec::new();
        for (i, s) in v.unwrap_or_default().iter().enumerate() {
            let k = format!("{key}[{}]", i + 1);
            let t = s.trim();
            let net = match (t.parse::<IpNet>(), t.parse::<IpAddr>()) {
                (Ok(net), _) => net,
                (_, Ok(addr)) => IpNet::from(addr),
                _ => {
                    return Err(self.err(
                        &k,
                        format!(
                            "must be an address or a CIDR prefix like \"10.0.0.0/8\" or \
                             \"2001:db8::/32\", got {}",
                            quote(s)
                        ),
                    ))
                }
            };
            if net.trunc() != net {
                return Err(self.err(
                    &k,
                    format!(
                        "{net} has host bits set: write the network {} or the host {}",
                        net.trunc(),
                        net.addr()
                    ),
                ));
            }
            prefixes.push(net);
        }
        Ok(AllowList::new(prefixes))
    }

    /// `tftp.max_transfers_per_client` and `tftp.client_request_rate`.
    pub(super) fn client_limits(
        &self,
        per_client: Option<i64>,
        rate: Option<i64>,
    ) -> Res<ClientLimits> {
        let per_client = self.int(
            "tftp.max_transfers_per_client",
            per_client,
            MAX_TRANSFERS_RANGE,
            DEFAULT_TRANSFERS_PER_CLIENT as i64,
        )? as usize;
        let rate = self.int(
            "tftp.client_request_rate",
            rate,
            1..=1_000_000,
            DEFAULT_CLIENT_REQUEST_RATE.into(),
        )? as u32;
        Ok((per_client, rate))
    }
}

/// Default `tftp.max_transfers_per_client`.
pub(super) const DEFAULT_TRANSFERS_PER_CLIENT: usize = 16;
/// Default `tftp.client_request_rate` (new requests per second, and burst).
pub(super) const DEFAULT_CLIENT_REQUEST_RATE: u32 = 50;

/// Loopback, IPv4-mapped loopback included.
fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// The admin token in `path`: the file's text without surrounding white
/// space (a trailing newline), at least 16 visible ASCII characters without
/// spaces, so that it fits an `Authorization: Bearer` header as written.
/// The error completes "file X …".
pub fn read_token(path: &std::path::Path) -> Result<String, String> {
    const MIN_LEN: usize = 16;
    const MAX_LEN: usize = 4096;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() || meta.len() > MAX_LEN as u64 {
        return Err(format!("must be a regular file of at most {MAX_LEN} bytes"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot be read: {e}"))?;
    let token = text.trim();
    if token.len() < MIN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "must hold one token of at least {MIN_LEN} visible ASCII characters \
             (no spaces), like the output of `openssl rand -hex 32`"
        ));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_match_v4_v6_and_mapped_clients() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let list = AllowList::new(
            ["10.1.0.0/16", "2001:db8::/32", "::ffff:192.0.2.0/120"]
                .map(|s| s.parse::<IpNet>().unwrap()),
        );
        assert!(list.allows(ip("10.1.2.3")));
        assert!(list.allows(ip("::ffff:10.1.2.3")), "mapped client");
        assert!(!list.allows(ip("10.2.0.1")));
        assert!(list.allows(ip("2001:db8::7")));
        assert!(!list.allows(ip("2001:db9::7")));
        assert!(list.allows(ip("192.0.2.9")), "mapped prefix");
        assert!(!list.allows(ip("192.0.3.9")));
        assert!(AllowList::default().allows(ip("203.0.113.1")));
    }
}
