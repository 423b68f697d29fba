//! Which sockets a TFTP listener has, bound before it starts (a listener
//! that cannot have them all is not started, and a reload that asks for
//! one is refused).
//!
//! Per-transfer-port mode (the default): the socket requests arrive on, and
//! a few transfer ports beside it on the same address, each run by one
//! driver (see `super::dispatch`). Single-port mode: a group of sockets all
//! bound to the listening address with `SO_REUSEPORT`, one per core, each
//! run by one driver that takes requests too. The kernel picks a group's
//! socket for each datagram by a hash of its source and destination, so
//! every packet of one phone port reaches the same socket and driver, and
//! the phones are spread over the cores as in per-port mode, still from
//! port 69. The group's sockets close together (see `TftpFront::start`): with
//! one of them gone the kernel would spread the phones anew, and a phone's
//! ACKs would reach a driver with no transfer for them.

use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use super::socket::{new_socket, Port};
use crate::config::TftpConfig;

/// Sockets of one kind per listener, at most.
const MAX_PORTS: usize = 8;

/// A TFTP listener's sockets.
pub(crate) struct Listener {
    local: SocketAddr,
    pub(super) ports: Ports,
}

pub(super) enum Ports {
    /// Requests arrive on `requests`; transfers run on `transfer_ports`.
    PerTransfer {
        requests: Arc<Port>,
        transfer_ports: Vec<Arc<Port>>,
    },
    /// Every socket is bound to the listening address, and takes requests
    /// and transfers alike.
    Single(Vec<Arc<Port>>),
}

impl Listener {
    /// Binds `addr` as `config` asks: for requests and transfer ports beside
    /// it on the same address (inside `config.port_range` if set), or, with
    /// `config.single_port`, a group of sockets on `addr` itself.
    pub(crate) fn bind(addr: SocketAddr, config: &TftpConfig) -> io::Result<Listener> {
        if config.single_port {
            return Listener::bind_single(addr);
        }
        let requests = Arc::new(Port::bind(addr, false)?);
        let local = requests.local_addr();
        let transfer_ports = (0..transfer_port_count(config.port_range.as_ref()))
            .map(|i| {
                let salt = u32::from(local.port()) ^ (i as u32) << 16;
                Port::bind_for_transfers(addr, config.port_range.as_ref(), salt).map(Arc::new)
            })
            .collect::<io::Result<_>>()?;
        Ok(Listener {
            local,
            ports: Ports::PerTransfer {
                requests,
                transfer_ports,
            },
        })
    }

    /// A group of sockets on `addr` (its port chosen first, for port 0).
    fn bind_single(addr: SocketAddr) -> io::Result<Listener> {
        // For port 0, another socket may take the port chosen before the
        // group is bound to it (seen once in CI, among parallel tests): a
        // port chosen anew is as good. A port asked for by number is not
        // tried again: in use is an error to report.
        let mut retries = if addr.port() == 0 { 7 } else { 0 };
        loop {
            match Listener::bind_group(addr) {
                Err(error) if error.kind() == io::ErrorKind::AddrInUse && retries > 0 => {
                    retries -= 1;
                }
                bound => return bound,
            }
        }
    }

    fn bind_group(addr: SocketAddr) -> io::Result<Listener> {
        // Bound alone first, so that a port already in use is refused: a
        // second daemon on the same port would otherwise join the first's
        // group and take half of its phones.
        let probe = new_socket(addr)?;
        probe.bind(&addr.into())?;
        let local = probe.local_addr()?.as_socket().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "not an internet address")
        })?;
        drop(probe);
        let ports = (0..single_port_count())
            .map(|_| Port::bind(local, true).map(Arc::new))
            .collect::<io::Result<_>>()?;
        Ok(Listener {
            local,
            ports: Ports::Single(ports),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// Transfer ports per listener: one per core, so that each core can drive
/// the transfers of one (see `super::driver`), at least two, so that a
/// client's next request from the same port gets a port other than its
/// last one (see `super::dispatch`), and no more than `port_range` holds.
fn transfer_port_count(range: Option<&RangeInclusive<u16>>) -> usize {
    let span = range.map_or(usize::MAX, |r| usize::from(r.end() - r.start()) + 1);
    cores().clamp(2, MAX_PORTS).min(span)
}

/// Sockets of a single-port listener: one per core.
fn single_port_count() -> usize {
    cores().clamp(1, MAX_PORTS)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn transfer_ports_stay_inside_port_range_and_on_the_listener_s_address() {
        let config = TftpConfig {
            port_range: Some(50_200..=50_201),
            ..TftpConfig::default()
        };
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), &config).unwrap();
        let Ports::PerTransfer { transfer_ports, .. } = &listener.ports else {
            panic!("per-transfer-port mode is the default");
        };
        assert!(!transfer_ports.is_empty());
        for port in transfer_ports {
            let local = port.local_addr();
            assert_eq!(local.ip(), listener.local_addr().ip());
            assert!((50_200..=50_201).contains(&local.port()), "{local}");
        }
    }

    #[tokio::test]
    async fn a_single_port_listener_s_sockets_all_listen_on_its_address() {
        let single = TftpConfig {
            single_port: true,
            ..TftpConfig::default()
        };
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let listener = Listener::bind(addr.parse().unwrap(), &single).unwrap();
            let Ports::Single(ports) = &listener.ports else {
                panic!("single_port asks for one group");
            };
            assert_eq!(ports.len(), single_port_count());
            for port in ports {
                assert_eq!(port.local_addr(), listener.local_addr());
            }
        }
    }

    #[tokio::test]
    async fn a_port_in_use_is_refused_in_either_mode_even_by_another_group() {
        let single = TftpConfig {
            single_port: true,
            ..TftpConfig::default()
        };
        let first = Listener::bind("127.0.0.1:0".parse().unwrap(), &single).unwrap();
        let taken = first.local_addr();
        for config in [&single, &TftpConfig::default()] {
            let error = Listener::bind(taken, config)
                .err()
                .expect("the port is taken");
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        }
        let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let error = Listener::bind(plain.local_addr().unwrap(), &single)
            .err()
            .expect("the port is taken");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }
}
