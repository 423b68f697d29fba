//! The chain of proxies a request travelled, in HTTP `Via` (RFC 9110
//! §7.6.3), and the two rules that keep chained tftproxies from looping:
//! a request whose chain already names this instance is a loop, and a chain
//! that would grow beyond `remote.max_hops` tftproxies stops. Either way the
//! request is answered from local files and caches only.
//!
//! Each instance is one `Via` entry, `1.1 tftproxy-<id>`. RFC 9110's
//! `received-by` is a host or a `pseudonym`, and a pseudonym is a `token`:
//! `/` is not a token character, so `tftproxy/<id>` would not be valid;
//! `tftproxy-<id>` is, and it keeps every instance distinct in the very
//! field the RFC's loop detection compares. tftproxy versions from before
//! instance ids sent `1.1 tftproxy`: such an entry is one tftproxy hop of
//! unknown identity.
//!
//! Only tftproxy entries count towards `max_hops`: a caching proxy or a load
//! balancer between two instances does not fan a request out.
//!
//! A leaf module: the upstream client (which sends the chain), the HTTP
//! front (which reads it and names itself in responses) and the resolver
//! (which applies the rules) depend on it, not on each other.

use std::fmt;
use std::sync::Arc;

/// `received-by` of tftproxy versions from before instance ids, and the
/// prefix of every later one (`tftproxy-<id>`).
pub const PSEUDONYM: &str = "tftproxy";

/// Longest instance id (a DNS label's length).
pub const MAX_ID_LEN: usize = 63;

/// Response header of the HTTP front: where a 200's bytes came from
/// (`local`, `cache:<cluster>`, `cluster:<cluster>`).
pub const SOURCE_HEADER: &str = "tftproxy-source";

/// Response header of the HTTP front: the answer may miss files because the
/// request could not be forwarded everywhere ([`Partial`]).
pub const PARTIAL_HEADER: &str = "tftproxy-partial";

/// True when `id` can name an instance: 1 to 63 of `A-Z a-z 0-9 . - _`
/// (host-name characters, all of them token characters).
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// This instance's name in `Via` entries: `tftproxy-<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViaId {
    id: Arc<str>,
}

impl ViaId {
    /// The identity for a configured id (`http.via_id`); `None` when it is
    /// not a valid id ([`is_valid_id`]).
    pub fn new(id: &str) -> Option<ViaId> {
        is_valid_id(id).then(|| ViaId { id: Arc::from(id) })
    }

    /// `http.via_id` if configured, else the host name.
    pub fn configured_or_host(id: Option<&str>) -> ViaId {
        id.and_then(ViaId::new)
            .unwrap_or_else(ViaId::from_host_name)
    }

    /// The default identity: the host name (`uname -n`), characters outside
    /// [`is_valid_id`]'s set replaced by `-`, cut at 63 characters;
    /// `localhost` if the name is empty.
    pub fn from_host_name() -> ViaId {
        let name = rustix::system::uname();
        let raw = name.nodename().to_string_lossy();
        let id: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '-'
                }
            })
            .take(MAX_ID_LEN)
            .collect();
        ViaId::new(&id).unwrap_or_else(|| ViaId {
            id: Arc::from("localhost"),
        })
    }

    /// The id alone (`site-1`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `received-by` of our entry (`tftproxy-site-1`).
    pub fn pseudonym(&self) -> String {
        format!("{PSEUDONYM}-{}", self.id)
    }

    /// True when a hop is this instance (ids compare without regard to case,
    /// as host names do).
    fn is(&self, hop: &Hop) -> bool {
        matches!(hop, Hop::Tftproxy(id) if id.eq_ignore_ascii_case(&self.id))
    }
}

impl fmt::Display for ViaId {
    /// Our `Via` entry: `1.1 tftproxy-<id>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.1 {PSEUDONYM}-{}", self.id)
    }
}

/// Who one `Via` entry names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hop {
    /// `tftproxy-<id>`: a tftproxy instance, with its id.
    Tftproxy(String),
    /// `tftproxy`: a tftproxy from before instance ids.
    OldTftproxy,
    /// Any other proxy (or an entry that does not parse).
    Other,
}

impl Hop {
    /// The hop named by one list member (`received-protocol received-by
    /// [comment]`); a port after `received-by` is ignored.
    fn of(member: &str) -> Hop {
        let mut words = member.split(|c: char| c.is_ascii_whitespace() || c == '(');
        let _protocol = words.next();
        let Some(by) = words.find(|w| !w.is_empty()) else {
            return Hop::Other;
        };
        let by = by.split(':').next().unwrap_or(by);
        if by.eq_ignore_ascii_case(PSEUDONYM) {
            return Hop::OldTftproxy;
        }
        match by.get(..PSEUDONYM.len() + 1) {
            Some(prefix) if prefix.eq_ignore_ascii_case("tftproxy-") => {
                let id = &by[PSEUDONYM.len() + 1..];
                if is_valid_id(id) {
                    Hop::Tftproxy(id.to_owned())
                } else {
                    Hop::Other
                }
            }
            _ => Hop::Other,
        }
    }

    fn is_tftproxy(&self) -> bool {
        !matches!(self, Hop::Other)
    }
}

/// The `Via` chain a request arrived with: every entry of every `Via`
/// header, in order. Empty for a phone (and for every TFTP request).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// Each entry as received (trimmed), with who it names.
    entries: Vec<(String, Hop)>,
}

/// Why a request is answered from local files and caches only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The chain already names this instance.
    Loop,
    /// Forwarding would make the chain longer than `remote.max_hops`.
    MaxHops,
}

impl Chain {
    /// The chain of a request's `Via` header values, in order. Values are
    /// bytes: comments may carry non-ASCII (RFC 9110 obs-text), and such a
    /// header still names its hops. Commas inside comments do not separate
    /// entries; control characters are dropped.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Chain {
        let mut entries = Vec::new();
        for value in values {
            let text: String = String::from_utf8_lossy(value)
                .chars()
                .filter(|c| !c.is_control() || *c == '\t')
                .collect();
            for member in split_members(&text) {
                let member = member.trim();
                if !member.is_empty() {
                    entries.push((member.to_owned(), Hop::of(member)));
                }
            }
        }
        Chain { entries }
    }

    /// True for a request that came through no proxy.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Who each entry names, in order.
    pub fn hops(&self) -> impl Iterator<Item = &Hop> {
        self.entries.iter().map(|(_, hop)| hop)
    }

    /// tftproxy entries (with or without an id): the hops `max_hops` counts.
    pub fn tftproxy_hops(&self) -> usize {
        self.hops().filter(|h| h.is_tftproxy()).count()
    }

    /// The tftproxy entries' pseudonyms, lower-cased, in order: everything
    /// of the chain that changes what the next hops do with a request
    /// (which instances it loops at, how far it may go).
    pub fn tftproxy_key(&self) -> Vec<String> {
        self.hops()
            .filter_map(|hop| match hop {
                Hop::Tftproxy(id) => Some(format!("{PSEUDONYM}-{}", id.to_ascii_lowercase())),
                Hop::OldTftproxy => Some(PSEUDONYM.to_owned()),
                Hop::Other => None,
            })
            .collect()
    }

    /// Whether `us` may forward this request: not when the chain names us
    /// already (a loop), nor when our entry would make it longer than
    /// `max_hops` tftproxies.
    pub fn stop(&self, us: &ViaId, max_hops: usize) -> Option<Stop> {
        if self.hops().any(|hop| us.is(hop)) {
            Some(Stop::Loop)
        } else if self.tftproxy_hops() >= max_hops {
            Some(Stop::MaxHops)
        } else {
            None
        }
    }

    /// The `Via` value an upstream request by `us` carries: this chain, then
    /// our entry.
    pub fn forward(&self, us: &ViaId) -> String {
        let mut out = self.to_string();
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&us.to_string());
        out
    }
}

impl fmt::Display for Chain {
    /// The entries as one `Via` value (empty for no entry).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (text, _)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(text)?;
        }
        Ok(())
    }
}

/// The list members of one `Via` value: split at commas outside comments
/// (comments nest, and `\` quotes the next character).
fn split_members(value: &str) -> Vec<&str> {
    let mut members = Vec::new();
    let (mut depth, mut escaped, mut start) = (0usize, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if depth > 0 => escaped = true,
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                members.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    members.push(&value[start..]);
    members
}

/// Why an answer of the HTTP front may miss files: the request, or a
/// request it depended on, was answered from local files and caches only.
/// A hop whose own chain is empty absorbs it (nothing it could ask was left
/// out); any other hop passes it on and does not cache the "not found".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partial {
    /// This instance found itself in the chain.
    Loop,
    /// The chain was at `remote.max_hops`.
    MaxHops,
    /// A hop further on answered partially.
    Upstream,
}

impl Partial {
    /// The [`PARTIAL_HEADER`] value.
    pub fn as_str(self) -> &'static str {
        match self {
            Partial::Loop => "loop",
            Partial::MaxHops => "max-hops",
            Partial::Upstream => "upstream",
        }
    }

    /// A [`PARTIAL_HEADER`] value; an unknown one is `Upstream` (partial all
    /// the same).
    pub fn parse(value: &str) -> Partial {
        match value.trim() {
            "loop" => Partial::Loop,
            "max-hops" => Partial::MaxHops,
            _ => Partial::Upstream,
        }
    }
}

impl From<Stop> for Partial {
    fn from(stop: Stop) -> Partial {
        match stop {
            Stop::Loop => Partial::Loop,
            Stop::MaxHops => Partial::MaxHops,
        }
    }
}

impl fmt::Display for Partial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Partial::Loop => "it found itself in the Via chain (a loop)",
            Partial::MaxHops => "the Via chain was at its remote.max_hops",
            Partial::Upstream => "a hop further on answered from its files and caches only",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(values: &[&str]) -> Chain {
        Chain::parse(values.iter().map(|v| v.as_bytes()))
    }

    fn id(id: &str) -> ViaId {
        ViaId::new(id).unwrap()
    }

    #[test]
    fn our_entry_is_a_valid_pseudonym() {
        let us = id("Site-1.example");
        assert_eq!(us.to_string(), "1.1 tftproxy-Site-1.example");
        assert_eq!(
            chain(&[&us.to_string()]).hops().collect::<Vec<_>>(),
            [&Hop::Tftproxy("Site-1.example".into())]
        );
        assert!(ViaId::new("").is_none());
        assert!(ViaId::new("a/b").is_none());
        assert!(ViaId::new("a b").is_none());
        assert!(ViaId::new(&"x".repeat(64)).is_none());
        assert!(is_valid_id(ViaId::from_host_name().id()));
    }

    #[test]
    fn entries_of_several_headers_in_order() {
        let c = chain(&[
            "1.0 fred, 1.1 tftproxy-a",
            "HTTP/1.1 squid:3128 (squid/5.7)",
        ]);
        assert_eq!(
            c.hops().collect::<Vec<_>>(),
            [&Hop::Other, &Hop::Tftproxy("a".into()), &Hop::Other]
        );
        assert_eq!(c.tftproxy_hops(), 1);
        assert_eq!(
            c.to_string(),
            "1.0 fred, 1.1 tftproxy-a, HTTP/1.1 squid:3128 (squid/5.7)"
        );
    }

    #[test]
    fn commas_and_names_inside_comments_are_not_entries() {
        let c = chain(&["1.1 proxy (tftproxy-b, 1.1 tftproxy-c), 1.1 tftproxy-d (x \\) , y)"]);
        assert_eq!(
            c.hops().collect::<Vec<_>>(),
            [&Hop::Other, &Hop::Tftproxy("d".into())]
        );
        assert_eq!(chain(&["1.1 example.com (tftproxy)"]).tftproxy_hops(), 0);
    }

    #[test]
    fn our_id_in_the_middle_of_a_list_is_a_loop() {
        let us = id("b");
        let c = chain(&["1.1 tftproxy-a, 1.1 TFTPROXY-B:6970 (tftproxy/0.1.0), 1.1 squid"]);
        assert_eq!(c.stop(&us, 10), Some(Stop::Loop));
        assert_eq!(c.stop(&id("c"), 10), None);
        assert_eq!(chain(&["1.1 tftproxy-bb"]).stop(&us, 10), None);
    }

    #[test]
    fn an_old_style_entry_is_one_foreign_hop() {
        let us = id("a");
        for old in ["1.1 tftproxy", "HTTP/1.1 TFTProxy", "  1.1   tftproxy  "] {
            let c = chain(&[old]);
            assert_eq!(c.hops().collect::<Vec<_>>(), [&Hop::OldTftproxy], "{old}");
            assert_eq!(c.stop(&us, 3), None, "{old}");
            assert_eq!(c.stop(&us, 1), Some(Stop::MaxHops), "{old}");
        }
        assert_eq!(chain(&["1.1 tftproxy (caf\u{e9})"]).tftproxy_hops(), 1);
        assert_eq!(
            Chain::parse([b"1.1 tftproxy (caf\xe9)".as_slice()]).tftproxy_hops(),
            1
        );
        for other in [
            "tftproxy",
            "1.1 tftproxy2",
            "1.1 tftproxy-",
            "1.1 tftproxy-a/b",
            "",
        ] {
            assert_eq!(chain(&[other]).tftproxy_hops(), 0, "{other}");
        }
    }

    #[test]
    fn max_hops_counts_tftproxy_entries_only() {
        let us = id("d");
        let c = chain(&["1.1 tftproxy-a, 1.1 squid, 1.1 tftproxy, 1.0 nginx"]);
        assert_eq!(c.tftproxy_hops(), 2);
        assert_eq!(c.stop(&us, 3), None);
        assert_eq!(c.stop(&us, 2), Some(Stop::MaxHops));
        assert_eq!(Chain::default().stop(&us, 1), None);
        assert_eq!(c.tftproxy_key(), ["tftproxy-a", "tftproxy"]);
        assert_eq!(chain(&["1.1 TFTPROXY-A"]).tftproxy_key(), ["tftproxy-a"]);
    }

    #[test]
    fn forwarding_appends_our_entry() {
        let us = id("b");
        assert_eq!(Chain::default().forward(&us), "1.1 tftproxy-b");
        assert_eq!(
            chain(&["1.0 fred", ",, 1.1 tftproxy-a (x, y)"]).forward(&us),
            "1.0 fred, 1.1 tftproxy-a (x, y), 1.1 tftproxy-b"
        );
        assert_eq!(chain(&["1.1 a\u{7}b"]).to_string(), "1.1 ab");
    }

    #[test]
    fn partial_values_round_trip() {
        for p in [Partial::Loop, Partial::MaxHops, Partial::Upstream] {
            assert_eq!(Partial::parse(p.as_str()), p);
        }
        assert_eq!(Partial::parse("something-new"), Partial::Upstream);
    }
}
