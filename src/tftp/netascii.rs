//! Netascii (RFC 764 as used by RFC 1350): line ends travel as CR LF and a
//! bare CR as CR NUL. These convert whole buffers (the client's download,
//! and the reference the server's block-by-block view, `body::Netascii`,
//! is tested against).

/// Local text (LF line ends) to netascii.
pub fn encode(local: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(local.len() + local.len() / 16);
    for &byte in local {
        match byte {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            other => out.push(other),
        }
    }
    out
}

/// Netascii to local text: CR LF becomes LF, CR NUL becomes CR.
pub fn decode(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut bytes = wire.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte == b'\r' {
            match bytes.peek() {
                Some(b'\n') => {
                    bytes.next();
                    out.push(b'\n');
                }
                Some(0) => {
                    bytes.next();
                    out.push(b'\r');
                }
                _ => out.push(b'\r'),
            }
        } else {
            out.push(byte);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_and_bare_carriage_returns_convert_both_ways() {
        let local = b"a\nb\rc\r\n".to_vec();
        let wire = encode(&local);
        assert_eq!(wire, b"a\r\nb\r\0c\r\0\r\n");
        assert_eq!(decode(&wire), local);
    }

    proptest::proptest! {
        #[test]
        fn decode_inverts_encode(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            proptest::prop_assert_eq!(decode(&encode(&bytes)), bytes);
        }
    }
}
