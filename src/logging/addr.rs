//! A socket address as a log line writes it, the same text as its
//! `Display`, without `core::fmt`'s per-octet padding machinery: two
//! addresses are in the line of every file served, and written by `std`
//! they were 3,000 instructions of it (callgrind, boot storm).

use std::fmt;
use std::net::SocketAddr;

/// `Display`s an address, or nothing for `None`.
pub(crate) struct LogAddr(pub(crate) Option<SocketAddr>);

impl From<SocketAddr> for LogAddr {
    fn from(addr: SocketAddr) -> LogAddr {
        LogAddr(Some(addr))
    }
}

impl fmt::Display for LogAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => Ok(()),
            Some(SocketAddr::V4(addr)) => {
                // Built on the stack and written once: each write to the
                // log line is a call through `dyn Write`.
                let mut text = [0u8; MAX_V4_TEXT];
                let mut len = 0;
                let mut push = |bytes: &[u8]| {
                    text[len..len + bytes.len()].copy_from_slice(bytes);
                    len += bytes.len();
                };
                let mut digits = itoa::Buffer::new();
                for (i, octet) in addr.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        push(b".");
                    }
                    push(digits.format(octet).as_bytes());
                }
                push(b":");
                push(digits.format(addr.port()).as_bytes());
                let text = std::str::from_utf8(&text[..len]).map_err(|_| fmt::Error)?;
                f.write_str(text)
            }
            // Rare on phone networks, and its zero-run compression is std's.
            Some(addr @ SocketAddr::V6(_)) => fmt::Display::fmt(&addr, f),
        }
    }
}

/// `255.255.255.255:65535`.
const MAX_V4_TEXT: usize = 21;

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn an_address_reads_as_std_writes_it(ip: u32, port: u16, v6: u128) {
            let v4 = SocketAddr::from((std::net::Ipv4Addr::from(ip), port));
            proptest::prop_assert_eq!(LogAddr::from(v4).to_string(), v4.to_string());
            let v6 = SocketAddr::from((std::net::Ipv6Addr::from(v6), port));
            proptest::prop_assert_eq!(LogAddr::from(v6).to_string(), v6.to_string());
        }
    }

    #[test]
    fn no_address_writes_nothing() {
        assert_eq!(LogAddr(None).to_string(), "");
    }
}
