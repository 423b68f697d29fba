//! A minimal TFTP responder, built only to find the machine's ceiling for
//! the boot-storm benchmark (issue 11): one UDP socket for every transfer,
//! the files of a root directory preloaded in memory, batched receives
//! (`recvmmsg`, through quinn-udp) and batched sends (`sendmmsg`, through
//! rustix, each DATA sent from the file's own bytes without a copy), no
//! timers and no retransmissions of its own. It answers `blksize`,
//! `windowsize` and `tsize` (RFC 2347/2348/7440/2349) with an OACK, so it
//! serves the same storms as the real servers, the firmware case included.
//!
//! What it leaves out is what a real server needs and the ceiling does not:
//! a transfer is resumed only by the client's own retransmitted ACK (so a
//! lost block costs the client its retransmit time-out), an abandoned
//! transfer stays in the table until its client's address sends again, no
//! ERROR 5 for strangers, no paths below the root, no write requests.
//!
//! `reference ROOT HOST:PORT` (`benches/run.sh` builds it with
//! `cargo build --release --bench reference` and starts it as the server
//! named `reference`).

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use quinn_udp::{RecvMeta, UdpSocketState, BATCH_SIZE};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per `sendmmsg` call.
const SEND_BATCH: usize = 64;
/// Largest datagram read (a request is far smaller; GRO may join several).
const RECV_BUFFER: usize = 64 * 1024;
/// The largest block size RFC 2348 allows.
const MAX_BLKSIZE: usize = 65_464;

/// One transfer, keyed by the client's address and port.
struct Transfer {
    file: Arc<[u8]>,
    blksize: usize,
    window: u64,
    /// Blocks the client has acknowledged (block numbers count from 1).
    acked: u64,
    /// The highest block sent so far.
    sent: u64,
    /// The number of the last block (which is shorter than `blksize`).
    last: u64,
}

/// A datagram to send: a header (opcode and block, or a whole OACK/ERROR)
/// and, for DATA, a slice of a file.
struct Out {
    to: SocketAddr,
    head: Head,
    body: Option<(Arc<[u8]>, usize, usize)>,
}

enum Head {
    Data([u8; 4]),
    Other(Vec<u8>),
}

impl Head {
    fn bytes(&self) -> &[u8] {
        match self {
            Head::Data(h) => h,
            Head::Other(v) => v,
        }
    }
}

struct Responder {
    files: HashMap<String, Arc<[u8]>>,
    transfers: HashMap<SocketAddr, Transfer>,
    out: Vec<Out>,
}

impl Responder {
    fn handle(&mut self, from: SocketAddr, packet: &[u8]) {
        if packet.len() < 4 {
            return;
        }
        match u16::from_be_bytes([packet[0], packet[1]]) {
            1 => self.request(from, &packet[2..]),
            2 => self.error(from, 2, "read only"),
            4 => self.ack(from, u16::from_be_bytes([packet[2], packet[3]])),
            5 => {
                self.transfers.remove(&from);
            }
            _ => {}
        }
    }

    /// A read request (a repeated one starts the transfer again).
    fn request(&mut self, from: SocketAddr, body: &[u8]) {
        let mut fields = body.split(|&b| b == 0);
        let (Some(name), Some(_mode)) = (fields.next(), fields.next()) else {
            return self.error(from, 4, "malformed request");
        };
        let name = String::from_utf8_lossy(name);
        let Some(file) = self.files.get(name.trim_start_matches('/')).cloned() else {
            return self.error(from, 1, "file not found");
        };
        let (mut blksize, mut window) = (512usize, 1u64);
        let mut oack = Vec::new();
        while let (Some(key), Some(value)) = (fields.next(), fields.next()) {
            let key = String::from_utf8_lossy(key).to_ascii_lowercase();
            let Some(value) = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            let answer = match key.as_str() {
                "blksize" if value >= 8 => {
                    blksize = (value as usize).min(MAX_BLKSIZE);
                    blksize as u64
                }
                "windowsize" if value >= 1 => {
                    window = value.min(65_535);
                    window
                }
                "tsize" => file.len() as u64,
                _ => continue,
            };
            oack.extend_from_slice(key.as_bytes());
            oack.push(0);
            oack.extend_from_slice(answer.to_string().as_bytes());
            oack.push(0);
        }
        let transfer = Transfer {
            last: (file.len() / blksize) as u64 + 1,
            file,
            blksize,
            window,
            acked: 0,
            sent: 0,
        };
        self.transfers.insert(from, transfer);
        if oack.is_empty() {
            self.send_window(from);
        } else {
            let mut head = vec![0, 6];
            head.extend_from_slice(&oack);
            self.out.push(Out {
                to: from,
                head: Head::Other(head),
                body: None,
            });
        }
    }

    /// An acknowledgement: the transfer ends at the last block, otherwise
    /// the next window (or, for a repeated ACK, the same one again) goes out.
    fn ack(&mut self, from: SocketAddr, block: u16) {
        let Some(t) = self.transfers.get_mut(&from) else {
            return;
        };
        // Block numbers wrap at 65,536: the acknowledged block is the one
        // at or after `acked` with these low 16 bits.
        let acked = t.acked + u64::from(block.wrapping_sub(t.acked as u16));
        if acked > t.sent {
            return;
        }
        if acked == t.last {
            self.transfers.remove(&from);
            return;
        }
        t.acked = acked;
        self.send_window(from);
    }

    fn send_window(&mut self, to: SocketAddr) {
        let Some(t) = self.transfers.get_mut(&to) else {
            return;
        };
        let end = (t.acked + t.window).min(t.last);
        for block in t.acked + 1..=end {
            let start = ((block - 1) as usize * t.blksize).min(t.file.len());
            let stop = (start + t.blksize).min(t.file.len());
            let number = (block as u16).to_be_bytes();
            self.out.push(Out {
                to,
                head: Head::Data([0, 3, number[0], number[1]]),
                body: Some((t.file.clone(), start, stop)),
            });
        }
        t.sent = end;
    }

    fn error(&mut self, to: SocketAddr, code: u16, message: &str) {
        let mut head = vec![0, 5];
        head.extend_from_slice(&code.to_be_bytes());
        head.extend_from_slice(message.as_bytes());
        head.push(0);
        self.out.push(Out {
            to,
            head: Head::Other(head),
            body: None,
        });
    }
}

/// Every regular file directly in `root`, read into memory.
fn load_files(root: &Path) -> io::Result<HashMap<String, Arc<[u8]>>> {
    let mut files = HashMap::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            files.insert(name, Arc::from(std::fs::read(entry.path())?));
        }
    }
    Ok(files)
}

fn bind(addr: SocketAddr) -> io::Result<(UdpSocket, UdpSocketState)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // A storm's requests arrive at once: a large queue (forced past
    // net.core.rmem_max when we may), as every server in the run gets.
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, 16 << 20).is_err() {
        let _ = socket.set_recv_buffer_size(16 << 20);
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(socket.into())?;
    let state = UdpSocketState::new((&socket).into())?;
    Ok((socket, state))
}

/// One `sendmmsg` call for up to [`SEND_BATCH`] datagrams; how many left.
fn send_many(socket: &UdpSocket, chunk: &[Out]) -> io::Result<usize> {
    use rustix::net::{addr::SocketAddrArg, MMsgHdr, SendAncillaryBuffer, SendFlags};
    let addrs: Vec<_> = chunk.iter().map(|o| o.to.as_any()).collect();
    let iovs: Vec<[IoSlice<'_>; 2]> = chunk
        .iter()
        .map(|o| {
            let body = o.body.as_ref().map_or(&[][..], |(f, a, b)| &f[*a..*b]);
            [IoSlice::new(o.head.bytes()), IoSlice::new(body)]
        })
        .collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = chunk
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut messages: Vec<MMsgHdr<'_>> = addrs
        .iter()
        .zip(&iovs)
        .zip(controls.iter_mut())
        .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
        .collect();
    Ok(rustix::net::sendmmsg(
        socket,
        &mut messages,
        SendFlags::empty(),
    )?)
}

async fn send_all(socket: &UdpSocket, out: &[Out]) -> io::Result<()> {
    let mut done = 0;
    while done < out.len() {
        let chunk = &out[done..out.len().min(done + SEND_BATCH)];
        match socket.try_io(Interest::WRITABLE, || send_many(socket, chunk)) {
            Ok(sent) => done += sent.max(1),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
            // Only the first datagram failed (e.g. an unreachable
            // family): skip it, as a lost datagram.
            Err(_) => done += 1,
        }
    }
    Ok(())
}

async fn serve(root: &Path, addr: SocketAddr) -> io::Result<()> {
    let files = load_files(root)?;
    let (socket, state) = bind(addr)?;
    eprintln!(
        "reference: {} files from {} on {}",
        files.len(),
        root.display(),
        socket.local_addr()?
    );
    let mut responder = Responder {
        files,
        transfers: HashMap::new(),
        out: Vec::new(),
    };
    let mut buffers = vec![vec![0u8; RECV_BUFFER]; BATCH_SIZE];
    let mut meta = vec![RecvMeta::default(); BATCH_SIZE];
    loop {
        socket.readable().await?;
        loop {
            let mut slices: Vec<IoSliceMut<'_>> =
                buffers.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            let received = match socket.try_io(Interest::READABLE, || {
                state.recv((&socket).into(), &mut slices, &mut meta)
            }) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // E.g. an ICMP error queued on the socket: wait for more.
                Err(_) => break,
            };
            for (m, buffer) in meta.iter().zip(&buffers).take(received) {
                let stride = m.stride.max(1);
                for packet in buffer[..m.len].chunks(stride) {
                    responder.handle(m.addr, packet);
                }
            }
            send_all(&socket, &responder.out).await?;
            responder.out.clear();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(root), Some(addr)) = (args.first(), args.get(1)) else {
        eprintln!("usage: reference ROOT HOST:PORT");
        std::process::exit(2);
    };
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!("reference: {addr}: not an address");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime");
    if let Err(e) = runtime.block_on(serve(Path::new(root), addr)) {
        eprintln!("reference: {e}");
        std::process::exit(1);
    }
}
