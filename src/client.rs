//! A TFTP client: the [`Receive`] state machine on a tokio socket. Used by
//! `tftproxy get` for diagnosis, by the tests and by the benchmark.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::tftp::options::Requested;
use crate::tftp::packet::Mode;
use crate::tftp::receive::{Receive, ReceiveConfig, ReceiveError};

/// What to ask for.
#[derive(Clone, Debug)]
pub struct GetOptions {
    pub block_size: Option<u16>,
    pub window_size: Option<u16>,
    /// Ask for the size (`tsize 0`).
    pub tsize: bool,
    /// The `timeout` option to request, in seconds.
    pub timeout_option: Option<u8>,
    /// Our own retransmit time-out.
    pub retransmit: Duration,
    pub max_retries: u32,
    pub mode: Mode,
    pub max_size: u64,
}

impl Default for GetOptions {
    fn default() -> Self {
        GetOptions {
            block_size: None,
            window_size: None,
            tsize: false,
            timeout_option: None,
            retransmit: Duration::from_secs(1),
            max_retries: 5,
            mode: Mode::Octet,
            max_size: 4 << 30,
        }
    }
}

/// A finished download.
#[derive(Clone, Debug)]
pub struct Download {
    pub data: Vec<u8>,
    /// Options the server acknowledged.
    pub negotiated: Vec<(String, String)>,
    pub tsize: Option<u64>,
    pub block_size: usize,
    pub window_size: u64,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The kernel reported ICMP port unreachable: nothing listens there.
    #[error("{server} refused the request: nothing listens on that port (ICMP port unreachable)")]
    Refused { server: SocketAddr },
    #[error(transparent)]
    Transfer(#[from] ReceiveError),
}

impl GetError {
    /// The server's TFTP error, if that is why the download failed.
    pub fn server_error(&self) -> Option<(u16, &str)> {
        match self {
            GetError::Transfer(ReceiveError::Server { code, message }) => Some((*code, message)),
            _ => None,
        }
    }
}

/// Downloads `name` from `server`.
pub async fn get(
    server: SocketAddr,
    name: &str,
    options: &GetOptions,
) -> Result<Download, GetError> {
    let any: IpAddr = if server.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    report_refusals(&socket, server.is_ipv4());
    get_with_socket(&socket, server, name, options).await
}

/// Asks the kernel to report ICMP errors on this unconnected socket
/// (`IP_RECVERR` / `IPV6_RECVERR`): without it Linux drops a port
/// unreachable, and a `get` to a closed port waits out every retry. With it
/// the next receive fails with `ECONNREFUSED`. Best effort: without it the
/// download still works, it only reports a closed port late.
fn report_refusals(socket: &UdpSocket, ipv4: bool) {
    use nix::sys::socket::{setsockopt, sockopt};
    let set = if ipv4 {
        setsockopt(socket, sockopt::Ipv4RecvErr, &true)
    } else {
        setsockopt(socket, sockopt::Ipv6RecvErr, &true)
    };
    if let Err(error) = set {
        tracing::debug!(%error, "cannot ask for ICMP errors on the client socket");
    }
}

/// Downloads `name` from `server` using an already bound socket.
pub async fn get_with_socket(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &str,
    options: &GetOptions,
) -> Result<Download, GetError> {
    let started = Instant::now();
    let config = ReceiveConfig {
        mode: options.mode,
        options: Requested {
            block_size: options.block_size,
            window_size: options.window_size,
            timeout_secs: options.timeout_option,
            tsize: options.tsize.then_some(0),
        },
        timeout: options.retransmit,
        max_retries: options.max_retries,
        max_size: options.max_size,
    };
    let mut receive = Receive::start(name, config, started);
    // One byte more than the largest valid DATA, so an oversized block is
    // seen as such instead of being silently truncated.
    let largest = usize::from(options.block_size.unwrap_or(512).max(512)) + 4;
    let mut buf = vec![0u8; largest + 1];
    let mut connected = false;
    let exchanged = exchange(socket, server, &mut receive, &mut buf, &mut connected).await;
    if connected {
        // The caller may use the socket again, for another server port.
        disconnect(socket);
    }
    if let Err(error) = exchanged {
        if error.kind() == io::ErrorKind::ConnectionRefused {
            return Err(GetError::Refused { server });
        }
        return Err(error.into());
    }
    match receive.result().cloned() {
        Some(Ok(())) => Ok(Download {
            negotiated: receive.negotiated().to_vec(),
            tsize: receive.tsize(),
            block_size: receive.block_size(),
            window_size: receive.window_size(),
            elapsed: started.elapsed(),
            data: match options.mode {
                Mode::Netascii => crate::tftp::netascii::decode(receive.data()),
                _ => receive.into_data(),
            },
        }),
        Some(Err(error)) => Err(error.into()),
        None => Err(ReceiveError::TimedOut.into()),
    }
}

/// Runs the download on the socket until it ends. The server answers from a
/// new port (its transfer ID); we lock onto the first one that answers from
/// the server's address and connect to it, so the kernel filters every other
/// sender and each send skips the route lookup.
async fn exchange(
    socket: &UdpSocket,
    server: SocketAddr,
    receive: &mut Receive,
    buf: &mut [u8],
    connected: &mut bool,
) -> io::Result<()> {
    let mut peer: Option<SocketAddr> = None;
    // One lazy timer, re-armed only when it fired or the deadline came
    // earlier (see the server's transfer loop): no timer work per block.
    let timer = tokio::time::sleep_until(receive.deadline().unwrap_or_else(Instant::now).into());
    tokio::pin!(timer);
    loop {
        while let Some(datagram) = receive.poll_transmit() {
            if *connected {
                socket.send(&datagram).await?;
            } else {
                socket.send_to(&datagram, peer.unwrap_or(server)).await?;
            }
        }
        if receive.result().is_some() {
            break;
        }
        let Some(deadline) = receive.deadline() else {
            break;
        };
        if timer.is_elapsed() || deadline < timer.deadline().into_std() {
            timer.as_mut().reset(deadline.into());
        }
        tokio::select! {
            received = socket.recv_from(buf) => {
                let (n, from) = match received {
                    Ok(r) => r,
                    // The server's port is closed (reported with
                    // `IP_RECVERR`, or on a connected socket): before any
                    // answer, that is the end; later, a stray from an
                    // earlier send — keep waiting.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        if peer.is_none() {
                            return Err(e);
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                match peer {
                    Some(p) if p != from => continue,
                    None if from.ip() != server.ip() => continue,
                    _ => {}
                }
                receive.handle_datagram(&buf[..n], Instant::now());
                if peer.is_none() && receive.has_answer() {
                    peer = Some(from);
                    *connected = socket.connect(from).await.is_ok();
                }
            }
            _ = &mut timer => receive.handle_timeout(Instant::now()),
        }
    }
    // Flush a final ERROR (e.g. refusing an OACK) before reporting.
    while let Some(datagram) = receive.poll_transmit() {
        let _ = socket.send_to(&datagram, peer.unwrap_or(server)).await;
    }
    Ok(())
}

/// Dissolves a UDP socket's association (`connect` to `AF_UNSPEC`), so it
/// receives from anyone again.
fn disconnect(socket: &UdpSocket) {
    // Failure leaves the socket connected: the caller then only hears from
    // the peer it was connected to, which is what it asked for last.
    let _ = rustix::net::connect_unspec(socket);
}
