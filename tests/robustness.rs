//! A live daemon under a hail of garbage: 10,000 random, truncated and
//! hostile datagrams sent to the TFTP listener from several sockets (without
//! waiting for answers, but draining them), after which a normal transfer
//! must still succeed byte-exact, a missing name must still get ERROR 1, the
//! malformed-packet counter must have moved, and the daemon must still be
//! serving.
//!
//! The datagrams come from a seeded xorshift generator: the seed is printed,
//! and `ROBUSTNESS_SEED=<n> cargo test --test robustness -- --nocapture`
//! replays a run.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::daemon::TestDaemon;
use support::rng::Rng;
use tftproxy::client::{get, GetOptions};
use tokio::net::UdpSocket;

/// Datagrams sent in all.
const DATAGRAMS: usize = 10_000;
/// Sockets they are sent from.
const SENDERS: usize = 4;
const DEFAULT_SEED: u64 = 0x7466_7470_726f_7879; // "tftproxy"

/// The file a real client fetches after the storm.
const GOOD_NAME: &str = "SEP001122334455.cnf.xml";
/// Names the hostile requests use: the real file, missing ones, unsafe ones.
const NAMES: &[&str] = &[
    GOOD_NAME,
    "sep001122334455.CNF.XML",
    "/SEP001122334455.cnf.xml",
    "missing.bin",
    "../../etc/passwd",
    "..\\..\\etc\\shadow",
    "/etc/passwd",
    "a/../../b",
    "",
    ".",
    "..",
    "dir/",
    "\\\\server\\share",
    "ITLFile.tlv",
];
const MODES: &[&str] = &[
    "octet", "OCTET", "netascii", "NetAscii", "mail", "binary", "", "octet\0",
];
const OPTION_NAMES: &[&str] = &[
    "blksize",
    "BLKSIZE",
    "tsize",
    "timeout",
    "windowsize",
    "utimeout",
    "rollover",
    "multicast",
    "",
    "x",
];
const OPTION_VALUES: &[&str] = &[
    "0",
    "1",
    "7",
    "8",
    "512",
    "1468",
    "65464",
    "65465",
    "99999999999999999999999",
    "-1",
    "",
    "0x200",
    " 512",
    "1e3",
    "255",
    "256",
    "64",
    "65",
];

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// A syntactically plausible RRQ or WRQ with some options.
fn request(rng: &mut Rng, opcode: u8, options: usize) -> Vec<u8> {
    let mut out = vec![0, opcode];
    if rng.chance(10) {
        // A name of raw bytes (non-UTF-8, embedded controls).
        let len = rng.below(300);
        out.extend(rng.bytes(len).into_iter().map(|b| b.max(1)));
        out.push(0);
    } else {
        push_str(&mut out, rng.pick(NAMES));
    }
    push_str(&mut out, rng.pick(MODES));
    for _ in 0..options {
        push_str(&mut out, rng.pick(OPTION_NAMES));
        push_str(&mut out, rng.pick(OPTION_VALUES));
    }
    out
}

/// One hostile datagram; `kind` cycles through the families so each one
/// is well represented.
fn datagram(rng: &mut Rng, kind: usize) -> Vec<u8> {
    match kind % 8 {
        // Random bytes of random length, 0-1500.
        0 | 1 => {
            let len = rng.below(1501);
            rng.bytes(len)
        }
        // Every opcode (and invalid ones) followed by garbage.
        2 => {
            let opcode = rng.pick(&[0u16, 1, 2, 3, 4, 5, 6, 7, 8, 255, 256, 0xffff]);
            let len = rng.below(600);
            let mut out = opcode.to_be_bytes().to_vec();
            out.extend(rng.bytes(len));
            out
        }
        // A valid-looking RRQ cut short anywhere (0..len).
        3 => {
            let options = rng.below(6);
            let mut out = request(rng, 1, options);
            let cut = rng.below(out.len());
            out.truncate(cut);
            out
        }
        // An RRQ with a huge option list (far beyond any sane limit), maybe
        // cut to fit one Ethernet frame.
        4 => {
            let options = 30 + rng.below(700);
            let mut out = request(rng, 1, options);
            if rng.chance(50) {
                out.truncate(1500);
            }
            out
        }
        // Whole requests, read or write, with odd modes/options/names; a few
        // of them are valid and start a transfer nobody will acknowledge.
        5 => {
            let opcode = if rng.chance(70) { 1 } else { 2 };
            let options = rng.below(5);
            let mut out = request(rng, opcode, options);
            if rng.chance(20) {
                // Trailing garbage after the last NUL, or no final NUL.
                if rng.chance(50) {
                    out.pop();
                } else {
                    let len = rng.below(20);
                    out.extend(rng.bytes(len));
                }
            }
            out
        }
        // Well-formed DATA/ACK/ERROR/OACK strays on the request port.
        6 => {
            let opcode = 3 + rng.below(4) as u16;
            let mut out = opcode.to_be_bytes().to_vec();
            match opcode {
                3 => {
                    out.extend((rng.next() as u16).to_be_bytes());
                    let len = rng.below(1469);
                    out.extend(rng.bytes(len));
                }
                4 => out.extend((rng.next() as u16).to_be_bytes()),
                5 => {
                    out.extend((rng.below(9) as u16).to_be_bytes());
                    push_str(&mut out, "stray error");
                }
                _ => {
                    push_str(&mut out, "blksize");
                    push_str(&mut out, "1468");
                }
            }
            out
        }
        // Tiny datagrams (the classic 1-byte crash) and oversized ones
        // (bigger than any listener slot: jumbo and near-maximum UDP).
        _ => {
            if rng.chance(80) {
                let len = rng.below(4);
                rng.bytes(len)
            } else {
                let len = rng.pick(&[1501usize, 9000, 16_384, 65_000]);
                let mut out = rng.bytes(len);
                out[0] = 0;
                out[1] = 1;
                out
            }
        }
    }
}

fn seed() -> u64 {
    match std::env::var("ROBUSTNESS_SEED") {
        Ok(text) => text.parse().expect("ROBUSTNESS_SEED: an unsigned integer"),
        Err(_) => DEFAULT_SEED,
    }
}

/// The value of an unlabelled counter in a Prometheus text exposition.
fn counter(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

fn file_content() -> Vec<u8> {
    // 100 KiB and a bit: more than one window of 1468-byte blocks.
    let mut rng = Rng::new(42);
    rng.bytes(100 * 1024 + 77)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_ten_thousand_hostile_datagrams() {
    let content = file_content();
    let instance = TestDaemon::builder()
        .file(GOOD_NAME, &content)
        .file("ITLFile.tlv", b"itl")
        // Transfers started by the few valid requests are never acknowledged:
        // let them give up quickly (unless the request asked for a long
        // `timeout`; shutdown abandons those).
        .tweak(|config| {
            config.tftp.retransmit_timeout = Duration::from_millis(200);
            config.tftp.max_retries = 2;
        })
        .start()
        .await;
    let daemon = &instance.daemon;
    let server: SocketAddr = instance.tftp_v4();

    let seed = seed();
    println!("robustness: seed {seed} (ROBUSTNESS_SEED), listener {server}");

    // A few sockets; each drains whatever comes back so nothing blocks.
    let received = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let mut drains = Vec::new();
    for _ in 0..SENDERS {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let drain_socket = socket.clone();
        let counter = received.clone();
        drains.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                // ICMP errors (ConnectionRefused) and the like: keep going.
                if drain_socket.recv_from(&mut buf).await.is_ok() {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        senders.push(socket);
    }

    let mut rng = Rng::new(seed);
    let mut sent = 0usize;
    let mut send_errors = 0usize;
    for i in 0..DATAGRAMS {
        let datagram = datagram(&mut rng, i);
        let socket = &senders[i % SENDERS];
        match socket.send_to(&datagram, server).await {
            Ok(_) => sent += 1,
            // A 65,000-byte datagram may exceed a loopback limit somewhere;
            // that is the sender's problem, not the daemon's.
            Err(_) => send_errors += 1,
        }
        if i % 64 == 63 {
            // Let the listener breathe a little: the point is to feed it
            // garbage, not to measure how much the kernel drops.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Replies to the last datagrams.
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(
        "robustness: sent {sent} datagrams ({send_errors} send errors), {} replies drained",
        received.load(Ordering::Relaxed)
    );
    assert!(sent >= DATAGRAMS - 100, "only {sent} of {DATAGRAMS} sent");

    // The malformed ones were seen and counted.
    let metrics = daemon.metrics().encode();
    let malformed = counter(&metrics, "tftproxy_malformed_packets_total")
        .expect("tftproxy_malformed_packets_total in the metrics");
    println!("robustness: tftproxy_malformed_packets_total {malformed}");
    assert!(malformed > 0.0, "no malformed packet counted:\n{metrics}");

    // A normal transfer still succeeds, byte-exact: plain, and with options.
    let plain = get(server, GOOD_NAME, &GetOptions::default())
        .await
        .expect("a plain download after the storm");
    assert!(
        plain.data == content,
        "plain download differs from the file"
    );
    let options = GetOptions {
        block_size: Some(1468),
        window_size: Some(8),
        tsize: true,
        ..GetOptions::default()
    };
    let negotiated = get(server, GOOD_NAME, &options)
        .await
        .expect("a download with options after the storm");
    assert!(
        negotiated.data == content,
        "download with options differs from the file"
    );
    assert_eq!(negotiated.tsize, Some(content.len() as u64));

    // Still answering correctly, not just still alive.
    let missing = get(server, "missing-after-storm.bin", &GetOptions::default())
        .await
        .expect_err("a missing file is an error");
    assert_eq!(
        missing.server_error().map(|(code, _)| code),
        Some(1),
        "missing file: {missing}"
    );
    assert_eq!(daemon.tftp_addrs(), vec![server], "the listener moved");

    for drain in drains {
        drain.abort();
    }
    daemon.shutdown(Duration::from_secs(1)).await;
}
