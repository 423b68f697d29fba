//! The sockets of the TFTP front: a listener (large receive queue, batched
//! receive, replies from the address the request came to) and the
//! per-transfer socket, bound on that same address and connected to the
//! phone.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::segment::Offload;

/// Receive buffer asked for on listener sockets.
const LISTENER_RECV_BUFFER: usize = 16 << 20;

/// Datagrams per `sendmmsg` call (the kernel takes up to 1024; a storm's
/// replies rarely number more per loop turn).
const SEND_BATCH: usize = 64;

/// A datagram the single-port driver sends from the listener socket.
pub(super) struct Outgoing {
    pub(super) to: SocketAddr,
    /// The address the client's request came to (wildcard listeners).
    pub(super) src_ip: Option<IpAddr>,
    pub(super) datagram: Vec<u8>,
}

/// A bound listener socket.
pub(crate) struct Listener {
    socket: UdpSocket,
    offload: Arc<Offload>,
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
        allow_fragmentation(&socket, addr);
        let local = socket.local_addr()?;
        Ok(Listener {
            socket,
            offload: Arc::new(Offload::new(state)),
            local,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Datagrams the kernel may coalesce into one receive (GRO).
    pub(super) fn gro_segments(&self) -> usize {
        self.offload.state().gro_segments()
    }

    /// What this machine's sockets can offload (shared with the transfer
    /// sockets, which send segmented windows too).
    pub(super) fn offload(&self) -> Arc<Offload> {
        self.offload.clone()
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
            self.offload.state().recv((&self.socket).into(), bufs, meta)
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
            self.offload.state().send((&self.socket).into(), &transmit)
        }) {
            debug!(%to, %error, "reply from listener not sent");
        }
    }
}

impl Listener {
    /// Sends the datagrams of many transfers, in order: a window of blocks
    /// to one client as one segmented send (see `super::segment`), the
    /// others up to [`SEND_BATCH`] per `sendmmsg` call. A wildcard listener
    /// sends one datagram at a time: each reply names its source address.
    pub(super) async fn send_batch(&self, batch: &[Outgoing]) {
        if self.local.ip().is_unspecified() {
            return self.send_each(batch).await;
        }
        // `batch[unsent..]` is still to send; `next` starts the next run of
        // datagrams to one client.
        let (mut unsent, mut next) = (0, 0);
        while next < batch.len() {
            let to = batch[next].to;
            let run = batch[next..].iter().take_while(|out| out.to == to).count();
            if run >= 2 {
                let window: Vec<&[u8]> = batch[next..next + run]
                    .iter()
                    .map(|out| &out.datagram[..])
                    .collect();
                self.send_each(&batch[unsent..next]).await;
                unsent = next;
                match self.offload.send(&self.socket, Some(to), &window).await {
                    Ok(true) => unsent = next + run,
                    Ok(false) => {}
                    Err(error) => {
                        // Dropped: the transfer's timer resends.
                        debug!(%to, %error, "window not sent");
                        unsent = next + run;
                    }
                }
            }
            next += run;
        }
        self.send_each(&batch[unsent..]).await;
    }

    /// Sends datagrams one each: up to [`SEND_BATCH`] per `sendmmsg` call
    /// when the socket is bound to one address. A wildcard listener must
    /// choose each reply's source address (`IP_PKTINFO`), which rustix's
    /// `sendmmsg` cannot express, so it sends one datagram per call through
    /// quinn-udp. A datagram the kernel refuses is dropped: the transfer's
    /// timer resends it.
    async fn send_each(&self, batch: &[Outgoing]) {
        if self.local.ip().is_unspecified() {
            for out in batch {
                self.send_from(out.to, out.src_ip, &out.datagram);
            }
            return;
        }
        let mut done = 0;
        while let Some(rest) = batch.get(done..).filter(|rest| !rest.is_empty()) {
            let chunk = &rest[..rest.len().min(SEND_BATCH)];
            match self
                .socket
                .try_io(Interest::WRITABLE, || send_many(&self.socket, chunk))
            {
                Ok(sent) => done += sent.max(1),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if self.socket.writable().await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    // `sendmmsg` fails only for the first datagram (e.g. a
                    // family the socket cannot reach): skip it.
                    debug!(to = %chunk[0].to, %error, "reply not sent");
                    done += 1;
                }
            }
        }
    }
}

/// One `sendmmsg` call for datagrams to many clients; returns how many
/// left.
fn send_many(socket: &UdpSocket, chunk: &[Outgoing]) -> io::Result<usize> {
    let datagrams: Vec<&[u8]> = chunk.iter().map(|out| &out.datagram[..]).collect();
    let to: Vec<SocketAddr> = chunk.iter().map(|out| out.to).collect();
    send_mmsg(socket, &datagrams, &to)
}

/// One `sendmmsg` call: datagram `i` to `to[i]`, or, past the end of `to`
/// (empty for a connected socket), to the socket's peer. Returns how many
/// left.
fn send_mmsg(socket: &UdpSocket, datagrams: &[&[u8]], to: &[SocketAddr]) -> io::Result<usize> {
    use rustix::net::{addr::SocketAddrArg, MMsgHdr, SendAncillaryBuffer, SendFlags};
    let addrs: Vec<_> = to.iter().map(|addr| addr.as_any()).collect();
    let iovs: Vec<[IoSlice<'_>; 1]> = datagrams.iter().map(|d| [IoSlice::new(d)]).collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = datagrams
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut messages: Vec<MMsgHdr<'_>> = iovs
        .iter()
        .zip(controls.iter_mut())
        .enumerate()
        .map(|(i, (iov, control))| match addrs.get(i) {
            Some(addr) => MMsgHdr::new_with_addr(addr, iov, control),
            None => MMsgHdr::new(iov, control),
        })
        .collect();
    Ok(rustix::net::sendmmsg(
        socket,
        &mut messages,
        SendFlags::empty(),
    )?)
}

/// Sends the windows of one transfer on its socket, connected to the phone.
pub(super) struct WindowSender<'a> {
    socket: &'a UdpSocket,
    /// `None`: every datagram on its own.
    offload: Option<Arc<Offload>>,
}

impl<'a> WindowSender<'a> {
    pub(super) fn new(socket: &'a UdpSocket, offload: Option<Arc<Offload>>) -> WindowSender<'a> {
        WindowSender { socket, offload }
    }

    /// Sends a window's datagrams: in one segmented send where it can (see
    /// `super::segment`), else as many per `sendmmsg` call as the kernel
    /// takes: a window of 8 blocks is one system call instead of 8. Returns
    /// the first error; ECONNREFUSED (the phone's port closed) is the
    /// caller's to act on, and what was not sent by then is left to the
    /// transfer's timer.
    pub(super) async fn send(&self, datagrams: &[Vec<u8>]) -> io::Result<()> {
        let socket = self.socket;
        if let [one] = datagrams {
            return socket.send(one).await.map(drop);
        }
        if let Some(offload) = self.offload.as_deref() {
            let window: Vec<&[u8]> = datagrams.iter().map(|d| &d[..]).collect();
            if offload.send(socket, None, &window).await? {
                return Ok(());
            }
        }
        let mut done = 0;
        while done < datagrams.len() {
            let rest = &datagrams[done..];
            match socket.try_io(Interest::WRITABLE, || send_connected(socket, rest)) {
                Ok(sent) => done += sent.max(1),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    socket.writable().await?;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// One `sendmmsg` call on a connected socket; returns how many datagrams
/// left.
fn send_connected(socket: &UdpSocket, datagrams: &[Vec<u8>]) -> io::Result<usize> {
    let datagrams: Vec<&[u8]> = datagrams.iter().take(SEND_BATCH).map(|d| &d[..]).collect();
    send_mmsg(socket, &datagrams, &[])
}

/// Puts path-MTU discovery back to the kernel's default ("want": the
/// don't-fragment bit, but a datagram larger than a path's known MTU is
/// fragmented). quinn-udp sets "probe" for QUIC, which never fragments, and
/// on IPv6 also `IPV6_DONTFRAG`, with which the kernel drops a datagram
/// larger than the path instead of fragmenting it: single-port DATA of
/// 1,468 bytes would then be lost for good to a phone behind a tunnel with
/// a smaller MTU, which per-port sockets serve.
fn allow_fragmentation(socket: &UdpSocket, addr: SocketAddr) {
    use nix::sys::socket::{setsockopt, sockopt::Ipv6DontFrag};
    use rustix::net::sockopt::{self, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery};
    let result = if addr.is_ipv6() {
        sockopt::set_ipv6_mtu_discover(socket, Ipv6PathMtuDiscovery::WANT).and_then(|()| {
            setsockopt(socket, Ipv6DontFrag, &false)
                .map_err(|e| rustix::io::Errno::from_raw_os_error(e as i32))
        })
    } else {
        sockopt::set_ip_mtu_discover(socket, Ipv4PathMtuDiscovery::WANT)
    };
    if let Err(error) = result {
        warn!(%addr, %error, "cannot restore path-MTU discovery: large blocks may not be fragmented");
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

    #[tokio::test]
    async fn a_batch_to_many_clients_arrives_whole_and_in_order() {
        // More than two sendmmsg calls' worth, to three clients.
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        let batch: Vec<Outgoing> = (0..150u32)
            .map(|i| Outgoing {
                to: clients[i as usize % 3].local_addr().unwrap(),
                src_ip: None,
                datagram: i.to_be_bytes().repeat(1 + i as usize % 5),
            })
            .collect();
        listener.send_batch(&batch).await;
        for (c, client) in clients.iter().enumerate() {
            let mut buf = [0u8; 64];
            for i in (0..150u32).filter(|i| *i as usize % 3 == c) {
                let (n, from) = client.recv_from(&mut buf).await.unwrap();
                assert_eq!(from, listener.local_addr());
                assert_eq!(&buf[..n], &i.to_be_bytes().repeat(1 + i as usize % 5)[..]);
            }
        }
    }

    /// A window of `n` blocks of `size` bytes, the last one shorter, tagged
    /// with `tag`.
    fn window(tag: u8, n: usize, size: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let len = if i + 1 == n { size / 3 } else { size };
                vec![tag.wrapping_add(i as u8); len]
            })
            .collect()
    }

    #[tokio::test]
    async fn windows_sent_segmented_arrive_as_their_datagrams_in_order() {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // A window to a, a single to b, another window to a, a window to b.
        let mut expected_a = window(10, 8, 1468);
        let mut batch: Vec<Outgoing> = Vec::new();
        let mut push = |to, datagrams: Vec<Vec<u8>>| {
            batch.extend(datagrams.into_iter().map(|datagram| Outgoing {
                to,
                src_ip: None,
                datagram,
            }))
        };
        push(to_a, expected_a.clone());
        push(to_b, vec![vec![1; 516]]);
        push(to_a, window(50, 3, 516));
        expected_a.extend(window(50, 3, 516));
        let mut expected_b = vec![vec![1; 516]];
        push(to_b, window(90, 4, 1000));
        expected_b.extend(window(90, 4, 1000));
        listener.send_batch(&batch).await;
        for (socket, expected) in [(&a, expected_a), (&b, expected_b)] {
            let mut buf = [0u8; 2048];
            for datagram in expected {
                let (n, from) = socket.recv_from(&mut buf).await.unwrap();
                assert_eq!(from, listener.local_addr());
                assert_eq!(&buf[..n], &datagram[..]);
            }
        }
    }

    #[tokio::test]
    async fn a_transfer_window_is_one_segmented_send_where_the_kernel_offers_it() {
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let socket = bind_transfer_socket(
            "127.0.0.1:0".parse().unwrap(),
            None,
            phone.local_addr().unwrap(),
        )
        .await
        .unwrap();
        let offload = listener.offload();
        let expected = window(7, 8, 1468);
        let datagrams: Vec<&[u8]> = expected.iter().map(|d| &d[..]).collect();
        let segmented = offload.send(&socket, None, &datagrams).await.unwrap();
        assert_eq!(segmented, offload.state().max_gso_segments() >= 8);
        if !segmented {
            WindowSender::new(&socket, Some(offload.clone()))
                .send(&expected)
                .await
                .unwrap();
        }
        let mut buf = [0u8; 2048];
        for datagram in expected {
            let (n, from) = phone.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, socket.local_addr().unwrap());
            assert_eq!(&buf[..n], &datagram[..]);
        }
        // Blocks of unequal sizes cannot be one segmented send.
        let uneven: Vec<&[u8]> = vec![&[1; 100], &[2; 200]];
        assert!(!offload.send(&socket, None, &uneven).await.unwrap());
    }

    #[tokio::test]
    async fn listener_datagrams_may_be_fragmented_like_a_plain_socket_s() {
        use rustix::net::sockopt::{self, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery};
        let v4 = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(
            sockopt::ip_mtu_discover(&v4.socket).unwrap(),
            Ipv4PathMtuDiscovery::WANT
        );
        let v6 = Listener::bind("[::1]:0".parse().unwrap()).unwrap();
        assert_eq!(
            sockopt::ipv6_mtu_discover(&v6.socket).unwrap(),
            Ipv6PathMtuDiscovery::WANT
        );
        let dont_fragment =
            nix::sys::socket::getsockopt(&v6.socket, nix::sys::socket::sockopt::Ipv6DontFrag);
        assert_eq!(dont_fragment, Ok(false));
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
