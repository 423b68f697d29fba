//! A lossy path: a UDP relay that drops, duplicates and reorders datagrams,
//! and a hundred transfers through it completing byte-exact.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tftproxy::client::{get, GetOptions};
use tokio::net::UdpSocket;

use crate::support::pattern;
use crate::tftp_server_in;

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
                // A request (a repeat of one, too) goes where the client sent
                // it, the listening port; the rest to the transfer's port.
                let to = if buf[..n].starts_with(&[0, 1]) {
                    server
                } else {
                    *target.lock().unwrap()
                };
                impaired(upstream, to, buf[..n].to_vec(), rng.clone());
            }
        });
        LossyRelay { addr }
    }
}

both_modes! {
    async fn a_hundred_transfers_through_a_lossy_path_complete_byte_exact(mode) {
        let files: Vec<(String, Vec<u8>)> = (0..10)
            .map(|i| (format!("f{i}"), pattern(i * 7_919 + 100, i as u64)))
            .collect();
        let server = tftp_server_in(mode)
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
}
