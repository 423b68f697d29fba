//! A window of blocks to one phone sent as one segmented datagram (UDP
//! generic segmentation offload, `UDP_SEGMENT`): the blocks cross the
//! network stack once and are cut into datagrams at the end (by the network
//! card, or late in software), instead of once each. What arrives at the
//! phone is the same datagrams. It pays from a window of two blocks up: a
//! firmware download with `windowsize` 8 sends an eighth of the messages.
//!
//! A segmented send cannot be fragmented: a block larger than the path's
//! MTU is refused (`EMSGSIZE`), and that segment size and larger ones go one
//! datagram each from then on (those are fragmented as before). A device
//! that cannot segment refuses with `EIO` or `EINVAL`; quinn-udp then stops
//! offering it, and every window goes one datagram each.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use quinn_udp::{Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// The kernel's bound on one segmented send: the whole must fit in one IP
/// datagram of 64 KiB, headers included.
const MAX_SEGMENTED_BYTES: usize = 63 * 1024;

thread_local! {
    /// Where a window is laid out for its segmented send: one buffer per
    /// thread, not one per transfer (2,000 transfers waiting on their
    /// phones would hold 2,000 of them).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The socket capabilities quinn-udp found, shared by the listener (batched
/// receive, replies from the arrival address) and the transfer sockets.
pub(super) struct Offload {
    state: UdpSocketState,
    /// The smallest segment size refused so far (`usize::MAX`: none).
    refused_from: AtomicUsize,
}

impl Offload {
    pub(super) fn new(state: UdpSocketState) -> Offload {
        Offload {
            state,
            refused_from: AtomicUsize::new(usize::MAX),
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
            && size < self.refused_from.load(Ordering::Relaxed)
            && middle.iter().all(|d| d.len() == size)
            && last.len() <= size
            && !last.is_empty()
            && size * datagrams.len() <= MAX_SEGMENTED_BYTES;
        fits.then_some(size)
    }

    /// Sends `datagrams` to `to` in one segmented send.
    /// `Ok(false)`: not sent (not segmentable, or refused): the caller
    /// sends them one datagram each. Errors are the socket's (`WouldBlock`,
    /// or the phone's port closed on a connected socket).
    pub(super) fn try_send(
        &self,
        socket: &UdpSocket,
        to: SocketAddr,
        src_ip: Option<IpAddr>,
        datagrams: &[&[u8]],
    ) -> io::Result<bool> {
        let Some(size) = self.segment_size(datagrams) else {
            return Ok(false);
        };
        let sent = SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            for datagram in datagrams {
                scratch.extend_from_slice(datagram);
            }
            let transmit = Transmit {
                destination: to,
                ecn: None,
                contents: scratch,
                segment_size: Some(size),
                src_ip,
            };
            socket.try_io(Interest::WRITABLE, || {
                self.state.try_send(socket.into(), &transmit)
            })
        });
        match sent {
            Ok(()) => Ok(true),
            Err(error) if refused(&error) => {
                self.refused_from.fetch_min(size, Ordering::Relaxed);
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }
}

/// A refusal of segmentation itself, not of the datagrams.
fn refused(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(code) if code == rustix::io::Errno::MSGSIZE.raw_os_error()
            || code == rustix::io::Errno::IO.raw_os_error()
            || code == rustix::io::Errno::INVAL.raw_os_error()
    )
}
