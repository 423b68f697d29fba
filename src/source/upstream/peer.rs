//! What a cluster address says about itself when it is another tftproxy:
//! its `Via` entry and `Server` name, and the `tftproxy-source` /
//! `tftproxy-partial` headers of its answer (see [`crate::via`]). The
//! resolver reads `partial` (a partial "not found" is not cached as
//! authoritative); `tftproxy locate` shows the rest.

use std::fmt;

use reqwest::header::{HeaderMap, SERVER, VIA};

use crate::via::{Chain, Hop, Partial, PARTIAL_HEADER, PSEUDONYM, SOURCE_HEADER};

/// An address that answered as a tftproxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its id, from the last tftproxy entry of the response's `Via`
    /// (`None`: an old version, or `Server` alone says tftproxy).
    pub id: Option<String>,
    /// Its `Server` header (`tftproxy/0.1.0`), if it sent one.
    pub server: Option<String>,
    /// Where its 200's bytes came from (`local`, `cache:X`, `cluster:X`).
    pub source: Option<String>,
    /// Why its answer may miss files, if it may.
    pub partial: Option<Partial>,
}

impl Peer {
    /// The peer behind a response's headers; `None` when nothing says
    /// tftproxy (a call-control cluster, another server).
    pub(super) fn of(headers: &HeaderMap) -> Option<Peer> {
        let text = |name: &str| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        };
        let chain = Chain::parse(headers.get_all(VIA).iter().map(|v| v.as_bytes()));
        let hop = chain.hops().filter(|h| !matches!(h, Hop::Other)).last();
        let server = text(SERVER.as_str()).filter(|s| {
            s.get(..PSEUDONYM.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(PSEUDONYM))
        });
        if hop.is_none() && server.is_none() {
            return None;
        }
        Some(Peer {
            id: match hop {
                Some(Hop::Tftproxy(id)) => Some(id.clone()),
                _ => None,
            },
            server,
            source: text(SOURCE_HEADER),
            partial: text(PARTIAL_HEADER).map(|v| Partial::parse(&v)),
        })
    }
}

impl fmt::Display for Peer {
    /// `tftproxy-regional (tftproxy/0.1.0): from cluster:cucm-c`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "{PSEUDONYM}-{id}")?,
            None => f.write_str("a tftproxy without an id")?,
        }
        if let Some(server) = &self.server {
            write!(f, " ({server})")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": from {source}")?;
        }
        if let Some(partial) = &self.partial {
            write!(f, ": answered from its files and caches only: {partial}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_tftproxy_is_recognised_by_via_or_server() {
        assert_eq!(Peer::of(&headers(&[("server", "nginx")])), None);
        assert_eq!(Peer::of(&headers(&[("via", "1.1 squid")])), None);
        let peer = Peer::of(&headers(&[
            ("server", "tftproxy/0.1.0"),
            ("via", "1.1 squid, 1.1 tftproxy-regional"),
            ("tftproxy-partial", "loop"),
        ]))
        .unwrap();
        assert_eq!(peer.id.as_deref(), Some("regional"));
        assert_eq!(peer.partial, Some(Partial::Loop));
        assert_eq!(
            peer.to_string(),
            "tftproxy-regional (tftproxy/0.1.0): answered from its files and caches only: \
             it found itself in the Via chain (a loop)"
        );
        let old = Peer::of(&headers(&[("via", "1.1 tftproxy")])).unwrap();
        assert_eq!(old.id, None);
        let served = Peer::of(&headers(&[
            ("server", "tftproxy/0.2.0"),
            ("tftproxy-source", "cluster:cucm-c"),
        ]))
        .unwrap();
        assert_eq!(
            served.to_string(),
            "a tftproxy without an id (tftproxy/0.2.0): from cluster:cucm-c"
        );
    }
}
