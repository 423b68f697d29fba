//! The URL a cluster is asked for a name at.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::FailReason;

/// Everything but RFC 3986 unreserved characters is escaped in a segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `{base_url}/{name}` with each of the name's `/`-separated segments
/// percent-encoded, so that spaces, `?`, `#`, `%`, `\` and non-ASCII reach
/// the server intact. Leading `/` of the name and trailing `/` of the base
/// are not doubled. `.` and `..` segments are refused: URL normalisation
/// would silently remove them (even percent-encoded), so the server would be
/// asked for another name.
pub fn build_url(base_url: &str, name: &str) -> Result<String, FailReason> {
    let base = base_url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(FailReason::InvalidUrl(format!(
            "base URL {base_url:?} is not http(s)"
        )));
    }
    let name = name.trim_start_matches('/');
    let mut url = String::with_capacity(base.len() + 1 + name.len() * 3);
    url.push_str(base);
    for segment in name.split('/') {
        if segment == "." || segment == ".." {
            return Err(FailReason::InvalidUrl(format!(
                "name {name:?} has a {segment:?} segment"
            )));
        }
        url.push('/');
        url.extend(utf8_percent_encode(segment, SEGMENT));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_plain_name() {
        assert_eq!(
            build_url("http://192.0.2.10:6970", "SEP001122334455.cnf.xml").unwrap(),
            "http://192.0.2.10:6970/SEP001122334455.cnf.xml"
        );
    }

    #[test]
    fn url_keeps_slashes_and_strips_leading_one() {
        assert_eq!(
            build_url("http://h:6970/", "/Desktops/320x212x12/List.xml").unwrap(),
            "http://h:6970/Desktops/320x212x12/List.xml"
        );
        assert_eq!(
            build_url("https://h:6972", "/mk-sip.jar").unwrap(),
            "https://h:6972/mk-sip.jar"
        );
    }

    #[test]
    fn url_encodes_odd_characters() {
        assert_eq!(
            build_url("http://h", "a b?c#d%e+f&g;h").unwrap(),
            "http://h/a%20b%3Fc%23d%25e%2Bf%26g%3Bh"
        );
        assert_eq!(
            build_url("http://h", "dir\\file").unwrap(),
            "http://h/dir%5Cfile"
        );
        assert_eq!(
            build_url("http://h", "é.xml").unwrap(),
            "http://h/%C3%A9.xml"
        );
        assert_eq!(
            build_url("http://h", "a-b_c~d.e").unwrap(),
            "http://h/a-b_c~d.e"
        );
    }

    #[test]
    fn url_refuses_dot_segments_and_bad_base() {
        assert!(matches!(
            build_url("http://h", "../etc/passwd"),
            Err(FailReason::InvalidUrl(_))
        ));
        assert!(matches!(
            build_url("http://h", "a/./b"),
            Err(FailReason::InvalidUrl(_))
        ));
        assert!(matches!(
            build_url("ftp://h", "a"),
            Err(FailReason::InvalidUrl(_))
        ));
        // Dots inside a segment are fine.
        assert!(build_url("http://h", "...x/..y").is_ok());
    }

    #[test]
    fn url_is_accepted_by_reqwest_unchanged() {
        let url = build_url("http://127.0.0.1:6970", "a b/c%d/é").unwrap();
        let parsed = reqwest::Url::parse(&url).unwrap();
        assert_eq!(parsed.as_str(), url);
    }
}
