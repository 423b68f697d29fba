//! The sockets of the TFTP front (which of them a listener has:
//! `super::listener`). Each is a [`Port`]: a large
//! receive queue, batched receive (`recvmmsg`) and sends (`sendmmsg`, and a
//! window of blocks to one phone as one segmented send), replies from the
//! address the request came to, ICMP errors reported.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use quinn_udp::{RecvMeta, UdpSocketState, BATCH_SIZE};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::segment::Offload;
use super::sendmmsg::send_many;
use super::unreachable::{self, past_pending_error};

/// Receive buffer asked for: a boot storm's requests (or ACKs) queue
/// rather than drop.
const RECV_BUFFER: usize = 16 << 20;

/// Datagrams per `sendmmsg` call (the kernel takes up to 1024; a storm's
/// replies rarely number more per loop turn).
pub(super) const SEND_BATCH: usize = 64;

/// A datagram a driver sends.
pub(super) struct Outgoing {
    pub(super) to: SocketAddr,
    /// The address the client's request came to (wildcard listeners).
    pub(super) src_ip: Option<IpAddr>,
    pub(super) datagram: Vec<u8>,
}

/// One bound UDP socket of the TFTP front (a listener's, or a port its
/// transfers run on): batched receive, batched and segmented sends, replies
/// from the address a request came to, ICMP errors reported (see
/// `super::unreachable`).
pub(super) struct Port {
    socket: UdpSocket,
    offload: Offload,
    local: SocketAddr,
}

impl Port {
    /// Binds `addr`; with `shared`, as one of a group of sockets on the
    /// same address (`SO_REUSEPORT`: see `super::listener`).
    pub(super) fn bind(addr: SocketAddr, shared: bool) -> io::Result<Port> {
        let socket = new_socket(addr)?;
        if shared {
            socket.set_reuse_port(true)?;
        }
        enlarge_receive_buffer(&socket, RECV_BUFFER);
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket.into())?;
        let state = UdpSocketState::new((&socket).into())?;
        allow_fragmentation(&socket, addr);
        if let Err(error) = unreachable::report_errors(&socket, addr) {
            debug!(%addr, %error, "ICMP errors not reported: a vanished phone's transfer times out");
        }
        let local = socket.local_addr()?;
        Ok(Port {
            socket,
            offload: Offload::new(state),
            local,
        })
    }

    /// Binds a port for transfers on the address of `listen` (with its
    /// scope, for a link-local one): any free port, or one inside `range`,
    /// probed from a point that differs per `salt`.
    pub(super) fn bind_for_transfers(
        mut listen: SocketAddr,
        range: Option<&RangeInclusive<u16>>,
        salt: u32,
    ) -> io::Result<Port> {
        let Some(range) = range else {
            listen.set_port(0);
            return Port::bind(listen, false);
        };
        let span = u32::from(range.end() - range.start()) + 1;
        let start = (salt ^ std::process::id()).wrapping_mul(2_654_435_761) % span;
        for i in 0..span {
            let port = range.start() + ((start + i) % span) as u16;
            listen.set_port(port);
            if let Ok(bound) = Port::bind(listen, false) {
                return Ok(bound);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "tftp.port_range has no free port left",
        ))
    }

    pub(super) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Datagrams the kernel may coalesce into one receive (GRO).
    pub(super) fn gro_segments(&self) -> usize {
        self.offload.state().gro_segments()
    }

    /// Waits until the socket has something to read.
    pub(super) async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Receives a batch of datagrams (`recvmmsg`), each with the address it
    /// came from and the local address it came to.
    fn try_recv(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        self.socket.try_io(Interest::READABLE, || {
            self.offload.state().recv((&self.socket).into(), bufs, meta)
        })
    }

    /// Waits until the kernel has queued an ICMP error on the socket.
    pub(super) async fn errored(&self) -> io::Result<()> {
        self.socket.ready(Interest::ERROR).await.map(drop)
    }

    /// The clients whose port turned out closed since the last call.
    pub(super) fn unreachable_clients(&self, gone: &mut Vec<SocketAddr>) {
        let read = self.socket.try_io(Interest::ERROR, || {
            unreachable::read_errors(&self.socket, gone)
        });
        match read {
            Err(error) if error.kind() != io::ErrorKind::WouldBlock => {
                debug!(local = %self.local, %error, "cannot read the socket's error queue");
            }
            _ => {}
        }
    }

    /// The source address a reply must name: the one its request came to,
    /// on a wildcard port only (a port bound to one address has no choice).
    fn source(&self, src_ip: Option<IpAddr>) -> Option<IpAddr> {
        src_ip.filter(|_| self.local.ip().is_unspecified())
    }

    /// Sends one datagram from `src_ip` (the address the request came to).
    pub(super) fn send_from(&self, to: SocketAddr, src_ip: Option<IpAddr>, datagram: &[u8]) {
        // Not quinn-udp's send: it reports no error, and this one must be
        // tried again past another phone's pending ICMP error.
        let reply = [Outgoing {
            to,
            src_ip,
            datagram: datagram.to_vec(),
        }];
        if let Err(error) = self.try_send_many(&reply, self.source(src_ip)) {
            debug!(%to, %error, "reply not sent");
        }
    }

    /// One `sendmmsg` of `chunk`, from `from`, if the socket has room; tried
    /// once more past another phone's pending ICMP error (see
    /// `super::unreachable`). Returns how many datagrams left.
    fn try_send_many(&self, chunk: &[Outgoing], from: Option<IpAddr>) -> io::Result<usize> {
        self.socket.try_io(Interest::WRITABLE, || {
            past_pending_error(|| send_many(&self.socket, chunk, from))
        })
    }
}

/// Room for one `recvmmsg` batch and what it received.
pub(super) struct RecvBatch {
    storage: Vec<u8>,
    meta: [RecvMeta; BATCH_SIZE],
    /// Bytes per received message: a datagram, or several coalesced (GRO).
    slot: usize,
    count: usize,
}

impl RecvBatch {
    pub(super) fn new(port: &Port) -> RecvBatch {
        let slot = 2048 * port.gro_segments().max(1);
        RecvBatch {
            storage: vec![0u8; slot * BATCH_SIZE],
            meta: [RecvMeta::default(); BATCH_SIZE],
            slot,
            count: 0,
        }
    }

    /// Reads what `port` has queued, once it is readable; false when there
    /// was nothing (or only an error, which concerns one peer: an ICMP
    /// error surfaces here too).
    pub(super) fn receive(&mut self, port: &Port) -> bool {
        // On the stack: a receive call allocates nothing.
        let mut chunks = self.storage.chunks_mut(self.slot);
        let mut bufs: [IoSliceMut<'_>; BATCH_SIZE] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        self.count = match port.try_recv(&mut bufs, &mut self.meta) {
            Ok(count) => count,
            Err(error) => {
                if error.kind() != io::ErrorKind::WouldBlock {
                    debug!(local = %port.local, %error, "TFTP receive error");
                }
                0
            }
        };
        self.count > 0
    }

    /// The datagrams received, each with where it came from and to.
    pub(super) fn datagrams(&self) -> impl Iterator<Item = (&RecvMeta, &[u8])> {
        self.meta
            .iter()
            .zip(self.storage.chunks(self.slot))
            .take(self.count)
            .flat_map(|(meta, chunk)| {
                chunk[..meta.len]
                    .chunks(meta.stride.max(1))
                    .map(move |datagram| (meta, datagram))
            })
    }
}

impl Port {
    /// Sends the datagrams of many transfers, in order: a window of blocks
    /// to one client as one segmented send (see `super::segment`), the
    /// others up to [`SEND_BATCH`] per `sendmmsg` call. On a wildcard port
    /// each names the address its request came to as its source.
    pub(super) async fn send_batch(&self, batch: &[Outgoing]) {
        // `batch[unsent..]` is still to send; `next` starts the next run of
        // datagrams to one client.
        let (mut unsent, mut next) = (0, 0);
        while next < batch.len() {
            let (to, from) = (batch[next].to, self.source(batch[next].src_ip));
            let run = batch[next..].iter().take_while(|out| out.to == to).count();
            if run >= 2 {
                let window: Vec<&[u8]> = batch[next..next + run]
                    .iter()
                    .map(|out| &out.datagram[..])
                    .collect();
                self.send_each(&batch[unsent..next]).await;
                unsent = next;
                match self.offload.send(&self.socket, to, from, &window).await {
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

    /// Sends datagrams one each, up to [`SEND_BATCH`] per `sendmmsg` call
    /// (a wildcard port's call covers a run of replies from one source
    /// address). A datagram the kernel refuses is dropped: the transfer's
    /// timer resends it.
    async fn send_each(&self, batch: &[Outgoing]) {
        let mut done = 0;
        while let Some(rest) = batch.get(done..).filter(|rest| !rest.is_empty()) {
            let from = self.source(rest[0].src_ip);
            let same = rest
                .iter()
                .take(SEND_BATCH)
                .take_while(|out| self.source(out.src_ip) == from)
                .count();
            let chunk = &rest[..same];
            match self.try_send_many(chunk, from) {
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

/// An unbound UDP socket for `addr`.
pub(super) fn new_socket(addr: SocketAddr) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Lets "0.0.0.0:69" and "[::]:69" be listed side by side.
        socket.set_only_v6(true)?;
    }
    Ok(socket)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_to_many_clients_arrives_whole_and_in_order() {
        // More than two sendmmsg calls' worth, to three clients.
        let listener = Port::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
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
        let listener = Port::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
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
    async fn a_window_is_one_segmented_send_where_the_kernel_offers_it() {
        let port = Port::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = phone.local_addr().unwrap();
        let expected = window(7, 8, 1468);
        let datagrams: Vec<&[u8]> = expected.iter().map(|d| &d[..]).collect();
        let offload = &port.offload;
        let segmented = offload
            .send(&port.socket, to, None, &datagrams)
            .await
            .unwrap();
        assert_eq!(segmented, offload.state().max_gso_segments() >= 8);
        if segmented {
            let mut buf = [0u8; 2048];
            for datagram in expected {
                let (n, from) = phone.recv_from(&mut buf).await.unwrap();
                assert_eq!(from, port.local_addr());
                assert_eq!(&buf[..n], &datagram[..]);
            }
        }
        // Blocks of unequal sizes cannot be one segmented send.
        let uneven: Vec<&[u8]> = vec![&[1; 100], &[2; 200]];
        assert!(!offload.send(&port.socket, to, None, &uneven).await.unwrap());
    }

    #[tokio::test]
    async fn a_wildcard_port_s_batches_leave_from_the_address_each_request_came_to() {
        let port = Port::bind("0.0.0.0:0".parse().unwrap(), false).unwrap();
        let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = phone.local_addr().unwrap();
        let mut batch = Vec::new();
        let mut expected = Vec::new();
        // A window from 127.0.0.2, singles from .3 then .2: each run is one
        // call, and each datagram names its own source.
        for (i, (source, len)) in [(2, 1468); 8]
            .into_iter()
            .chain([(3, 100), (3, 100), (2, 50)])
            .enumerate()
        {
            let src_ip: IpAddr = format!("127.0.0.{source}").parse().unwrap();
            let datagram = vec![i as u8; len];
            expected.push((src_ip, datagram.clone()));
            batch.push(Outgoing {
                to,
                src_ip: Some(src_ip),
                datagram,
            });
        }
        port.socket.writable().await.unwrap();
        // Where the kernel segments, a window is one send that names its
        // source too (not refused, and so not sent one by one).
        let window: Vec<&[u8]> = batch[..8].iter().map(|out| &out.datagram[..]).collect();
        let segmented = port
            .offload
            .send(&port.socket, to, batch[0].src_ip, &window)
            .await
            .unwrap();
        assert_eq!(segmented, port.offload.state().max_gso_segments() >= 8);
        if segmented {
            expected.splice(0..0, expected[..8].to_vec());
        }
        port.send_batch(&batch).await;
        let mut buf = [0u8; 2048];
        for (src_ip, datagram) in expected {
            let (n, from) = phone.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, SocketAddr::new(src_ip, port.local_addr().port()));
            assert_eq!(&buf[..n], &datagram[..]);
        }
    }

    #[tokio::test]
    async fn a_closed_client_port_is_reported_with_its_address() {
        let port = Port::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let open = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let gone_addr = closed.local_addr().unwrap();
        drop(closed);
        // `send_from` never waits: it needs the socket known writable.
        port.socket.writable().await.unwrap();
        port.send_from(gone_addr, None, b"\x00\x03\x00\x01");
        port.send_from(open.local_addr().unwrap(), None, b"\x00\x03\x00\x01");
        tokio::time::timeout(std::time::Duration::from_secs(5), port.errored())
            .await
            .expect("the error is signalled")
            .unwrap();
        let mut gone = Vec::new();
        port.unreachable_clients(&mut gone);
        assert_eq!(gone, vec![gone_addr]);
        // Read once: the next wait is for a new error.
        gone.clear();
        port.unreachable_clients(&mut gone);
        assert!(gone.is_empty());
    }

    #[tokio::test]
    async fn a_reply_sent_after_another_phone_s_closed_port_still_leaves() {
        use std::time::Duration;
        let port = Port::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let open = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to_open = |datagram: &[u8]| Outgoing {
            to: open.local_addr().unwrap(),
            src_ip: None,
            datagram: datagram.to_vec(),
        };
        let mut buf = [0u8; 64];
        // Each way out: one reply by `sendmmsg`, a window as one segmented
        // send, a listener's single reply.
        for way in 0..3u8 {
            let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let gone = Outgoing {
                to: closed.local_addr().unwrap(),
                src_ip: None,
                datagram: b"\x00\x03\x00\x01".to_vec(),
            };
            drop(closed);
            port.send_batch(&[gone]).await;
            // The ICMP error is pending on the socket, unread.
            tokio::time::timeout(Duration::from_secs(5), port.errored())
                .await
                .expect("the error is signalled")
                .unwrap();
            let expected: Vec<Vec<u8>> = match way {
                0 => {
                    port.send_batch(&[to_open(b"one")]).await;
                    vec![b"one".to_vec()]
                }
                1 => {
                    port.send_batch(&[to_open(b"ab"), to_open(b"cd")]).await;
                    vec![b"ab".to_vec(), b"cd".to_vec()]
                }
                _ => {
                    port.send_from(open.local_addr().unwrap(), None, b"single");
                    vec![b"single".to_vec()]
                }
            };
            for want in expected {
                let (n, _) = tokio::time::timeout(Duration::from_secs(2), open.recv_from(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("way {way}: the reply was lost"))
                    .unwrap();
                assert_eq!(&buf[..n], &want[..], "way {way}");
            }
            let mut read = Vec::new();
            port.unreachable_clients(&mut read);
        }
    }

    #[tokio::test]
    async fn listener_datagrams_may_be_fragmented_like_a_plain_socket_s() {
        use rustix::net::sockopt::{self, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery};
        let v4 = Port::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        assert_eq!(
            sockopt::ip_mtu_discover(&v4.socket).unwrap(),
            Ipv4PathMtuDiscovery::WANT
        );
        let v6 = Port::bind("[::1]:0".parse().unwrap(), false).unwrap();
        assert_eq!(
            sockopt::ipv6_mtu_discover(&v6.socket).unwrap(),
            Ipv6PathMtuDiscovery::WANT
        );
        let dont_fragment =
            nix::sys::socket::getsockopt(&v6.socket, nix::sys::socket::sockopt::Ipv6DontFrag);
        assert_eq!(dont_fragment, Ok(false));
    }
}
