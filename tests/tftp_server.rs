//! The TFTP server on loopback sockets, driven by the library client:
//! sizes, families, concurrency, refusals, source addresses, a lossy path
//! and graceful shutdown.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::daemon::{TestDaemon, TestDaemonBuilder};
use support::pattern;
use tftproxy::client::{get, GetError, GetOptions};
use tftproxy::tftp::packet::{Mode, Packet, Request};
use tftproxy::front::tftp::NETASCII_MAX;
use tokio::net::UdpSocket;

/// TFTP on 127.0.0.1 and ::1, serving a temporary root.
fn tftp_server() -> TestDaemonBuilder {
    TestDaemon::builder().tftp_ipv6()
}

fn quick() -> GetOptions {
    GetOptions {
        retransmit: Duration::from_millis(300),
        max_retries: 10,
        ..Default::default()
    }
}

fn server_error(result: Result<tftproxy::client::Download, GetError>) -> (u16, String) {
    match result {
        Err(e) => {
            let (code, message) = e
                .server_error()
                .unwrap_or_else(|| panic!("not a server error: {e}"));
            (code, message.to_owned())
        }
        Ok(d) => panic!("expected an error, got {} bytes", d.data.len()),
    }
}

#[tokio::test]
async fn files_of_every_interesting_size_arrive_byte_exact_over_v4_and_v6() {
    let sizes = [0usize, 511, 512, 513, 1 << 20];
    let files: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .map(|&n| (format!("f{n}"), pattern(n, n as u64 + 7)))
        .collect();
    let server = tftp_server().files(&files).start().await;
    for addr in [server.tftp_v4(), server.tftp_v6()] {
        for (name, content) in &files {
            for options in [
                quick(),
                GetOptions {
                    block_size: Some(1468),
                    tsize: true,
                    ..quick()
                },
                GetOptions {
                    block_size: Some(1024),
                    window_size: Some(8),
                    ..quick()
                },
            ] {
                let download = get(addr, name, &options).await.unwrap();
                assert!(download.data == *content, "{name} via {addr} {options:?}");
                if options.tsize {
                    assert_eq!(download.tsize, Some(content.len() as u64));
                }
            }
        }
    }
}

#[tokio::test]
async fn a_file_of_more_than_65535_blocks_rolls_over_intact() {
    let content = pattern(65_535 * 512 + 4097, 3);
    let server = tftp_server().file("big.bin", &content).start().await;
    let addr = server.tftp_v4();
    // Lock-step at 512 bytes: the block number wraps once.
    let plain = get(addr, "big.bin", &quick()).await.unwrap();
    assert!(plain.data == content);
    let windowed = GetOptions {
        block_size: Some(512),
        window_size: Some(16),
        ..quick()
    };
    assert!(get(addr, "big.bin", &windowed).await.unwrap().data == content);
}

#[tokio::test]
async fn names_are_found_with_a_leading_slash_backslashes_and_other_case() {
    let server = tftp_server()
        .file("Desktops/320x212x12/List.xml", b"list")
        .start()
        .await;
    for name in [
        "Desktops/320x212x12/List.xml",
        "/Desktops/320x212x12/List.xml",
        "desktops\\320X212X12\\list.XML",
    ] {
        assert_eq!(
            get(server.tftp_v4(), name, &quick()).await.unwrap().data,
            b"list",
            "{name}"
        );
    }
}

#[tokio::test]
async fn traversal_attempts_are_refused_with_access_violation() {
    let server = tftp_server().file("ok.txt", b"ok").start().await;
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(outside.path(), b"secret").unwrap();
    std::os::unix::fs::symlink(outside.path(), server.root().join("escape")).unwrap();
    for name in [
        "../etc/passwd",
        "..\\..\\etc\\passwd",
        "a/../../etc/passwd",
        "/../etc/passwd",
        "//etc/passwd",
        "C:\\windows\\win.ini",
        "~root/.ssh/id_rsa",
        "escape",
    ] {
        let (code, _) = server_error(get(server.tftp_v4(), name, &quick()).await);
        assert_eq!(code, 2, "{name}");
    }
    // An absolute path is read relative to the root, where it is missing.
    assert_eq!(
        server_error(get(server.tftp_v4(), "/etc/passwd", &quick()).await).0,
        1
    );
}

#[tokio::test]
async fn a_missing_file_is_error_1() {
    let server = tftp_server().start().await;
    let (code, message) =
        server_error(get(server.tftp_v4(), "SEP001122334455.cnf.xml", &quick()).await);
    assert_eq!((code, message.as_str()), (1, "File not found"));
}

/// An octet-mode RRQ for `name` with `options`, encoded.
fn rrq(name: &str, options: &[(&str, &str)]) -> Vec<u8> {
    Packet::Rrq(Request {
        filename: name.into(),
        mode: Mode::Octet,
        options: options
            .iter()
            .map(|&(option, value)| (option.into(), value.into()))
            .collect(),
    })
    .encode()
}

async fn raw_request(server: SocketAddr, packet: Packet) -> Packet {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&packet.encode(), server).await.unwrap();
    let mut buf = [0u8; 1024];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    Packet::decode(&buf[..n]).unwrap()
}

#[tokio::test]
async fn write_requests_are_refused() {
    let server = tftp_server().start().await;
    let wrq = Packet::Wrq(Request {
        filename: "log.txt".into(),
        mode: Mode::Octet,
        options: vec![],
    });
    assert!(matches!(
        raw_request(server.tftp_v4(), wrq).await,
        Packet::Error { code: 2, .. }
    ));
}

#[tokio::test]
async fn netascii_converts_line_ends_and_octet_does_not() {
    let text = b"line one\nline two\n".to_vec();
    let server = tftp_server().file("t.txt", &text).start().await;
    let addr = server.tftp_v4();
    let ascii = GetOptions {
        mode: Mode::Netascii,
        ..quick()
    };
    assert_eq!(get(addr, "t.txt", &ascii).await.unwrap().data, text);
    let mut wire = quick();
    wire.tsize = true;
    let octet = get(addr, "t.txt", &wire).await.unwrap();
    assert_eq!(octet.data, text);
    // The netascii stream itself carries CR LF (its tsize is larger).
    let ascii_size = GetOptions {
        mode: Mode::Netascii,
        tsize: true,
        ..quick()
    };
    assert_eq!(
        get(addr, "t.txt", &ascii_size).await.unwrap().tsize,
        Some(text.len() as u64 + 2)
    );
}

#[tokio::test]
async fn netascii_is_refused_for_files_too_large_to_convert_in_memory() {
    let big = pattern(NETASCII_MAX as usize + 1, 4);
    let server = tftp_server().file("fw.loads", &big).start().await;
    let addr = server.tftp_v4();
    let ascii = GetOptions {
        mode: Mode::Netascii,
        ..quick()
    };
    let (code, message) = server_error(get(addr, "fw.loads", &ascii).await);
    assert_eq!(code, 0);
    assert!(message.contains("octet"), "{message}");
    // The same file in octet mode is served.
    assert!(get(addr, "fw.loads", &quick()).await.unwrap().data == big);
}

#[tokio::test]
async fn five_hundred_concurrent_transfers_all_complete() {
    let content = pattern(20_000, 11);
    let server = tftp_server()
        .file("f", &content)
        .tweak(|c| c.tftp.max_transfers = 600)
        .start()
        .await;
    let addr = server.tftp_v4();
    let mut tasks = Vec::new();
    for i in 0..500 {
        let options = if i % 2 == 0 {
            quick()
        } else {
            GetOptions {
                block_size: Some(1468),
                window_size: Some(4),
                ..quick()
            }
        };
        tasks.push(tokio::spawn(async move {
            get(addr, "f", &options).await.map(|d| d.data)
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(data) => assert!(data == content, "transfer {i} is corrupt"),
            Err(error) => panic!("transfer {i} failed: {error:?}"),
        }
    }
}

#[tokio::test]
async fn over_max_transfers_phones_are_told_to_retry_later() {
    let server = tftp_server()
        .file("f", pattern(100_000, 1))
        .tweak(|c| c.tftp.max_transfers = 2)
        .start()
        .await;
    let addr = server.tftp_v4();
    // Two transfers that stall: RRQs whose DATA we never acknowledge.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&rrq("f", &[]), addr).await.unwrap();
        let mut buf = [0u8; 1024];
        socket.recv_from(&mut buf).await.unwrap();
        holders.push(socket);
    }
    let (code, message) = server_error(get(addr, "f", &quick()).await);
    assert_eq!((code, message.as_str()), (0, "busy, retry later"));
    assert!(server
        .daemon
        .metrics()
        .encode()
        .contains("tftproxy_busy_rejections_total 1"));
}

#[tokio::test]
async fn a_repeated_rrq_from_the_same_port_starts_no_second_transfer() {
    let server = tftp_server().file("f", pattern(100, 1)).start().await;
    let addr = server.tftp_v4();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rrq = rrq("f", &[]);
    socket.send_to(&rrq, addr).await.unwrap();
    socket.send_to(&rrq, addr).await.unwrap();
    socket.send_to(&rrq, addr).await.unwrap();
    let mut sources = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(Ok((_, from))) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await
    {
        sources.push(from);
        if sources.len() > 5 {
            break;
        }
    }
    // One transfer: every DATA (first send and retransmissions) from one port.
    sources.dedup();
    assert_eq!(sources.len(), 1, "{sources:?}");
}

/// CPU time used by this thread. A `#[tokio::test]` runtime runs the
/// daemon's tasks and the client on the test's one thread, so other tests
/// running in parallel do not count.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[tokio::test]
async fn waiting_for_a_retransmit_time_out_uses_no_cpu() {
    // Both engines keep one timer per transfer and re-arm it lazily; a timer
    // left fired would turn every wait into a busy loop. Here the server
    // waits on a phone that stopped answering, and the client on a server
    // that never answers, for about 1.5 s.
    let server = tftp_server()
        .file("f", pattern(100_000, 3))
        .tweak(|c| {
            c.tftp.retransmit_timeout = Duration::from_millis(300);
            c.tftp.max_retries = 3;
        })
        .start()
        .await;
    let silent_phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let silent_server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let before = thread_cpu_time();
    silent_phone
        .send_to(&rrq("f", &[]), server.tftp_v4())
        .await
        .unwrap();
    let options = GetOptions {
        retransmit: Duration::from_millis(300),
        max_retries: 3,
        ..Default::default()
    };
    let download = get(silent_server.local_addr().unwrap(), "f", &options).await;
    assert!(download.is_err(), "nobody answered");
    // The server sends block 1 and 3 retransmissions (at 0.3, 0.9, 1.5 s).
    let mut buf = [0u8; 1024];
    let mut blocks = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while blocks < 4 {
        match tokio::time::timeout_at(until, silent_phone.recv_from(&mut buf)).await {
            Ok(received) => {
                received.unwrap();
                blocks += 1;
            }
            Err(_) => panic!("{blocks} DATA in 5 s, expected block 1 and 3 retransmissions"),
        }
    }
    let used = thread_cpu_time() - before;
    assert!(
        used < Duration::from_millis(400),
        "{used:?} of CPU in 1.5 s of waiting"
    );
}

#[tokio::test]
async fn replies_leave_from_the_address_the_request_came_to() {
    // A wildcard listener; the phone asks 127.0.0.2. The client accepts the
    // reply only from the address it asked, so success proves the source.
    let server = tftp_server()
        .file("f", pattern(5000, 2))
        .tweak(|c| c.tftp.listen = vec!["0.0.0.0:0".parse().unwrap()])
        .start()
        .await;
    let port = server.daemon.tftp_addrs()[0].port();
    for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        let addr = SocketAddr::new(ip.parse().unwrap(), port);
        let download = get(addr, "f", &quick())
            .await
            .unwrap_or_else(|e| panic!("{ip}: {e}"));
        assert_eq!(download.data.len(), 5000);
    }
}

#[tokio::test]
async fn shutdown_lets_running_transfers_finish_and_stops_accepting() {
    let content = pattern(3 << 20, 5);
    let server = tftp_server().file("big", &content).start().await;
    let addr = server.tftp_v4();
    let running = tokio::spawn(async move { get(addr, "big", &quick()).await.map(|d| d.data) });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let left = server.daemon.shutdown(Duration::from_secs(20)).await;
    assert_eq!(left, 0);
    assert!(running.await.unwrap().unwrap() == content);
    let late = GetOptions {
        retransmit: Duration::from_millis(100),
        max_retries: 2,
        ..Default::default()
    };
    assert!(
        get(addr, "big", &late).await.is_err(),
        "a stopped server must not answer"
    );
}

/// Per client: the relay's socket towards the server, and the server port
/// it last heard from (the transfer's ID).
type RelayPeer = (Arc<UdpSocket>, Arc<Mutex<SocketAddr>>);

/// A UDP relay between clients and the server that drops, duplicates and
/// delays (reorders) a share of the datagrams in each direction.
struct LossyRelay {
    addr: SocketAddr,
}

impl LossyRelay {
    async fn start(server: SocketAddr, percent: u64) -> LossyRelay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let rng = Arc::new(Mutex::new(0x9E37_79B9_7F4A_7C15u64));
        let chance = move |rng: &Mutex<u64>| {
            let mut x = rng.lock().unwrap();
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x % 100
        };
        // Sends through the impairments: drop, duplicate, delay.
        let impaired =
            move |socket: Arc<UdpSocket>, to: SocketAddr, data: Vec<u8>, rng: Arc<Mutex<u64>>| {
                let roll = chance(&rng);
                if roll < percent {
                    return;
                }
                let copies = if roll < 2 * percent { 2 } else { 1 };
                let delay = if chance(&rng) < percent {
                    Duration::from_millis(chance(&rng) % 30)
                } else {
                    Duration::ZERO
                };
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    for _ in 0..copies {
                        let _ = socket.send_to(&data, to).await;
                    }
                });
            };
        let peers: Arc<Mutex<HashMap<SocketAddr, RelayPeer>>> = Default::default();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, client)) = front.recv_from(&mut buf).await else {
                    continue;
                };
                let existing = peers.lock().unwrap().get(&client).cloned();
                let (upstream, target) = match existing {
                    Some(entry) => entry,
                    None => {
                        let upstream = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                        let target = Arc::new(Mutex::new(server));
                        peers
                            .lock()
                            .unwrap()
                            .insert(client, (upstream.clone(), target.clone()));
                        let (front, upstream2, target2, rng) =
                            (front.clone(), upstream.clone(), target.clone(), rng.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            while let Ok((n, from)) = upstream2.recv_from(&mut buf).await {
                                *target2.lock().unwrap() = from;
                                impaired(front.clone(), client, buf[..n].to_vec(), rng.clone());
                            }
                        });
                        (upstream, target)
                    }
                };
                let to = *target.lock().unwrap();
                impaired(upstream, to, buf[..n].to_vec(), rng.clone());
            }
        });
        LossyRelay { addr }
    }
}

#[tokio::test]
async fn a_hundred_transfers_through_a_lossy_path_complete_byte_exact() {
    let files: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("f{i}"), pattern(i * 7_919 + 100, i as u64)))
        .collect();
    let server = tftp_server()
        .files(&files)
        .tweak(|c| {
            c.tftp.retransmit_timeout = Duration::from_millis(200);
            c.tftp.max_retries = 12;
        })
        .start()
        .await;
    let relay = LossyRelay::start(server.tftp_v4(), 10).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (name, content) = files[i % files.len()].clone();
        let options = GetOptions {
            block_size: [None, Some(1468), Some(512)][i % 3],
            window_size: [None, Some(4), Some(8), Some(1)][i % 4],
            retransmit: Duration::from_millis(200),
            max_retries: 12,
            ..Default::default()
        };
        let addr = relay.addr;
        tasks.push(tokio::spawn(async move {
            let data = get(addr, &name, &options).await.map(|d| d.data);
            (name, options, content, data)
        }));
    }
    for task in tasks {
        let (name, options, content, data) = task.await.unwrap();
        let data = data.unwrap_or_else(|e| panic!("{name} {options:?}: {e}"));
        assert!(data == content, "{name} {options:?} corrupt");
    }
}

#[tokio::test]
async fn transfers_use_ports_inside_port_range() {
    let server = tftp_server()
        .file("f", pattern(100, 1))
        .tweak(|c| c.tftp.port_range = Some(50_100..=50_109))
        .start()
        .await;
    let addr = server.tftp_v4();
    for _ in 0..5 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&rrq("f", &[]), addr).await.unwrap();
        let mut buf = [0u8; 1024];
        let (_, from) = socket.recv_from(&mut buf).await.unwrap();
        assert!((50_100..=50_109).contains(&from.port()), "{from}");
        socket
            .send_to(&Packet::Ack(1).encode(), from)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_client_error_after_the_oack_ends_the_transfer_at_once() {
    let server = tftp_server()
        .file("f", pattern(10_000, 1))
        .tweak(|c| c.tftp.retransmit_timeout = Duration::from_millis(100))
        .start()
        .await;
    let addr = server.tftp_v4();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let blksize = rrq("f", &[("blksize", "1468")]);
    socket.send_to(&blksize, addr).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = socket.recv_from(&mut buf).await.unwrap();
    assert!(matches!(
        Packet::decode(&buf[..n]).unwrap(),
        Packet::Oack(_)
    ));
    socket
        .send_to(
            &Packet::Error {
                code: 8,
                message: "refused".into(),
            }
            .encode(),
            from,
        )
        .await
        .unwrap();
    // With a 100 ms retransmit time-out, a server that ignored the ERROR
    // would have repeated its OACK several times within a second.
    let quiet = tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf)).await;
    assert!(
        quiet.is_err(),
        "server kept sending after the client's ERROR"
    );
    assert!(server
        .daemon
        .metrics()
        .encode()
        .contains("tftproxy_transfers_total{outcome=\"client_error\"} 1"));
}

#[tokio::test]
async fn a_phone_that_reuses_its_port_gets_its_next_file_at_once() {
    let server = tftp_server()
        .file("a", b"first")
        .file("b", b"second")
        .tweak(|c| c.tftp.retransmit_timeout = Duration::from_secs(3))
        .start()
        .await;
    let addr = server.tftp_v4();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 1024];
    socket.send_to(&rrq("a", &[]), addr).await.unwrap();
    let (n, first_port) = socket.recv_from(&mut buf).await.unwrap();
    assert_eq!(
        Packet::decode(&buf[..n]).unwrap(),
        Packet::Data {
            block: 1,
            data: b"first".to_vec().into()
        }
    );
    // The next request leaves before the server has seen the last ACK of
    // the first transfer (as under load): it must be served, not ignored.
    socket.send_to(&rrq("b", &[]), addr).await.unwrap();
    socket
        .send_to(&Packet::Ack(1).encode(), first_port)
        .await
        .unwrap();
    let (n, second_port) =
        tokio::time::timeout(Duration::from_millis(1500), socket.recv_from(&mut buf))
            .await
            .expect("the second request was ignored")
            .unwrap();
    assert_ne!(first_port, second_port);
    assert_eq!(
        Packet::decode(&buf[..n]).unwrap(),
        Packet::Data {
            block: 1,
            data: b"second".to_vec().into()
        }
    );
}

#[tokio::test]
async fn the_client_can_reuse_one_socket_for_several_downloads() {
    let server = tftp_server()
        .file("a", b"first")
        .file("b", b"second")
        .start()
        .await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (name, content) in [("a", &b"first"[..]), ("b", b"second"), ("a", b"first")] {
        let download =
            tftproxy::client::get_with_socket(&socket, server.tftp_v4(), name, &quick())
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(download.data, content);
    }
}
