//! The sockets of the TFTP front: a listener (large receive queue, batched
//! receive, replies from the address the request came to) and the
//! per-transfer socket, bound on that same address and connected to the
//! phone.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

/// Receive buffer asked for on listener sockets.
const LISTENER_RECV_BUFFER: usize = 16 << 20;

/// A bound listener socket.
pub(crate) struct Listener {
    socket: UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
}

impl Listener {
    /// Binds `addr` for requests.
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Listener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            // Lets "0.0.0.0:69" and "[::]:69" be listed side by side.
            socket.set_only_v6(true)?;
        }
        enlarge_receive_buffer(&socket, LISTENER_RECV_BUFFER);
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket.into())?;
        let state = UdpSocketState::new((&socket).into())?;
        let local = socket.local_addr()?;
        Ok(Listener {
            socket,
            state,
            local,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Datagrams the kernel may coalesce into one receive (GRO).
    pub(super) fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    /// Waits until the socket has something to read.
    pub(super) async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Receives a batch of datagrams (`recvmmsg`), each with the address it
    /// came from and the local address it came to.
    pub(super) fn try_recv(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        self.socket.try_io(Interest::READABLE, || {
            self.state.recv((&self.socket).into(), bufs, meta)
        })
    }

    /// Sends one datagram from `src_ip` (the address the request came to).
    pub(super) fn send_from(&self, to: SocketAddr, src_ip: Option<IpAddr>, datagram: &[u8]) {
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents: datagram,
            segment_size: None,
            src_ip,
        };
        if let Err(error) = self.socket.try_io(Interest::WRITABLE, || {
            self.state.send((&self.socket).into(), &transmit)
        }) {
            debug!(%to, %error, "reply from listener not sent");
        }
    }
}

/// Asks the kernel for a large receive queue. `SO_RCVBUFFORCE` passes the
/// `net.core.rmem_max` ceiling when we have CAP_NET_ADMIN; otherwise the
/// plain option gets as much as the ceiling allows.
fn enlarge_receive_buffer(socket: &socket2::Socket, bytes: usize) {
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(socket, bytes).is_err() {
        let _ = socket.set_recv_buffer_size(bytes);
    }
    // Linux reports twice the size set (it counts its bookkeeping).
    let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
    if granted < bytes {
        warn!(
            granted,
            wanted = bytes,
            "TFTP listener receive buffer is small: a boot storm's requests may be dropped; \
             raise net.core.rmem_max (e.g. sysctl -w net.core.rmem_max={bytes}, or the shipped \
             60-tftproxy.conf)"
        );
    }
}

/// The address a transfer socket binds (port 0: any): the one the request
/// came to. An IPv6 link-local address names an address only together with
/// its interface, so it takes the phone's scope (the kernel reports the
/// interface a link-local sender's datagram arrived on as its scope id).
pub(super) fn transfer_local_addr(ip: IpAddr, client: SocketAddr) -> SocketAddr {
    match (ip, client) {
        (IpAddr::V6(ip), SocketAddr::V6(client)) if ip.is_unicast_link_local() => {
            SocketAddr::V6(std::net::SocketAddrV6::new(ip, 0, 0, client.scope_id()))
        }
        _ => SocketAddr::new(ip, 0),
    }
}

/// Binds the socket of one transfer on the address the request came to,
/// inside `port_range` when one is set, and connects it to the client so the
/// kernel filters out every other sender.
pub(super) async fn bind_transfer_socket(
    local: SocketAddr,
    port_range: Option<&RangeInclusive<u16>>,
    client: SocketAddr,
) -> io::Result<UdpSocket> {
    let socket = match port_range {
        None => UdpSocket::bind(local).await?,
        Some(range) => {
            let span = u32::from(range.end() - range.start()) + 1;
            // Start at a pseudo-random port so concurrent transfers do not
            // all probe the same ports in order.
            let start =
                (client.port() as u32 ^ std::process::id()).wrapping_mul(2_654_435_761) % span;
            let mut bound = None;
            for i in 0..span {
                let port = range.start() + ((start + i) % span) as u16;
                let mut local = local;
                local.set_port(port);
                if let Ok(socket) = UdpSocket::bind(local).await {
                    bound = Some(socket);
                    break;
                }
            }
            bound.ok_or_else(|| {
                io::Error::new(io::ErrorKind::AddrInUse, "tftp.port_range is exhausted")
            })?
        }
    };
    socket.connect(client).await?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_local_request_is_answered_on_the_phone_s_interface() {
        let phone: SocketAddr = "[fe80::1234%7]:50000".parse().unwrap();
        let local = transfer_local_addr("fe80::1".parse().unwrap(), phone);
        assert_eq!(local, "[fe80::1%7]:0".parse().unwrap());
    }

    #[test]
    fn routable_addresses_need_no_scope() {
        let phone: SocketAddr = "[2001:db8::5]:50000".parse().unwrap();
        let local = transfer_local_addr("2001:db8::1".parse().unwrap(), phone);
        assert_eq!(local, "[2001:db8::1]:0".parse().unwrap());
        let phone: SocketAddr = "192.0.2.5:50000".parse().unwrap();
        let local = transfer_local_addr("192.0.2.1".parse().unwrap(), phone);
        assert_eq!(local, "192.0.2.1:0".parse().unwrap());
    }
}
