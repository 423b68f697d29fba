//! Phones that went away: the ICMP "port unreachable" their host sends
//! back when a DATA reaches a closed port (a phone that rebooted or gave up
//! mid-transfer).
//!
//! The sockets of the TFTP front are not connected to one phone, so the
//! kernel reports such errors only when asked (`IP_RECVERR`): each error is
//! queued on the socket with the address the failed datagram was sent to,
//! and the socket is woken for it. The driver of that socket reads the
//! queue and ends the transfer to that address at once, instead of keeping
//! its `max_transfers` slot through every retransmission to a port nobody
//! listens on.

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrLike, SockaddrStorage,
};

/// Runs a send, and once more if it failed with anything but a full
/// socket. With `IP_RECVERR` the kernel also keeps the last ICMP error as
/// the socket's pending error, and fails the socket's next send with it,
/// whatever that send's destination: a reply to one phone would be lost for
/// another phone's closed port (it then waited a retransmit). Reported, the
/// pending error is cleared, so the send tried again goes; an error of the
/// send's own comes back again.
pub(super) fn past_pending_error<T>(mut send: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    match send() {
        Err(error) if error.kind() != io::ErrorKind::WouldBlock => send(),
        sent => sent,
    }
}

/// Asks the kernel to queue ICMP errors on `socket` (of `addr`'s family).
pub(super) fn report_errors(socket: &impl AsFd, addr: SocketAddr) -> io::Result<()> {
    let result = match addr {
        SocketAddr::V4(_) => setsockopt(socket, sockopt::Ipv4RecvErr, &true),
        SocketAddr::V6(_) => setsockopt(socket, sockopt::Ipv6RecvErr, &true),
    };
    result.map_err(io::Error::from)
}

/// Reads every queued error, adding to `gone` the clients whose port was
/// unreachable; ends with `WouldBlock` once the queue is empty.
pub(super) fn read_errors(socket: &impl AsRawFd, gone: &mut Vec<SocketAddr>) -> io::Result<()> {
    loop {
        // The failed datagram's first bytes come back too; none are needed.
        let mut head = [0u8; 4];
        let mut iov = [IoSliceMut::new(&mut head)];
        // Room for the error and the offender's address, and for what the
        // socket's other options add to every message (`IP_PKTINFO`, the
        // traffic class): short of room, the error would be cut off.
        let mut control = nix::cmsg_space!(
            libc::sock_extended_err,
            libc::sockaddr_in6,
            libc::in6_pktinfo,
            [u32; 4]
        );
        let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
        let message = match recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            flags,
        ) {
            Ok(message) => message,
            Err(Errno::EAGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
            Err(Errno::EINTR) => continue,
            Err(error) => return Err(error.into()),
        };
        let refused = message.cmsgs().is_ok_and(|mut cmsgs| {
            cmsgs.any(|cmsg| match cmsg {
                ControlMessageOwned::Ipv4RecvErr(error, _)
                | ControlMessageOwned::Ipv6RecvErr(error, _) => {
                    error.ee_errno == Errno::ECONNREFUSED as u32
                }
                _ => false,
            })
        });
        if let Some(to) = message.address.as_ref().and_then(socket_addr) {
            if refused {
                gone.push(to);
            }
        }
    }
}

fn socket_addr(storage: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    let v6 = storage.as_sockaddr_in6()?;
    (v6.len() > 0).then(|| SocketAddr::V6(SocketAddrV6::from(*v6)))
}
