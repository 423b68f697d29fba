//! HTTP `Range` on the 6970 front (RFC 9110 §14), for firmware downloads
//! that resume: one byte range per request. A request for several ranges,
//! or one the grammar does not allow, is answered with the whole file
//! (a server may ignore `Range`); a range that starts past the end is
//! `416`.

use std::ops::Range;

/// What a request's `Range` header asks of a body of `len` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Requested {
    /// No usable `Range`: the whole body, `200`.
    Whole,
    /// These bytes, `206` with `Content-Range`.
    Part(Range<u64>),
    /// Nothing of the body can be given: `416`.
    Unsatisfiable,
}

/// Reads one `Range` header value (`bytes=0-99`, `bytes=100-`, `bytes=-500`).
pub(crate) fn requested(header: Option<&str>, len: u64) -> Requested {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Requested::Whole;
    };
    if spec.contains(',') {
        return Requested::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Requested::Whole;
    };
    let number = |text: &str| -> Option<u64> {
        let text = text.trim();
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, None, Some(suffix)) => {
            if suffix == 0 || len == 0 {
                Requested::Unsatisfiable
            } else {
                Requested::Part(len.saturating_sub(suffix)..len)
            }
        }
        // bytes=A- and bytes=A-B.
        (false, Some(start), end) if last.trim().is_empty() || end.is_some() => {
            if end.is_some_and(|end| end < start) {
                return Requested::Whole; // invalid: ignored
            }
            if start >= len {
                return Requested::Unsatisfiable;
            }
            let end = end.map_or(len, |end| end.saturating_add(1).min(len));
            Requested::Part(start..end)
        }
        _ => Requested::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(requested(Some("bytes=0-99"), 1000), Requested::Part(0..100));
        assert_eq!(
            requested(Some("bytes=900-"), 1000),
            Requested::Part(900..1000)
        );
        assert_eq!(
            requested(Some("bytes=900-5000"), 1000),
            Requested::Part(900..1000)
        );
        assert_eq!(
            requested(Some("bytes=-100"), 1000),
            Requested::Part(900..1000)
        );
        assert_eq!(
            requested(Some("bytes=-5000"), 1000),
            Requested::Part(0..1000)
        );
        assert_eq!(requested(Some(" bytes=5-5 "), 1000), Requested::Part(5..6));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(
            requested(Some("bytes=1000-"), 1000),
            Requested::Unsatisfiable
        );
        assert_eq!(requested(Some("bytes=-0"), 1000), Requested::Unsatisfiable);
        assert_eq!(requested(Some("bytes=0-"), 0), Requested::Unsatisfiable);
    }

    #[test]
    fn what_cannot_be_read_is_ignored() {
        assert_eq!(requested(None, 10), Requested::Whole);
        assert_eq!(requested(Some("items=0-1"), 10), Requested::Whole);
        assert_eq!(requested(Some("bytes=0-1,5-6"), 10), Requested::Whole);
        assert_eq!(requested(Some("bytes=5-1"), 10), Requested::Whole);
        assert_eq!(requested(Some("bytes=a-b"), 10), Requested::Whole);
        assert_eq!(requested(Some("bytes=-"), 10), Requested::Whole);
        assert_eq!(requested(Some("bytes=+1-2"), 10), Requested::Whole);
        assert_eq!(
            requested(Some("bytes=99999999999999999999999-"), 10),
            Requested::Whole
        );
    }
}
