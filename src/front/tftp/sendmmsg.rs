//! One `sendmmsg` call: datagrams to many clients in one system call.
//!
//! A port bound to the wildcard address must say, reply by reply, which of
//! the host's addresses it leaves from (the one the request came to), in an
//! `IP_PKTINFO` / `IPV6_PKTINFO` control message ([`PacketInfo`], also
//! carried by the segmented send of `segment.rs`), so a wildcard listener
//! batches like one bound to a single address. A port bound to one address
//! names none, and takes rustix's `sendmmsg`, which costs less per call.

use std::io::{self, IoSlice};
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use nix::libc;
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use tokio::net::UdpSocket;

use smallvec::SmallVec;

use super::socket::{Outgoing, SEND_BATCH};

/// Room on the stack for one value per datagram of a call: a `sendmmsg`
/// call allocates nothing (six allocations a call, about two calls a file,
/// were near half of a boot storm's allocations).
type PerDatagram<T> = SmallVec<[T; SEND_BATCH]>;

/// Sends `chunk`, from `from` if given (on a wildcard port); returns how
/// many datagrams left.
pub(super) fn send_many(
    socket: &UdpSocket,
    chunk: &[Outgoing],
    from: Option<IpAddr>,
) -> io::Result<usize> {
    let mut iovs = PerDatagram::<[IoSlice<'_>; 1]>::new();
    iovs.extend(chunk.iter().map(|out| [IoSlice::new(&out.datagram)]));
    match from {
        Some(from) => send_mmsg_from(socket, &iovs, chunk, from),
        None => send_mmsg(socket, &iovs, chunk),
    }
}

/// One `sendmmsg` call: `iovs[i]` to `chunk[i].to`. Returns how many left.
fn send_mmsg(
    socket: &UdpSocket,
    iovs: &[[IoSlice<'_>; 1]],
    chunk: &[Outgoing],
) -> io::Result<usize> {
    use rustix::net::{addr::SocketAddrArg, MMsgHdr, SendAncillaryBuffer, SendFlags};
    let mut addrs = PerDatagram::new();
    addrs.extend(chunk.iter().map(|out| out.to.as_any()));
    let mut controls = PerDatagram::<SendAncillaryBuffer<'_, '_, '_>>::new();
    controls.extend(chunk.iter().map(|_| SendAncillaryBuffer::default()));
    let mut messages = PerDatagram::<MMsgHdr<'_>>::new();
    messages.extend(
        iovs.iter()
            .zip(controls.iter_mut())
            .zip(&addrs)
            .map(|((iov, control), addr)| MMsgHdr::new_with_addr(addr, iov, control)),
    );
    Ok(rustix::net::sendmmsg(
        socket,
        &mut messages,
        SendFlags::empty(),
    )?)
}

/// A source address, as the kernel takes it.
pub(super) enum PacketInfo {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

impl PacketInfo {
    pub(super) fn new(ip: IpAddr) -> PacketInfo {
        match ip {
            IpAddr::V4(ip) => PacketInfo::V4(libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(ip.octets()),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            }),
            IpAddr::V6(ip) => PacketInfo::V6(libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                ipi6_ifindex: 0,
            }),
        }
    }

    pub(super) fn message(&self) -> ControlMessage<'_> {
        match self {
            PacketInfo::V4(info) => ControlMessage::Ipv4PacketInfo(info),
            PacketInfo::V6(info) => ControlMessage::Ipv6PacketInfo(info),
        }
    }

    /// Room for the message, exactly: a larger buffer would leave a
    /// zeroed header behind it that the kernel refuses.
    fn space(&self) -> Vec<u8> {
        match self {
            PacketInfo::V4(_) => nix::cmsg_space!(libc::in_pktinfo),
            PacketInfo::V6(_) => nix::cmsg_space!(libc::in6_pktinfo),
        }
    }
}

/// `iovs[i]` to `chunk[i].to`, each from `from`. Returns how many left.
fn send_mmsg_from(
    socket: &impl AsRawFd,
    iovs: &[[IoSlice<'_>; 1]],
    chunk: &[Outgoing],
    from: IpAddr,
) -> io::Result<usize> {
    let info = PacketInfo::new(from);
    let messages = [info.message()];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(iovs.len(), Some(info.space()));
    let mut addrs = PerDatagram::new();
    addrs.extend(chunk.iter().map(|out| Some(SockaddrStorage::from(out.to))));
    let sent = sendmmsg(
        socket.as_raw_fd(),
        &mut headers,
        iovs,
        &addrs,
        messages,
        MsgFlags::empty(),
    )?;
    Ok(sent.count())
}
