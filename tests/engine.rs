//! The transfer engine without sockets: a sending [`Transfer`] and a
//! receiving [`Receive`] joined by a simulated network that loses,
//! duplicates, delays and reorders datagrams, on a virtual clock.

mod support;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::rng::Rng;
use tftproxy::body::Body;
use tftproxy::tftp::options::{negotiate, Limits, Requested};
use tftproxy::tftp::packet::Packet;
use tftproxy::tftp::receive::{Receive, ReceiveConfig, ReceiveError};
use tftproxy::tftp::send::{Outcome, Transfer};

#[derive(Clone, Copy)]
struct Path {
    loss: u64,
    /// Extra loss on the client → server direction only (ACKs, RRQ).
    ack_loss: u64,
    duplicate: u64,
    /// Packets get a random extra delay up to this, which reorders them.
    jitter_ms: u64,
}

const CLEAN: Path = Path {
    loss: 0,
    ack_loss: 0,
    duplicate: 0,
    jitter_ms: 0,
};

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Reverse<(Instant, u64)>,
    to_server: bool,
    datagram: Vec<u8>,
}

struct Run {
    received: Result<Vec<u8>, ReceiveError>,
    server: Option<Outcome>,
    tsize: Option<u64>,
    negotiated: Vec<(String, String)>,
    server_packets: u64,
}

fn file(len: usize) -> Vec<u8> {
    let mut rng = Rng::new(len as u64 + 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

fn simulate(content: &[u8], options: Requested, limits: Limits, path: Path, seed: u64) -> Run {
    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let mut now = start;
    let config = ReceiveConfig {
        options,
        timeout: Duration::from_millis(500),
        max_retries: 8,
        ..Default::default()
    };
    let mut client = Receive::start("file.bin", config, now);
    let mut server: Option<Transfer<Body>> = None;
    let mut network = BinaryHeap::new();
    let mut sequence = 0u64;
    let mut server_packets = 0;
    let latency = Duration::from_millis(5);

    let mut send = |network: &mut BinaryHeap<InFlight>,
                    rng: &mut Rng,
                    now: Instant,
                    to_server: bool,
                    d: Vec<u8>| {
        if rng.chance(path.loss) || (to_server && rng.chance(path.ack_loss)) {
            return;
        }
        let copies = if rng.chance(path.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let jitter = if path.jitter_ms > 0 {
                rng.next() % path.jitter_ms
            } else {
                0
            };
            sequence += 1;
            let at = now + latency + Duration::from_millis(jitter);
            network.push(InFlight {
                at: Reverse((at, sequence)),
                to_server,
                datagram: d.clone(),
            });
        }
    };

    for _ in 0..5_000_000 {
        while let Some(d) = client.poll_transmit() {
            send(&mut network, &mut rng, now, true, d);
        }
        if let Some(t) = server.as_mut() {
            while let Some(d) = t.poll_transmit() {
                server_packets += 1;
                send(&mut network, &mut rng, now, false, d);
            }
        }
        let server_done = server.as_ref().is_none_or(|t| t.outcome().is_some());
        if client.result().is_some() && server_done && network.is_empty() {
            break;
        }
        // Next event: a delivery or the earliest deadline.
        let deadlines = [
            client.deadline(),
            server.as_ref().and_then(|t| t.deadline()),
        ];
        let next_deadline = deadlines.into_iter().flatten().min();
        let next_delivery = network.peek().map(|p| p.at.0 .0);
        let Some(next) = [next_deadline, next_delivery].into_iter().flatten().min() else {
            break;
        };
        now = next;
        if next_delivery == Some(next) {
            let InFlight {
                to_server,
                datagram,
                ..
            } = network.pop().unwrap();
            if std::env::var_os("TRACE").is_some() {
                eprintln!(
                    "{:>8?} {} {:?}",
                    now - start,
                    if to_server { "->S" } else { "->C" },
                    Packet::decode(&datagram).map(|p| match p {
                        Packet::Data { block, .. } => format!("DATA {block}"),
                        other => format!("{other:?}"),
                    })
                );
            }
            if to_server {
                match (Packet::decode(&datagram), server.as_mut()) {
                    (Ok(Packet::Rrq(request)), None) => {
                        let n = negotiate(&request.options, &limits, content.len() as u64);
                        let body = Body::from(Bytes::copy_from_slice(content));
                        server = Some(Transfer::start(body, &n, 6, now).unwrap());
                    }
                    // The driver ignores a repeated RRQ while the transfer runs.
                    (Ok(Packet::Rrq(_)), Some(_)) => {}
                    (_, Some(t)) => t.handle_datagram(&datagram, now),
                    (_, None) => {}
                }
            } else {
                client.handle_datagram(&datagram, now);
            }
        } else {
            client.handle_timeout(now);
            if let Some(t) = server.as_mut() {
                t.handle_timeout(now);
            }
        }
    }
    let tsize = client.tsize();
    let negotiated = client.negotiated().to_vec();
    let received = match client.result().cloned() {
        Some(Ok(())) => Ok(client.into_data()),
        Some(Err(e)) => Err(e),
        None => panic!("simulation did not finish"),
    };
    Run {
        received,
        server: server.and_then(|t| t.outcome().cloned()),
        tsize,
        negotiated,
        server_packets,
    }
}

fn limits(max_block_size: u16, max_window_size: u16) -> Limits {
    Limits {
        max_block_size,
        max_window_size,
        default_timeout: Duration::from_millis(500),
    }
}

fn asked(block_size: Option<u16>, window_size: Option<u16>) -> Requested {
    Requested {
        block_size,
        window_size,
        ..Default::default()
    }
}

#[test]
fn clean_path_transfers_every_size_byte_exact() {
    for len in [0, 1, 511, 512, 513, 1024, 100_000] {
        let content = file(len);
        let run = simulate(&content, Requested::default(), limits(1468, 16), CLEAN, 1);
        assert_eq!(run.received.unwrap(), content, "len {len}");
        assert_eq!(run.server, Some(Outcome::Completed));
    }
}

#[test]
fn every_block_size_from_8_to_65464_works() {
    let content = file(200_000);
    for block_size in [8, 9, 511, 512, 513, 1428, 1468, 8192, 65_464] {
        let run = simulate(
            &content,
            asked(Some(block_size), None),
            limits(65_464, 16),
            CLEAN,
            2,
        );
        assert_eq!(run.received.unwrap(), content, "blksize {block_size}");
        assert_eq!(
            run.negotiated,
            vec![("blksize".to_string(), block_size.to_string())]
        );
    }
}

#[test]
fn every_window_size_from_1_to_64_works() {
    let content = file(150_000);
    for window in 1..=64 {
        let run = simulate(
            &content,
            asked(Some(1024), Some(window)),
            limits(1468, 64),
            CLEAN,
            3,
        );
        assert_eq!(run.received.unwrap(), content, "windowsize {window}");
        // With no loss nothing is sent twice.
        assert_eq!(
            run.server_packets,
            1 + content.len() as u64 / 1024 + 1,
            "windowsize {window}"
        );
    }
}

#[test]
fn the_server_caps_what_the_client_asks() {
    let content = file(10_000);
    let run = simulate(
        &content,
        asked(Some(8192), Some(64)),
        limits(1468, 16),
        CLEAN,
        4,
    );
    assert_eq!(run.received.unwrap(), content);
    assert_eq!(
        run.negotiated,
        vec![
            ("blksize".into(), "1468".into()),
            ("windowsize".into(), "16".into())
        ]
    );
}

#[test]
fn tsize_zero_is_answered_with_the_real_size() {
    let content = file(77_777);
    let options = Requested {
        tsize: Some(0),
        ..Default::default()
    };
    let run = simulate(&content, options, limits(1468, 16), CLEAN, 5);
    assert_eq!(run.tsize, Some(77_777));
    assert_eq!(run.received.unwrap(), content);
}

#[test]
fn block_numbers_roll_over_past_65535() {
    // 70,000 blocks of 8 bytes: the wire number wraps once.
    let content = file(70_000 * 8 + 5);
    let run = simulate(
        &content,
        asked(Some(8), Some(16)),
        limits(1468, 16),
        CLEAN,
        6,
    );
    assert_eq!(run.received.unwrap(), content);
    // And lock-step at the RFC 1350 default block size, over 32 MiB.
    let content = file(65_536 * 512 + 100);
    let run = simulate(&content, Requested::default(), limits(1468, 16), CLEAN, 7);
    assert_eq!(run.received.unwrap(), content);
}

#[test]
fn loss_duplication_and_reordering_are_survived() {
    let content = file(300_000);
    let hostile = Path {
        loss: 10,
        duplicate: 10,
        jitter_ms: 20,
        ..CLEAN
    };
    for seed in 1..=40 {
        for (block_size, window) in [
            (None, None),
            (Some(1468), None),
            (Some(1468), Some(8)),
            (Some(512), Some(64)),
        ] {
            let run = simulate(
                &content,
                asked(block_size, window),
                limits(1468, 64),
                hostile,
                seed,
            );
            match run.received {
                Ok(data) => assert!(
                    data == content,
                    "corrupt: seed {seed} {block_size:?} {window:?}"
                ),
                Err(e) => panic!("seed {seed} {block_size:?} {window:?}: {e}"),
            }
        }
    }
}

#[test]
fn lost_acks_alone_are_recovered() {
    let content = file(50_000);
    let lossy = Path {
        ack_loss: 30,
        ..CLEAN
    };
    for seed in 1..=20 {
        let run = simulate(
            &content,
            asked(Some(1024), Some(4)),
            limits(1468, 16),
            lossy,
            seed,
        );
        assert_eq!(run.received.unwrap(), content, "seed {seed}");
    }
}

#[test]
fn a_dead_path_makes_both_sides_give_up() {
    let content = file(5000);
    let dead = Path { loss: 100, ..CLEAN };
    let run = simulate(&content, Requested::default(), limits(1468, 16), dead, 9);
    assert_eq!(run.received.unwrap_err(), ReceiveError::TimedOut);
    assert_eq!(run.server, None, "the RRQ never arrived");
}
