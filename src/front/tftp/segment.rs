//! A window of blocks to one phone sent as one segmented datagram (UDP
//! generic segmentation offload, `UDP_SEGMENT`): the blocks cross the
//! network stack once and are cut into datagrams at the end (by the network
//! card, or late in software), instead of once each. What arrives at the
//! phone is the same datagrams. It pays from a window of two blocks up: a
//! firmware download with `windowsize` 8 sends an eighth of the messages.
//!
//! A segmented send cannot be fragmented: a block larger than what the
//! kernel knows of the path's MTU is refused (`EINVAL`, `EMSGSIZE`), and that
//! segment size and larger ones go one datagram each from then on (those are
//! fragmented as before). A device that cannot segment refuses with `EIO`:
//! then every window goes one datagram each. The send is nix's `sendmsg`
//! with a `UDP_SEGMENT` message, not quinn-udp's, whose answer to any
//! `EINVAL` is to stop segmenting for the whole process: one phone behind
//! a small MTU asking for large blocks must not cost every other phone.
//! A wildcard port's window names its source address, as its other sends do
//! (see `super::sendmmsg`).

use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrStorage};
use quinn_udp::UdpSocketState;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::sendmmsg::PacketInfo;
use super::unreachable::past_pending_error;

/// The kernel's bound on one segmented send: the whole must fit in one IP
/// datagram of 64 KiB, headers included.
const MAX_SEGMENTED_BYTES: usize = 63 * 1024;

/// The socket capabilities quinn-udp found for one port, and what the
/// kernel refused of segmentation so far.
pub(super) struct Offload {
    state: UdpSocketState,
    /// The smallest segment size refused so far (`usize::MAX`: none).
    refused_from: AtomicUsize,
    /// The device cannot segment at all.
    unsupported: AtomicBool,
}

impl Offload {
    pub(super) fn new(state: UdpSocketState) -> Offload {
        Offload {
            state,
            refused_from: AtomicUsize::new(usize::MAX),
            unsupported: AtomicBool::new(false),
        }
    }

    pub(super) fn state(&self) -> &UdpSocketState {
        &self.state
    }

    /// The segment size, if `datagrams` may leave as one segmented send:
    /// two or more, all of the first's size but the last, which may be
    /// shorter.
    fn segment_size(&self, datagrams: &[&[u8]]) -> Option<usize> {
        let (first, rest) = datagrams.split_first()?;
        let (last, middle) = rest.split_last()?;
        let size = first.len();
        let fits = datagrams.len() <= self.state.max_gso_segments()
            && !self.unsupported.load(Ordering::Relaxed)
            && size < self.refused_from.load(Ordering::Relaxed)
            && middle.iter().all(|d| d.len() == size)
            && last.len() <= size
            && !last.is_empty()
            && size * datagrams.len() <= MAX_SEGMENTED_BYTES;
        fits.then_some(size)
    }

    /// Sends `datagrams` in one segmented send to `to`, from `from` if
    /// given (see `super::sendmmsg`), waiting while the socket is full.
    /// `Ok(false)`: not sent (not segmentable, or refused): the caller sends
    /// them one datagram each. An error is the socket's.
    pub(super) async fn send(
        &self,
        socket: &UdpSocket,
        to: SocketAddr,
        from: Option<IpAddr>,
        datagrams: &[&[u8]],
    ) -> io::Result<bool> {
        loop {
            match self.try_send(socket, to, from, datagrams) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    socket.writable().await?;
                }
                sent => return sent,
            }
        }
    }

    /// One attempt at [`Offload::send`]; `WouldBlock` when the socket is
    /// full.
    fn try_send(
        &self,
        socket: &UdpSocket,
        to: SocketAddr,
        from: Option<IpAddr>,
        datagrams: &[&[u8]],
    ) -> io::Result<bool> {
        let Some(size) = self.segment_size(datagrams) else {
            return Ok(false);
        };
        let Ok(segment) = u16::try_from(size) else {
            return Ok(false);
        };
        let iov: Vec<IoSlice<'_>> = datagrams.iter().map(|d| IoSlice::new(d)).collect();
        let info = from.map(PacketInfo::new);
        let mut cmsg = vec![ControlMessage::UdpGsoSegments(&segment)];
        cmsg.extend(info.iter().map(PacketInfo::message));
        let to = SockaddrStorage::from(to);
        let sent = socket.try_io(Interest::WRITABLE, || {
            past_pending_error(|| {
                sendmsg(
                    socket.as_raw_fd(),
                    &iov,
                    &cmsg,
                    MsgFlags::empty(),
                    Some(&to),
                )
                .map_err(io::Error::from)
            })
        });
        match sent {
            Ok(_) => Ok(true),
            Err(error) if error.raw_os_error() == Some(nix::errno::Errno::EIO as i32) => {
                self.unsupported.store(true, Ordering::Relaxed);
                Ok(false)
            }
            Err(error) if too_large(&error) => {
                self.refused_from.fetch_min(size, Ordering::Relaxed);
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }
}

/// A segment larger than the path allows.
fn too_large(error: &io::Error) -> bool {
    use nix::errno::Errno;
    let code = error.raw_os_error();
    code == Some(Errno::EINVAL as i32) || code == Some(Errno::EMSGSIZE as i32)
}
