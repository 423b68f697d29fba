//! The memory budget of a real daemon process (README, "Memory"): its
//! resident memory, read from `/proc/<pid>/status`, stays under the bound the
//! documented formula gives, (a) under 2,000 unacknowledged requests for a
//! 256 KiB local file (one spoofed burst: they held 2,000 copies of the file,
//! 537 MB) and (b) under a flood of tiny distinct files fetched and cached
//! (the cache counted their bodies only: 42,500 of them showed 1.4 MB while
//! the process grew by 147 MB).
//!
//! The bounds are the README's figures with a wide margin (other tests and
//! engineers share the machine), and a debug build is bigger than a release
//! one: they catch memory that grows with the file or with the entries, not
//! a few MiB.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use tftproxy_testkit::http_cluster::HttpCluster;

use super::*;
use crate::support::process::{free_port, serve_by_hand, Reaper};

const MIB: u64 = 1 << 20;
/// The daemon's resident memory before any request, with margin (README:
/// about 19 MiB measured for a debug build).
const BASE: u64 = 48 * MIB;
/// What the allocator keeps beyond what is in use (fragmentation, thread
/// caches): the bounds below are on the growth from the base, plus this.
const SLACK: u64 = 8 * MIB;
/// What one running transfer costs beyond its file, with margin, when it
/// holds a window of 16 blocks of 1468 bytes (README: about 33 KiB
/// measured).
const PER_TRANSFER: u64 = 48 << 10;
/// What one location entry costs, with margin (README: about 1 KiB).
const PER_LOCATION: u64 = 2 << 10;

/// A `tftproxy serve` process; killed when dropped (a failed assertion
/// leaves no daemon).
struct Process(Reaper);

impl Process {
    fn serve(work: &Path, config: &str) -> Process {
        let path = work.join("tftproxy.toml");
        std::fs::write(&path, config).unwrap();
        let child = serve_by_hand(&path)
            .env("RUST_LOG", "error")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Process(Reaper(child))
    }

    /// A field of `/proc/<pid>/status` in bytes: `VmRSS` (now) or `VmHWM`
    /// (the peak).
    fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"));
        kib << 10
    }

    fn assert_running(&mut self) {
        assert!(self.0.try_wait().unwrap().is_none(), "tftproxy exited");
    }
}

/// A std socket on 127.0.0.1 that waits at most `wait` for a datagram.
fn udp(wait: Duration) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(wait)).unwrap();
    socket
}

/// An RRQ for `name` asking the largest block and window the defaults grant
/// (what costs a transfer most: a window of buffers).
fn rrq_largest_window(name: &str) -> Vec<u8> {
    Packet::Rrq(Request {
        filename: name.into(),
        mode: Mode::Octet,
        options: vec![
            ("blksize".into(), "1468".into()),
            ("windowsize".into(), "16".into()),
        ],
    })
    .encode()
}

/// Whether `socket`, having asked for a file with options, receives the
/// OACK, acknowledges it, and receives DATA block 1: the transfer then holds
/// its first window, unacknowledged.
fn got_first_window(socket: &UdpSocket) -> bool {
    let mut buf = [0u8; 2048];
    let Ok((n, transfer)) = socket.recv_from(&mut buf) else {
        return false;
    };
    if !matches!(Packet::decode(&buf[..n]), Ok(Packet::Oack(_))) {
        return false;
    }
    socket.send_to(&Packet::Ack(0).encode(), transfer).unwrap();
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => matches!(Packet::decode(&buf[..n]), Ok(Packet::Data { block: 1, .. })),
        Err(_) => false,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// A daemon serving `file` (`len` bytes made by `content`) from a local
/// root to `requests` transfers at once; returns it, its TFTP address and its
/// resident memory once it answers.
fn serve_local(
    work: &Path,
    file: &str,
    content: Vec<u8>,
    requests: u64,
) -> (Process, SocketAddr, u64) {
    let root = work.join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join(file), content).unwrap();
    let tftp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Every request from one address: the per-client limits are lifted so
    // that the burst reaches `max_transfers` (what spoofed sources reach);
    // a long retransmit time-out keeps every transfer waiting meanwhile.
    let mut daemon = Process::serve(
        work,
        &format!(
            "[tftp]\nlisten = [\"{tftp}\"]\nroot = \"{}\"\nmax_transfers = {requests}\n\
             max_transfers_per_client = {requests}\nclient_request_rate = 1000000\n\
             retransmit_timeout = \"30s\"\n",
            root.display()
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = udp(Duration::from_millis(200));
        probe.send_to(&rrq("missing.xml"), tftp).unwrap();
        if probe.recv_from(&mut [0u8; 512]).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never answered");
        daemon.assert_running();
    }
    let base = daemon.memory("VmRSS");
    assert!(base <= BASE, "base RSS {:.1} MiB", mib(base));
    (daemon, tftp, base)
}

#[test]
fn unacknowledged_requests_for_a_local_file_do_not_copy_it_per_transfer() {
    const REQUESTS: u64 = 2_000;
    const FILE: u64 = 256 << 10;
    let work = tempfile::tempdir().unwrap();
    let content = tftproxy_testkit::pattern(FILE as usize, 1);
    let (mut daemon, tftp, base) = serve_local(work.path(), "big.cnf.xml", content, REQUESTS);

    let sockets: Vec<UdpSocket> = (0..REQUESTS)
        .map(|_| udp(Duration::from_secs(20)))
        .collect();
    for socket in &sockets {
        socket
            .send_to(&rrq_largest_window("big.cnf.xml"), tftp)
            .unwrap();
    }
    // Every request got its first window, and none acknowledged a block: all
    // 2,000 transfers are held at once.
    let answered = sockets.iter().filter(|s| got_first_window(s)).count() as u64;
    assert_eq!(answered, REQUESTS, "not every request was answered");
    daemon.assert_running();
    let peak = daemon.memory("VmHWM");
    let per_transfer = peak.saturating_sub(base) / REQUESTS;
    eprintln!(
        "memory (a): base {:.1} MiB, peak {:.1} MiB with {REQUESTS} transfers of a \
         {} KiB file: {per_transfer} bytes per transfer",
        mib(base),
        mib(peak),
        FILE >> 10
    );
    // README formula: base + max_transfers × per-transfer + the file once.
    let bound = base + REQUESTS * PER_TRANSFER + FILE + SLACK;
    assert!(
        peak <= bound,
        "peak RSS {:.1} MiB over the bound {:.1} MiB",
        mib(peak),
        mib(bound)
    );
}

#[test]
fn netascii_transfers_hold_no_converted_copy() {
    const REQUESTS: u64 = 200;
    const FILE: usize = 1 << 20;
    let work = tempfile::tempdir().unwrap();
    let text = (0..FILE)
        .map(|i| if i % 8 == 7 { b'\n' } else { b'x' })
        .collect();
    let (mut daemon, tftp, base) = serve_local(work.path(), "dial.txt", text, REQUESTS);

    let netascii = Packet::Rrq(Request {
        filename: "dial.txt".into(),
        mode: Mode::Netascii,
        options: Vec::new(),
    })
    .encode();
    let sockets: Vec<UdpSocket> = (0..REQUESTS)
        .map(|_| udp(Duration::from_secs(20)))
        .collect();
    for socket in &sockets {
        socket.send_to(&netascii, tftp).unwrap();
    }
    let mut buf = [0u8; 1024];
    let answered = sockets
        .iter()
        .filter(|s| {
            s.recv_from(&mut buf).is_ok_and(|(n, _)| {
                matches!(Packet::decode(&buf[..n]), Ok(Packet::Data { block: 1, .. }))
            })
        })
        .count() as u64;
    assert_eq!(answered, REQUESTS, "not every request was answered");
    daemon.assert_running();
    let peak = daemon.memory("VmHWM");
    eprintln!(
        "memory (c): base {:.1} MiB, peak {:.1} MiB with {REQUESTS} netascii transfers \
         of a {} KiB file: {} bytes per transfer",
        mib(base),
        mib(peak),
        FILE >> 10,
        peak.saturating_sub(base) / REQUESTS
    );
    // A converted copy each would be 1.1 MiB per transfer.
    let bound = base + REQUESTS * PER_TRANSFER + SLACK;
    assert!(
        peak <= bound,
        "peak RSS {:.1} MiB over the bound {:.1} MiB",
        mib(peak),
        mib(bound)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tiny_cached_files_is_bounded_by_the_cache_settings() {
    const NAMES: usize = 20_000;
    const MAX_BYTES: u64 = MIB;
    const MAX_LOCATIONS: u64 = 1_000;
    let names: Vec<String> = (0..NAMES).map(|i| format!("flood-{i:06}.xml")).collect();
    let cluster =
        HttpCluster::with_files(names.iter().map(|n| (n.clone(), b"<x/>".to_vec()))).await;
    let work = tempfile::tempdir().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut daemon = Process::serve(
        work.path(),
        &format!(
            "[tftp]\nlisten = [\"127.0.0.1:{}\"]\n\n[http]\nlisten = [\"{http}\"]\n\n\
             [cache]\nmax_bytes = {MAX_BYTES}\nmax_locations = {MAX_LOCATIONS}\n\n\
             [[cluster]]\nid = \"c1\"\naddresses = [\"{}\"]\n",
            free_port(),
            cluster.base_url()
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&http, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "the HTTP front never answered");
        daemon.assert_running();
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = daemon.memory("VmRSS");

    let client = support::daemon::http_client(Duration::from_secs(20));
    let served = futures_count(&client, http, &names).await;
    assert_eq!(served, NAMES, "not every file was served");
    daemon.assert_running();
    let peak = daemon.memory("VmHWM");
    eprintln!(
        "memory (b): base {:.1} MiB, peak {:.1} MiB after {NAMES} tiny files \
         ({} bytes per file)",
        mib(base),
        mib(peak),
        peak.saturating_sub(base) / NAMES as u64
    );
    // README formula: base + cache.max_bytes + max_locations × per-entry.
    assert!(base <= BASE, "base RSS {:.1} MiB", mib(base));
    let bound = base + MAX_BYTES + MAX_LOCATIONS * PER_LOCATION + SLACK;
    assert!(
        peak <= bound,
        "peak RSS {:.1} MiB over the bound {:.1} MiB",
        mib(peak),
        mib(bound)
    );
}

/// Fetches every name over HTTP, 64 at a time; returns how many were 200.
async fn futures_count(client: &reqwest::Client, http: SocketAddr, names: &[String]) -> usize {
    let mut served = 0;
    for batch in names.chunks(64) {
        let fetches: Vec<_> = batch
            .iter()
            .map(|name| {
                let (client, url) = (client.clone(), format!("http://{http}/{name}"));
                tokio::spawn(async move {
                    match client.get(&url).send().await {
                        Ok(response) => response.status().as_u16() == 200,
                        Err(_) => false,
                    }
                })
            })
            .collect();
        for fetch in fetches {
            served += usize::from(fetch.await.unwrap());
        }
    }
    served
}
