//! The sending side of a read transfer as a deterministic state machine.
//!
//! A [`Transfer`] is handed the client's datagrams and the current time and
//! answers with datagrams to send ([`Transfer::poll_transmit`]) and the time
//! it next needs waking ([`Transfer::deadline`]). It owns no socket, reads no
//! clock and opens no file: its bytes come from a [`BlockSource`] the caller
//! provides. Tests drive it through loss, duplication and reordering without
//! sleeping.
//!
//! Behaviour worth knowing:
//! - the first block is read when the transfer is created, so a read failure
//!   becomes an ERROR answer instead of an OACK followed by silence;
//! - block numbers roll over from 65535 to 0;
//! - only an ACK that acknowledges something new moves the window; duplicate
//!   and old ACKs are ignored (no Sorcerer's Apprentice syndrome), and only
//!   the timer retransmits, with exponential back-off;
//! - an ACK for a block inside the window (the RFC 7440 signal that the
//!   client missed what followed) restarts the window after that block;
//! - a client ERROR ends the transfer at once, with nothing sent back;
//! - until the client has answered anything, its address may be forged (a
//!   reflection attack): the timer and repeats of the request together
//!   resend the first packets at most `UNANSWERED_RESENDS` times; after
//!   that only a further repeat is answered, at most once per time-out, so
//!   one datagram never makes us send more than `1 + UNANSWERED_RESENDS`
//!   windows and a stream of repeats gets less than fresh requests would;
//! - until the client has answered anything, a repeat of its request is a
//!   retransmission: the first packets are resent at once
//!   ([`Transfer::handle_repeated_request`]). Once the client may have every
//!   block ([`Transfer::may_be_done`]: it answered and the last block has
//!   gone out), the same request from the same port is a new request (the
//!   client finished and its port was handed out again), which the driver
//!   must start afresh; in between it is a late duplicate, ignored.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use crate::tftp::options::Negotiated;
use crate::tftp::packet::{ErrorCode, Packet, OP_DATA};

/// Back-off doubles the time-out once, no more: the client's repeated ACKs
/// for a window we already have are (rightly) ignored, so the timer is the
/// only way out of a lost window, and a phone's own patience is short.
const MAX_BACKOFF_SHIFT: u32 = 1;

/// Resends of the first packets (OACK, or the first block) to a client that
/// has not answered yet, by the timer and on repeated requests together.
/// Two survive the loss of two packets in a row, which a phone's own
/// request retransmission covers beyond; `max_retries` applies once the
/// client has shown it exists. The transfer still waits `max_retries`
/// time-outs for a late answer, sending nothing more.
pub(crate) const UNANSWERED_RESENDS: u32 = 2;

/// Where a transfer's bytes come from, provided by the caller (a buffer, a
/// file it opened). The state machine asks for exactly the bytes of one
/// block at a time, never past the end.
pub trait BlockSource {
    /// Total length in bytes.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset`; an error when they cannot all
    /// be read (the source shrank, an I/O error).
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Each read is a system call (a file read in place): a window's blocks
    /// are then read in one call. A body in memory says no.
    fn reads_in_place(&self) -> bool {
        false
    }

    /// The `len` bytes at `offset`, when the source holds them in memory:
    /// a block is then copied straight into its datagram, not into a
    /// zero-filled buffer first.
    fn in_memory(&self, _offset: u64, _len: usize) -> Option<&[u8]> {
        None
    }
}

/// The most bytes of one window read in one call.
const READ_AHEAD: u64 = 64 << 10;

/// Bytes of a body read ahead for a window, and where they start.
#[derive(Default)]
struct Ahead {
    at: u64,
    bytes: Vec<u8>,
}

impl Ahead {
    /// `len` bytes at `offset` of the body, if read ahead.
    fn get(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(offset.checked_sub(self.at)?).ok()?;
        self.bytes.get(start..start.checked_add(len)?)
    }
}

/// A buffer in memory is a source (tests, small bodies).
impl BlockSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let bytes = self
            .get(start..start.saturating_add(buf.len()))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the end"))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn in_memory(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        self.get(start..start.checked_add(len)?)
    }
}

/// How a transfer ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every block was acknowledged.
    Completed,
    /// The client sent an ERROR (for example code 8 refusing our OACK).
    ClientError { code: u16, message: String },
    /// The retry budget ran out without an answer.
    TimedOut,
    /// The body could not be read part way through.
    ReadFailed(String),
}

/// Counters a driver may log when the transfer ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets_sent: u64,
    pub retransmissions: u64,
}

/// One read transfer, from the first packet to the last acknowledgement.
#[derive(Debug)]
pub struct Transfer<S> {
    body: S,
    block_size: usize,
    window: u64,
    timeout: Duration,
    max_retries: u32,
    /// Number of the final block (always shorter than `block_size`).
    last_block: u64,
    /// The encoded OACK, kept while we wait for the client's ACK 0.
    pending_oack: Option<Vec<u8>>,
    /// Block 1, read up front (see the module doc); taken by its first
    /// send, so a resend reads it again.
    first_block: Vec<u8>,
    /// Highest block acknowledged (0 before any).
    acked: u64,
    /// Highest block sent in the current window.
    sent_up_to: u64,
    retries: u32,
    /// The client acknowledged something (the OACK or a block).
    answered: bool,
    /// When the first packets last went out, while the client has not
    /// answered (see [`Transfer::handle_repeated_request`]).
    first_sent_at: Instant,
    deadline: Option<Instant>,
    outbox: VecDeque<Vec<u8>>,
    /// Sent datagrams handed back by the driver, reused for the next
    /// blocks (see [`Transfer::recycle`]).
    spare: SmallVec<[Vec<u8>; 2]>,
    outcome: Option<Outcome>,
    stats: Stats,
}

impl<S: BlockSource> Transfer<S> {
    /// Starts a transfer of `body` with the negotiated parameters: reads the
    /// first block, then queues the OACK (when options were accepted) or the
    /// first window of data.
    pub fn start(
        body: S,
        negotiated: &Negotiated,
        max_retries: u32,
        now: Instant,
    ) -> io::Result<Transfer<S>> {
        let block_size = usize::from(negotiated.block_size.max(1));
        let last_block = body.len() / block_size as u64 + 1;
        let mut transfer = Transfer {
            body,
            block_size,
            window: u64::from(negotiated.window_size.max(1)),
            timeout: negotiated.timeout,
            max_retries,
            last_block,
            pending_oack: None,
            first_block: Vec::new(),
            acked: 0,
            sent_up_to: 0,
            retries: 0,
            answered: false,
            first_sent_at: now,
            deadline: None,
            outbox: VecDeque::new(),
            spare: SmallVec::new(),
            outcome: None,
            stats: Stats::default(),
        };
        transfer.first_block = transfer.read_block(1, &Ahead::default())?;
        if negotiated.oack.is_empty() {
            transfer.send_window(now);
        } else {
            let oack = Packet::Oack(negotiated.oack.clone()).encode();
            transfer.push(oack.clone());
            transfer.pending_oack = Some(oack);
            transfer.arm(now);
        }
        Ok(transfer)
    }

    /// Feeds one datagram received from the client.
    pub fn handle_datagram(&mut self, datagram: &[u8], now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        match Packet::decode(datagram) {
            Ok(Packet::Ack(block)) => self.on_ack(block, now),
            Ok(Packet::Error { code, message }) => {
                self.finish(Outcome::ClientError { code, message });
            }
            // Anything else on a read transfer's port is noise; answering it
            // could only feed a loop with a confused peer.
            _ => {}
        }
    }

    /// Wakes the transfer; retransmits if its deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.deadline {
            Some(deadline) if self.outcome.is_none() && now >= deadline => {}
            _ => return,
        }
        self.retries += 1;
        if self.retries > self.max_retries {
            self.finish(Outcome::TimedOut);
            return;
        }
        if self.retries > self.retry_limit() {
            // Out of resends for a client that may be forged, but not out
            // of patience: its late acknowledgement still starts the file.
            self.arm(now);
            return;
        }
        self.stats.retransmissions += 1;
        self.first_sent_at = now;
        if let Some(oack) = self.pending_oack.clone() {
            self.push(oack);
            self.arm(now);
        } else {
            self.send_window(now);
        }
    }

    /// The client sent its request again. Before it has answered anything
    /// that is a retransmission (our first packets may have been lost): they
    /// are resent now rather than at the next time-out. Once the free
    /// resends are spent, a repeat is still answered, but at most once per
    /// time-out and without moving the deadline: a phone whose first
    /// exchanges were all lost is served at its next repeat, while a forged
    /// stream of repeats gets at most one window per datagram and per
    /// time-out, less than each fresh request would. Later it is a late
    /// duplicate or, once [`Transfer::may_be_done`], a new request, which is
    /// the driver's to start; nothing happens here.
    pub fn handle_repeated_request(&mut self, now: Instant) {
        if self.answered || self.outcome.is_some() {
            return;
        }
        let late = self.retries >= self.retry_limit();
        if late && now < self.first_sent_at + self.timeout {
            return;
        }
        if !late {
            self.retries += 1;
        }
        self.first_sent_at = now;
        self.stats.retransmissions += 1;
        let listening_until = self.deadline;
        match self.pending_oack.clone() {
            Some(oack) => self.push(oack),
            None => self.send_window(now),
        }
        if self.outcome.is_none() {
            if late {
                self.deadline = listening_until;
            } else {
                self.arm(now);
            }
        }
    }

    /// Whether the client may have received every block: the transfer has
    /// ended, or the client has answered and the last block has gone out.
    /// From then on a repeat of the request that started it is a new request
    /// (the client is done and its port was reused), not a retransmission.
    /// Before, it cannot be done: the repeat is a retransmission or a late
    /// duplicate, and starting over would abort its transfer.
    pub fn may_be_done(&self) -> bool {
        self.outcome.is_some() || (self.answered && self.sent_up_to == self.last_block)
    }

    /// Whether the client has answered anything (so its address is real).
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// Hands back a datagram from [`Transfer::poll_transmit`] once it is
    /// sent (this transfer's or another's), so the next block is built in
    /// its buffer instead of a new one: under a boot storm that is one
    /// allocation less per packet. Optional.
    pub fn recycle(&mut self, mut datagram: Vec<u8>) {
        if self.wants_buffer() {
            datagram.clear();
            self.spare.push(datagram);
        }
    }

    /// Whether [`Transfer::recycle`] would keep a buffer: fewer than a
    /// window's are kept.
    pub fn wants_buffer(&self) -> bool {
        self.spare.len() < self.window as usize
    }

    /// When [`Transfer::handle_timeout`] must next be called; `None` once
    /// the transfer has ended.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// How the transfer ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Size of the body being sent.
    pub fn size(&self) -> u64 {
        self.body.len()
    }

    /// The negotiated block size.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The negotiated window (blocks sent before waiting for an ACK).
    pub fn window_size(&self) -> u64 {
        self.window
    }

    /// Bytes the client has acknowledged so far (all of them once
    /// completed): what a log line reports as sent.
    pub fn acknowledged_bytes(&self) -> u64 {
        (self.acked * self.block_size as u64).min(self.body.len())
    }

    fn on_ack(&mut self, block: u16, now: Instant) {
        if self.pending_oack.is_some() {
            if block == 0 {
                self.pending_oack = None;
                self.answered = true;
                self.retries = 0;
                self.send_window(now);
            }
            return;
        }
        // Map the 16-bit wire number onto the blocks in flight. Anything not
        // strictly ahead of what is already acknowledged is a duplicate or a
        // stray and must not trigger a retransmission.
        let ahead = u64::from(block.wrapping_sub(self.acked as u16));
        if ahead == 0 || ahead > self.sent_up_to - self.acked {
            return;
        }
        self.acked += ahead;
        self.answered = true;
        self.retries = 0;
        if self.acked == self.last_block {
            self.finish(Outcome::Completed);
        } else {
            self.send_window(now);
        }
    }

    /// Resends allowed in a row: few while the client may be a forged
    /// address (see [`UNANSWERED_RESENDS`]).
    fn retry_limit(&self) -> u32 {
        if self.answered {
            self.max_retries
        } else {
            self.max_retries.min(UNANSWERED_RESENDS)
        }
    }

    /// Sends the window that follows the last acknowledged block.
    fn send_window(&mut self, now: Instant) {
        let first = self.acked + 1;
        let last = (self.acked + self.window).min(self.last_block);
        // Block 1 is kept from the start.
        let read = self.read_ahead(first.max(2), last).and_then(|ahead| {
            for block in first..=last {
                let packet = if block == 1 && !self.first_block.is_empty() {
                    // Sent as read up front; a resend reads it again.
                    std::mem::take(&mut self.first_block)
                } else {
                    self.read_block(block, &ahead)?
                };
                self.push(packet);
            }
            Ok(())
        });
        if let Err(error) = read {
            self.push(Packet::error(ErrorCode::NotDefined, "read error"));
            self.finish(Outcome::ReadFailed(error.to_string()));
            return;
        }
        self.sent_up_to = last;
        self.arm(now);
    }

    /// For a body read in place, the bytes of blocks `from..=to` (up to
    /// [`READ_AHEAD`]) in one read instead of one per block; empty
    /// otherwise. Dropped once the window is built: a transfer holds no
    /// copy while it waits.
    fn read_ahead(&self, from: u64, to: u64) -> io::Result<Ahead> {
        if to <= from || !self.body.reads_in_place() {
            return Ok(Ahead::default());
        }
        let at = (from - 1) * self.block_size as u64;
        let end = (to * self.block_size as u64)
            .min(self.body.len())
            .min(at + READ_AHEAD);
        let mut bytes = vec![0; (end - at) as usize];
        self.body.read_exact_at(at, &mut bytes)?;
        Ok(Ahead { at, bytes })
    }

    /// Encodes DATA for `block` (1-based, unbounded; the wire number
    /// wraps), from `ahead` when it holds the block.
    fn read_block(&mut self, block: u64, ahead: &Ahead) -> io::Result<Vec<u8>> {
        let offset = (block - 1) * self.block_size as u64;
        let len = (self.body.len() - offset).min(self.block_size as u64) as usize;
        let mut packet = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(4 + len));
        packet.extend_from_slice(&OP_DATA.to_be_bytes());
        packet.extend_from_slice(&(block as u16).to_be_bytes());
        let held = ahead
            .get(offset, len)
            .or_else(|| self.body.in_memory(offset, len));
        match held {
            Some(bytes) => packet.extend_from_slice(bytes),
            None => {
                packet.resize(4 + len, 0);
                self.body.read_exact_at(offset, &mut packet[4..])?;
            }
        }
        Ok(packet)
    }

    fn push(&mut self, datagram: Vec<u8>) {
        self.stats.packets_sent += 1;
        self.outbox.push_back(datagram);
    }

    fn arm(&mut self, now: Instant) {
        let backoff = 1u32 << self.retries.min(MAX_BACKOFF_SHIFT);
        self.deadline = Some(now + self.timeout * backoff);
    }

    fn finish(&mut self, outcome: Outcome) {
        self.deadline = None;
        self.outcome = Some(outcome);
    }
}

#[cfg(test)]
#[path = "send_tests.rs"]
mod tests;
