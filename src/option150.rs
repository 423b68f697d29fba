//! `tftproxy option150 IP [IP]`: DHCP option 150 (Cisco's "TFTP server
//! address", RFC 5859) for one to four tftproxy addresses, as the raw option
//! in hex and as ready snippets for the usual DHCP servers.
//!
//! On the wire the option is `150`, then the length (4 × the number of
//! addresses), then each IPv4 address in network order: one address
//! `192.0.2.10` is `96 04 c0 00 02 0a`.
//!
//! Phones take the first address and fall back to the next. One or two
//! addresses is the usual design; a larger site puts several tftproxy
//! instances behind one VRRP or IPVS address rather than listing them all.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// The DHCP option code.
pub const CODE: u8 = 150;
/// Most addresses accepted (Cisco IOS allows more; phones use the first
/// ones).
pub const MAX_ADDRESSES: usize = 4;
/// More than this many addresses is allowed but unusual: a warning is given.
pub const USUAL_ADDRESSES: usize = 2;

/// Why the addresses cannot make an option 150.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Option150Error {
    #[error("give at least one IPv4 address")]
    Empty,
    #[error("at most {MAX_ADDRESSES} addresses (got {0}); put more instances behind one VRRP or IPVS address")]
    TooMany(usize),
    #[error("{0} is an IPv6 address: option 150 carries IPv4 addresses only (DHCPv6 phones find their TFTP server another way)")]
    Ipv6(String),
    #[error("{0:?} is not an IPv4 address")]
    NotAnAddress(String),
    #[error("{0} cannot be a TFTP server address (unspecified, broadcast or multicast)")]
    Unusable(Ipv4Addr),
}

/// Parses the command-line addresses.
pub fn parse_addresses<S: AsRef<str>>(args: &[S]) -> Result<Vec<Ipv4Addr>, Option150Error> {
    if args.is_empty() {
        return Err(Option150Error::Empty);
    }
    if args.len() > MAX_ADDRESSES {
        return Err(Option150Error::TooMany(args.len()));
    }
    args.iter()
        .map(|arg| {
            let text = arg.as_ref().trim();
            match text
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<IpAddr>()
            {
                Ok(IpAddr::V4(v4)) => {
                    if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() {
                        Err(Option150Error::Unusable(v4))
                    } else {
                        Ok(v4)
                    }
                }
                Ok(IpAddr::V6(_)) => Err(Option150Error::Ipv6(text.to_owned())),
                Err(_) => Err(Option150Error::NotAnAddress(text.to_owned())),
            }
        })
        .collect()
}

/// The whole option as it goes on the wire: code, length, addresses.
pub fn encode(addresses: &[Ipv4Addr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 4 * addresses.len());
    out.push(CODE);
    out.push((4 * addresses.len()) as u8);
    for address in addresses {
        out.extend_from_slice(&address.octets());
    }
    out
}

/// Lower-case hex, bytes separated by `sep`.
pub fn hex(bytes: &[u8], sep: &str) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// A warning for the operator, if the list is unusual.
pub fn warning(addresses: &[Ipv4Addr]) -> Option<String> {
    (addresses.len() > USUAL_ADDRESSES).then(|| {
        format!(
            "{} addresses: phones normally use only the first two; for more capacity put \
             several tftproxy instances behind one VRRP or IPVS address",
            addresses.len()
        )
    })
}

/// Everything `tftproxy option150` prints: the value in hex and snippets for
/// ISC dhcpd, Kea, dnsmasq, Cisco IOS and Windows DHCP.
pub fn render(addresses: &[Ipv4Addr]) -> String {
    let wire = encode(addresses);
    let value = &wire[2..];
    let list = |sep: &str| {
        addresses
            .iter()
            .map(Ipv4Addr::to_string)
            .collect::<Vec<_>>()
            .join(sep)
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "DHCP option 150 (TFTP server address) for {}",
        list(", ")
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "  option (code, length, value): {}", hex(&wire, " "));
    let _ = writeln!(o, "  value only:                   {}", hex(value, ""));
    let _ = writeln!(o, "  value, colon-separated:       {}", hex(value, ":"));
    let _ = writeln!(o);
    let _ = writeln!(o, "ISC dhcpd (dhcpd.conf):");
    let _ = writeln!(o, "  # once, at the top:");
    let _ = writeln!(
        o,
        "  option tftp-server-address code 150 = array of ip-address;"
    );
    let _ = writeln!(o, "  # in the subnet, pool or class of the phones:");
    let _ = writeln!(o, "  option tftp-server-address {};", list(", "));
    let _ = writeln!(o);
    let _ = writeln!(o, "Kea (kea-dhcp4.conf, inside \"Dhcp4\"):");
    let _ = writeln!(o, "  \"option-def\": [");
    let _ = writeln!(
        o,
        "    {{ \"name\": \"tftp-servers\", \"code\": 150, \"space\": \"dhcp4\", \"type\": \"ipv4-address\", \"array\": true }}"
    );
    let _ = writeln!(o, "  ],");
    let _ = writeln!(
        o,
        "  \"option-data\": [   # global, or in the phones' subnet"
    );
    let _ = writeln!(
        o,
        "    {{ \"name\": \"tftp-servers\", \"code\": 150, \"space\": \"dhcp4\", \"data\": \"{}\" }}",
        list(", ")
    );
    let _ = writeln!(o, "  ]");
    let _ = writeln!(
        o,
        "  # without an option-def: {{ \"code\": 150, \"space\": \"dhcp4\", \"csv-format\": false, \"data\": \"{}\" }}",
        hex(value, "").to_uppercase()
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "dnsmasq (dnsmasq.conf):");
    let _ = writeln!(o, "  dhcp-option=150,{}", list(","));
    let _ = writeln!(o);
    let _ = writeln!(o, "Cisco IOS (ip dhcp pool PHONES):");
    let _ = writeln!(o, "  option 150 ip {}", list(" "));
    let _ = writeln!(o);
    let _ = writeln!(o, "Windows DHCP (PowerShell):");
    let _ = writeln!(
        o,
        "  Add-DhcpServerv4OptionDefinition -OptionId 150 -Name \"TFTP Server Address\" -Type IPv4Address -MultiValued"
    );
    let quoted: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
    let _ = writeln!(
        o,
        "  Set-DhcpServerv4OptionValue -ScopeId <phone scope> -OptionId 150 -Value {}",
        quoted.join(",")
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<Ipv4Addr> {
        parse_addresses(list).unwrap()
    }

    #[test]
    fn one_address() {
        let wire = encode(&ips(&["192.0.2.10"]));
        assert_eq!(hex(&wire, ""), "9604c000020a");
        assert_eq!(wire, [150, 4, 192, 0, 2, 10]);
    }

    #[test]
    fn two_addresses_in_order() {
        let wire = encode(&ips(&["10.1.2.3", "172.16.0.254"]));
        assert_eq!(hex(&wire, " "), "96 08 0a 01 02 03 ac 10 00 fe");
        assert_eq!(hex(&wire[2..], ":"), "0a:01:02:03:ac:10:00:fe");
    }

    #[test]
    fn four_addresses_warn_and_five_are_refused() {
        let four = ips(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]);
        assert_eq!(encode(&four)[1], 16);
        assert!(warning(&four).is_some());
        assert!(warning(&four[..2]).is_none());
        assert_eq!(
            parse_addresses(&["10.0.0.1"; 5]),
            Err(Option150Error::TooMany(5))
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(parse_addresses::<&str>(&[]), Err(Option150Error::Empty));
        assert!(matches!(
            parse_addresses(&["2001:db8::1"]),
            Err(Option150Error::Ipv6(_))
        ));
        assert!(matches!(
            parse_addresses(&["tftp.example.com"]),
            Err(Option150Error::NotAnAddress(_))
        ));
        assert!(matches!(
            parse_addresses(&["0.0.0.0"]),
            Err(Option150Error::Unusable(_))
        ));
        assert!(matches!(
            parse_addresses(&["255.255.255.255"]),
            Err(Option150Error::Unusable(_))
        ));
    }

    #[test]
    fn snippets_name_every_server() {
        let text = render(&ips(&["192.0.2.10", "192.0.2.11"]));
        assert!(text.contains("96 08 c0 00 02 0a c0 00 02 0b"), "{text}");
        assert!(text.contains("option tftp-server-address code 150 = array of ip-address;"));
        assert!(text.contains("option tftp-server-address 192.0.2.10, 192.0.2.11;"));
        assert!(text.contains("\"data\": \"192.0.2.10, 192.0.2.11\""));
        assert!(text.contains("\"data\": \"C000020AC000020B\""));
        assert!(text.contains("dhcp-option=150,192.0.2.10,192.0.2.11"));
        assert!(text.contains("option 150 ip 192.0.2.10 192.0.2.11"));
    }
}
