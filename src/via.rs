//! The loop guard between proxies: the HTTP `Via` token that every upstream
//! request carries, and its detection on requests that reach the HTTP
//! front. A request carrying it comes from another tftproxy and is answered
//! from local files and caches only, never forwarded, so two proxies
//! configured as each other's cluster cannot loop.
//!
//! A leaf module: the upstream client (which adds the token) and the HTTP
//! front (which looks for it) both depend on it, not on each other.

/// Our token in the HTTP `Via` header, sent on every upstream request.
pub const VIA: &str = "1.1 tftproxy";

/// The pseudonym part of [`VIA`] (`received-by` in RFC 9110 terms).
const VIA_PSEUDONYM: &str = "tftproxy";

/// True when a `Via` header value (possibly a comma-separated list of hops,
/// possibly with comments) contains a hop added by a tftproxy.
///
/// Each hop is `received-protocol received-by [comment]`; the hop is ours
/// when `received-by` is `tftproxy` (any case). `received-protocol` may be
/// `1.1` or `HTTP/1.1`.
pub fn is_from_proxy(via_value: &str) -> bool {
    via_value.split(',').any(|hop| {
        let mut words = hop.split_ascii_whitespace();
        let _protocol = words.next();
        words
            .next()
            .is_some_and(|by| by.eq_ignore_ascii_case(VIA_PSEUDONYM))
    })
}

/// True when any of a request's `Via` header values names a tftproxy hop.
/// Values are bytes: comments may carry non-ASCII (RFC 9110 obs-text), and
/// such a header still names its hops.
pub(crate) fn any_from_proxy<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> bool {
    values
        .into_iter()
        .any(|value| is_from_proxy(&String::from_utf8_lossy(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_detection() {
        assert!(is_from_proxy(VIA));
        assert!(is_from_proxy("1.1 tftproxy"));
        assert!(is_from_proxy("HTTP/1.1 TFTProxy"));
        assert!(is_from_proxy("1.0 fred, 1.1 tftproxy"));
        assert!(is_from_proxy("1.1 tftproxy (tftproxy/0.1.0), 1.1 squid"));
        assert!(is_from_proxy("  1.1   tftproxy  "));
        assert!(!is_from_proxy(""));
        assert!(!is_from_proxy("1.1 squid"));
        assert!(!is_from_proxy("1.1 example.com (tftproxy)"));
        assert!(!is_from_proxy("tftproxy"));
        assert!(!is_from_proxy("1.1 tftproxy2"));
    }

    #[test]
    fn every_header_value_is_read() {
        assert!(!any_from_proxy([b"1.1 squid".as_slice()]));
        assert!(any_from_proxy([b"1.1 squid".as_slice(), b"1.1 tftproxy"]));
        assert!(any_from_proxy([b"1.1 tftproxy (\xff)".as_slice()]));
    }
}
