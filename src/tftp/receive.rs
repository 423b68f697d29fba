//! The receiving side of a read transfer (a TFTP client) as a deterministic
//! state machine, the mirror of [`crate::tftp::send`]: handed datagrams
//! and the time, it returns datagrams to send and its next deadline.
//!
//! It sends the RRQ, checks the server's OACK against what was asked,
//! acknowledges each window (RFC 7440: at the end of a window, at the last
//! block, or at the last in-order block when it sees a gap), follows block
//! numbers through rollover, and on a time-out repeats its last packet.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::tftp::options::{Requested, DEFAULT_BLOCK_SIZE};
use crate::tftp::packet::{ErrorCode, Mode, Packet, Request};

/// Client settings.
#[derive(Clone, Debug)]
pub struct ReceiveConfig {
    pub mode: Mode,
    pub options: Requested,
    /// Retransmit time-out (a phone uses about 0.5–1 s).
    pub timeout: Duration,
    pub max_retries: u32,
    /// Refuse files larger than this.
    pub max_size: u64,
}

impl Default for ReceiveConfig {
    fn default() -> Self {
        ReceiveConfig {
            mode: Mode::Octet,
            options: Requested::default(),
            timeout: Duration::from_secs(1),
            max_retries: 5,
            max_size: 4 << 30,
        }
    }
}

/// Why a download failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    #[error("server error {code}: {message}")]
    Server { code: u16, message: String },
    #[error("no answer from the server")]
    TimedOut,
    #[error("server acknowledged options it should not have: {0}")]
    BadOack(String),
    #[error("file is larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error("server sent a DATA block of {got} bytes with a {block_size}-byte block size")]
    OversizedBlock { got: usize, block_size: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitingFirst,
    Receiving,
    Done,
}

/// One download.
#[derive(Debug)]
pub struct Receive {
    config: ReceiveConfig,
    rrq: Vec<u8>,
    phase: Phase,
    block_size: usize,
    window: u64,
    /// Next block expected (absolute, 1-based).
    expected: u64,
    received_in_window: u64,
    /// Block most recently acknowledged (absolute).
    last_acked: Option<u64>,
    data: Vec<u8>,
    oack: Vec<(String, String)>,
    tsize: Option<u64>,
    retries: u32,
    deadline: Option<Instant>,
    outbox: VecDeque<Vec<u8>>,
    result: Option<Result<(), ReceiveError>>,
}

impl Receive {
    /// Starts a download of `filename`; the RRQ is the first datagram out.
    pub fn start(filename: &str, config: ReceiveConfig, now: Instant) -> Receive {
        let rrq = Packet::Rrq(Request {
            filename: filename.to_owned(),
            mode: config.mode,
            options: config.options.to_options(),
        })
        .encode();
        let mut receive = Receive {
            config,
            rrq: rrq.clone(),
            phase: Phase::AwaitingFirst,
            block_size: usize::from(DEFAULT_BLOCK_SIZE),
            window: 1,
            expected: 1,
            received_in_window: 0,
            last_acked: None,
            data: Vec::new(),
            oack: Vec::new(),
            tsize: None,
            retries: 0,
            deadline: None,
            outbox: VecDeque::new(),
            result: None,
        };
        receive.outbox.push_back(rrq);
        receive.arm(now);
        receive
    }

    /// Feeds one datagram from the server's transfer port.
    pub fn handle_datagram(&mut self, datagram: &[u8], now: Instant) {
        let Ok(packet) = Packet::decode(datagram) else {
            return;
        };
        match (self.phase, packet) {
            // Our final ACK was lost: the server repeats its last block.
            (Phase::Done, Packet::Data { block, .. })
                if self.last_acked.is_some_and(|acked| block == acked as u16) =>
            {
                self.send_ack(now);
            }
            (Phase::Done, _) => {}
            (_, Packet::Error { code, message }) => {
                self.fail(ReceiveError::Server { code, message });
            }
            (Phase::AwaitingFirst, Packet::Oack(options)) => self.on_oack(options, now),
            (Phase::AwaitingFirst, data @ Packet::Data { .. }) => {
                // The server ignored our options: RFC 1350 defaults apply.
                self.phase = Phase::Receiving;
                if let Packet::Data { block, data } = data {
                    self.on_data(block, &data, now);
                }
            }
            (Phase::Receiving, Packet::Data { block, data }) => self.on_data(block, &data, now),
            (Phase::Receiving, Packet::Oack(_)) if self.expected == 1 => {
                // Our ACK 0 was lost.
                self.send_ack(now);
            }
            _ => {}
        }
    }

    /// Wakes the download; repeats the last packet if the deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.deadline {
            Some(deadline) if self.result.is_none() && now >= deadline => {}
            _ => return,
        }
        self.retries += 1;
        if self.retries > self.config.max_retries {
            self.fail(ReceiveError::TimedOut);
            return;
        }
        match self.phase {
            Phase::AwaitingFirst => {
                self.outbox.push_back(self.rrq.clone());
                self.arm(now);
            }
            Phase::Receiving => {
                self.received_in_window = 0;
                self.send_ack(now);
            }
            Phase::Done => {}
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// `Some(Ok)` once the whole file is in, `Some(Err)` on failure.
    pub fn result(&self) -> Option<&Result<(), ReceiveError>> {
        self.result.as_ref()
    }

    /// Whether the first answer from the server has arrived (a driver locks
    /// onto the server's transfer port then).
    pub fn has_answer(&self) -> bool {
        self.phase != Phase::AwaitingFirst || self.result.is_some()
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// Options the server acknowledged.
    pub fn negotiated(&self) -> &[(String, String)] {
        &self.oack
    }

    /// The size announced by the server's tsize, if any.
    pub fn tsize(&self) -> Option<u64> {
        self.tsize
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn window_size(&self) -> u64 {
        self.window
    }

    fn on_oack(&mut self, options: Vec<(String, String)>, now: Instant) {
        let asked = self.config.options;
        for (name, value) in &options {
            let number = value.trim().parse::<u64>().ok();
            let valid = match (name.as_str(), number) {
                ("blksize", Some(v)) => asked
                    .block_size
                    .is_some_and(|max| (8..=u64::from(max)).contains(&v)),
                ("windowsize", Some(v)) => asked
                    .window_size
                    .is_some_and(|max| (1..=u64::from(max)).contains(&v)),
                ("timeout", Some(v)) => asked.timeout_secs.is_some_and(|t| u64::from(t) == v),
                ("tsize", Some(_)) => asked.tsize.is_some(),
                _ => false,
            };
            if !valid {
                let detail = format!("{name}={value}");
                self.outbox
                    .push_back(Packet::error(ErrorCode::OptionRefused, &detail));
                self.fail(ReceiveError::BadOack(detail));
                return;
            }
            let v = number.unwrap_or_default();
            match name.as_str() {
                "blksize" => self.block_size = v as usize,
                "windowsize" => self.window = v,
                "tsize" => self.tsize = Some(v),
                _ => {}
            }
        }
        if let Some(size) = self.tsize.filter(|&size| size > self.config.max_size) {
            let _ = size;
            self.outbox
                .push_back(Packet::error(ErrorCode::DiskFull, "file too large"));
            self.fail(ReceiveError::TooLarge(self.config.max_size));
            return;
        }
        self.oack = options;
        self.phase = Phase::Receiving;
        self.retries = 0;
        self.send_ack(now);
    }

    fn on_data(&mut self, block: u16, payload: &[u8], now: Instant) {
        let ahead = block.wrapping_sub(self.expected as u16);
        if ahead == 0 {
            if payload.len() > self.block_size {
                self.fail(ReceiveError::OversizedBlock {
                    got: payload.len(),
                    block_size: self.block_size,
                });
                return;
            }
            if (self.data.len() + payload.len()) as u64 > self.config.max_size {
                self.outbox
                    .push_back(Packet::error(ErrorCode::DiskFull, "file too large"));
                self.fail(ReceiveError::TooLarge(self.config.max_size));
                return;
            }
            self.data.extend_from_slice(payload);
            self.expected += 1;
            self.received_in_window += 1;
            self.retries = 0;
            if payload.len() < self.block_size {
                self.send_ack(now);
                self.phase = Phase::Done;
                self.deadline = None;
                self.result = Some(Ok(()));
            } else if self.received_in_window >= self.window {
                self.received_in_window = 0;
                self.send_ack(now);
            } else {
                self.arm(now);
            }
        } else if ahead < 0x8000 {
            // A gap: tell the server where to restart, once per gap.
            if self.last_acked != Some(self.expected - 1) {
                self.received_in_window = 0;
                self.send_ack(now);
            }
        } else if Some(self.expected - 1) == self.last_acked && block == (self.expected - 1) as u16
        {
            // The server is repeating the window we acknowledged: our ACK
            // was lost. Repeat it once, at the window's last block.
            self.send_ack(now);
        }
    }

    /// Acknowledges everything received in order so far.
    fn send_ack(&mut self, now: Instant) {
        let block = self.expected - 1;
        self.last_acked = Some(block);
        self.outbox.push_back(Packet::Ack(block as u16).encode());
        self.arm(now);
    }

    fn arm(&mut self, now: Instant) {
        self.deadline = Some(now + self.config.timeout);
    }

    fn fail(&mut self, error: ReceiveError) {
        self.phase = Phase::Done;
        self.deadline = None;
        self.result = Some(Err(error));
    }
}
