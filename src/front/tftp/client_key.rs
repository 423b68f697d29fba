//! The key a driver finds a client's transfer by, and a listener its recent
//! requests: the client's address and port, hashed as one or two words.
//!
//! `SocketAddr`'s derived `Hash` feeds the hasher field by field (the
//! variant, a length-prefixed byte slice for the address, the port): in a
//! callgrind profile of a boot storm it was 5 % of all instructions, since
//! every datagram takes a few lookups. Equal addresses still hash equally:
//! everything hashed here is part of `SocketAddr`'s equality.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ClientKey(pub(super) SocketAddr);

impl Hash for ClientKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self.0 {
            SocketAddr::V4(addr) => {
                state.write_u64(u64::from(addr.ip().to_bits()) << 16 | u64::from(addr.port()));
            }
            SocketAddr::V6(addr) => {
                state.write_u128(addr.ip().to_bits());
                state.write_u64(u64::from(addr.scope_id()) << 16 | u64::from(addr.port()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn addresses_that_differ_in_any_part_are_different_keys() {
        let keys: HashSet<ClientKey> = [
            "192.0.2.7:50000",
            "192.0.2.7:50001",
            "192.0.2.8:50000",
            "[2001:db8::7]:50000",
            "[2001:db8::7]:50001",
            "[fe80::7%2]:50000",
            "[fe80::7%3]:50000",
            "[::ffff:192.0.2.7]:50000",
        ]
        .iter()
        .map(|addr| ClientKey(addr.parse().unwrap()))
        .collect();
        assert_eq!(keys.len(), 8);
        assert!(keys.contains(&ClientKey("192.0.2.7:50000".parse().unwrap())));
        assert!(keys.contains(&ClientKey("[fe80::7%3]:50000".parse().unwrap())));
    }
}
