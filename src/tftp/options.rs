//! Option negotiation (RFC 2347 framework; RFC 2348 blksize, RFC 2349
//! timeout and tsize, RFC 7440 windowsize): what a request asked for, what
//! the server accepts within its limits, and the OACK that says so.
//!
//! The OACK lists only options the client asked for and the server accepted;
//! an option with a value out of its RFC range is ignored, as if not asked.

use std::time::Duration;

/// The server's ceilings for negotiable options.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_block_size: u16,
    pub max_window_size: u16,
    /// Retransmit time-out when the client asks for none.
    pub default_timeout: Duration,
}

/// The parameters a transfer runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub block_size: u16,
    pub window_size: u16,
    pub timeout: Duration,
    /// Options to acknowledge; empty means no OACK (plain RFC 1350 transfer).
    pub oack: Vec<(String, String)>,
}

pub const DEFAULT_BLOCK_SIZE: u16 = 512;
/// Longest `timeout` option accepted, in seconds.
pub const MAX_TIMEOUT_OPTION_SECS: u8 = 30;
pub const MIN_BLOCK_SIZE: u16 = 8;
pub const MAX_BLOCK_SIZE: u16 = 65464;

/// What a client asks for, parsed; `None` where it did not ask (or asked out
/// of range, which the RFCs say to treat the same way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requested {
    pub block_size: Option<u16>,
    pub window_size: Option<u16>,
    pub timeout_secs: Option<u8>,
    pub tsize: Option<u64>,
}

impl Requested {
    pub fn parse(options: &[(String, String)]) -> Requested {
        let mut requested = Requested::default();
        for (name, value) in options {
            let value = value.trim();
            match name.as_str() {
                "blksize" => {
                    // Larger than the RFC maximum is still a request for "as
                    // large as you can"; smaller than 8 is invalid.
                    requested.block_size = value
                        .parse::<u64>()
                        .ok()
                        .filter(|&v| v >= u64::from(MIN_BLOCK_SIZE))
                        .map(|v| v.min(u64::from(MAX_BLOCK_SIZE)) as u16);
                }
                "windowsize" => {
                    requested.window_size = value
                        .parse::<u64>()
                        .ok()
                        .filter(|&v| v >= 1)
                        .map(|v| v.min(65535) as u16);
                }
                "timeout" => {
                    requested.timeout_secs = value.parse::<u8>().ok().filter(|&v| v >= 1);
                }
                "tsize" => requested.tsize = value.parse::<u64>().ok(),
                _ => {}
            }
        }
        requested
    }

    /// The options in wire form, for a client's RRQ.
    pub fn to_options(self) -> Vec<(String, String)> {
        let mut options = Vec::new();
        if let Some(v) = self.block_size {
            options.push(("blksize".to_owned(), v.to_string()));
        }
        if let Some(v) = self.timeout_secs {
            options.push(("timeout".to_owned(), v.to_string()));
        }
        if let Some(v) = self.tsize {
            options.push(("tsize".to_owned(), v.to_string()));
        }
        if let Some(v) = self.window_size {
            options.push(("windowsize".to_owned(), v.to_string()));
        }
        options
    }
}

/// Settles the options of a read request for a file of `file_size` bytes.
pub fn negotiate(options: &[(String, String)], limits: &Limits, file_size: u64) -> Negotiated {
    let requested = Requested::parse(options);
    let mut oack = Vec::new();
    let block_size = match requested.block_size {
        Some(asked) => {
            let granted = asked.min(limits.max_block_size.max(MIN_BLOCK_SIZE));
            oack.push(("blksize".to_owned(), granted.to_string()));
            granted
        }
        None => DEFAULT_BLOCK_SIZE,
    };
    let timeout = match requested.timeout_secs {
        // RFC 2349 lets a server decline the option; a longer time-out would
        // let a vanished client hold a transfer slot for most of an hour
        // (the retry schedule is about 11 time-outs).
        Some(secs) if secs > MAX_TIMEOUT_OPTION_SECS => limits.default_timeout,
        Some(secs) => {
            oack.push(("timeout".to_owned(), secs.to_string()));
            Duration::from_secs(u64::from(secs))
        }
        None => limits.default_timeout,
    };
    if requested.tsize.is_some() {
        oack.push(("tsize".to_owned(), file_size.to_string()));
    }
    let window_size = match requested.window_size {
        Some(asked) => {
            let granted = asked.min(limits.max_window_size.max(1));
            oack.push(("windowsize".to_owned(), granted.to_string()));
            granted
        }
        None => 1,
    };
    Negotiated {
        block_size,
        window_size,
        timeout,
        oack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_block_size: 1468,
        max_window_size: 16,
        default_timeout: Duration::from_secs(1),
    };

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_options_means_no_oack() {
        let n = negotiate(&[], &LIMITS, 100);
        assert_eq!(n.block_size, 512);
        assert_eq!(n.window_size, 1);
        assert!(n.oack.is_empty());
    }

    #[test]
    fn values_are_capped_by_the_server_limits() {
        let n = negotiate(
            &opts(&[("blksize", "8192"), ("windowsize", "64")]),
            &LIMITS,
            0,
        );
        assert_eq!((n.block_size, n.window_size), (1468, 16));
        assert_eq!(n.oack, opts(&[("blksize", "1468"), ("windowsize", "16")]));
    }

    #[test]
    fn tsize_zero_gets_the_real_size() {
        let n = negotiate(&opts(&[("tsize", "0")]), &LIMITS, 2_097_152);
        assert_eq!(n.oack, opts(&[("tsize", "2097152")]));
    }

    #[test]
    fn out_of_range_and_unknown_options_are_not_acknowledged() {
        let asked = opts(&[
            ("blksize", "7"),
            ("timeout", "0"),
            ("windowsize", "x"),
            ("multicast", ""),
        ]);
        let n = negotiate(&asked, &LIMITS, 10);
        assert!(n.oack.is_empty());
        assert_eq!(n.block_size, 512);
    }

    #[test]
    fn timeout_option_sets_the_retransmit_time() {
        let n = negotiate(&opts(&[("timeout", "3")]), &LIMITS, 10);
        assert_eq!(n.timeout, Duration::from_secs(3));
        assert_eq!(n.oack, opts(&[("timeout", "3")]));
    }

    #[test]
    fn a_timeout_longer_than_30_s_is_declined() {
        let n = negotiate(&opts(&[("timeout", "30")]), &LIMITS, 10);
        assert_eq!(n.timeout, Duration::from_secs(30));
        let n = negotiate(&opts(&[("timeout", "255"), ("tsize", "0")]), &LIMITS, 10);
        assert_eq!(n.timeout, LIMITS.default_timeout);
        assert_eq!(n.oack, opts(&[("tsize", "10")]));
    }
}
