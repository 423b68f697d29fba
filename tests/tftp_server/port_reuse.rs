//! A phone's port handed out again: a request with the same bytes from the
//! port of a transfer whose client may be done (it answered and the last
//! block went out) is a new request, served at once (the straggler of issue
//! 11), while a retransmitted request, or a late duplicate of it in the
//! middle of the transfer, starts no second transfer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tftproxy::client::{get_with_socket, GetOptions};
use tftproxy::tftp::packet::Packet;
use tokio::net::UdpSocket;

use crate::support::pattern;
use crate::{rrq, tftp_server_in, MODES};

/// 3,000 bytes: six blocks of 512, so the transfer is answered (ACK 1)
/// long before it ends.
const SIZE: usize = 3000;

/// Receives the next datagram within `wait`.
async fn next(socket: &UdpSocket, wait: Duration) -> Option<(Packet, SocketAddr)> {
    let mut buf = [0u8; 1024];
    let (n, from) = tokio::time::timeout(wait, socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some((Packet::decode(&buf[..n]).ok()?, from))
}

/// Downloads "f" by hand from `socket` and returns the transfer's port;
/// the final ACK is sent only if `final_ack`.
async fn download_by_hand(socket: &UdpSocket, server: SocketAddr, final_ack: bool) -> SocketAddr {
    socket.send_to(&rrq("f", &[]), server).await.unwrap();
    let mut received = 0;
    loop {
        let (packet, from) = next(socket, Duration::from_secs(2)).await.expect("DATA");
        let Packet::Data { block, data } = packet else {
            panic!("expected DATA, got {packet:?}")
        };
        received += data.len();
        let last = data.len() < 512;
        if !last || final_ack {
            socket
                .send_to(&Packet::Ack(block).encode(), from)
                .await
                .unwrap();
        }
        if last {
            assert_eq!(received, SIZE);
            return from;
        }
    }
}

#[tokio::test]
async fn the_same_request_from_the_port_of_a_finished_transfer_is_served_at_once() {
    for mode in MODES {
        // A long server time-out: an old transfer's retransmission cannot
        // stand in for the answer to the new request.
        let server = tftp_server_in(mode)
            .file("f", pattern(SIZE, 5))
            .tweak(|c| c.tftp.retransmit_timeout = Duration::from_secs(3))
            .start()
            .await;
        let addr = server.tftp_v4();
        // The phone's own retransmit is longer than the bound asserted, so
        // only an answer to the first request passes.
        let phone = GetOptions {
            retransmit: Duration::from_secs(4),
            max_retries: 1,
            ..GetOptions::default()
        };
        for final_ack in [true, false] {
            // The phone (or the next phone given its port) asks again at
            // once; with `final_ack` false its last ACK was lost, so the
            // old transfer is certainly still running.
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            download_by_hand(&socket, addr, final_ack).await;
            let started = Instant::now();
            let again = get_with_socket(&socket, addr, "f", &phone)
                .await
                .unwrap_or_else(|e| panic!("{mode:?}, final ACK {final_ack}: {e}"));
            assert_eq!(again.data, pattern(SIZE, 5));
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{mode:?}, final ACK {final_ack}: the new request waited {:?}",
                started.elapsed()
            );
        }
    }
}

#[tokio::test]
async fn retransmitted_and_late_requests_are_answered_by_the_same_transfer() {
    for mode in MODES {
        let server = tftp_server_in(mode)
            .file("f", pattern(SIZE, 6))
            .tweak(|c| c.tftp.retransmit_timeout = Duration::from_secs(3))
            .start()
            .await;
        let addr = server.tftp_v4();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&rrq("f", &[]), addr).await.unwrap();
        let (first, port) = next(&socket, Duration::from_secs(2)).await.expect("DATA 1");
        assert!(matches!(first, Packet::Data { block: 1, .. }));
        // The phone did not see DATA 1 and asks again: the same transfer
        // resends it at once (not after its 3 s time-out), and no second
        // transfer starts.
        socket.send_to(&rrq("f", &[]), addr).await.unwrap();
        let (again, again_port) = next(&socket, Duration::from_secs(1))
            .await
            .unwrap_or_else(|| panic!("{mode:?}: the repeated request was not answered"));
        assert!(matches!(again, Packet::Data { block: 1, .. }), "{again:?}");
        assert_eq!(port, again_port, "{mode:?}: a second transfer started");
        // Finish the transfer, with a late duplicate of the request in the
        // middle (after block 2, when the phone cannot be done): every block
        // arrives once, in order, from the same port (no second transfer,
        // and the transfer is not started over).
        let mut block = 1;
        socket
            .send_to(&Packet::Ack(1).encode(), port)
            .await
            .unwrap();
        while let Some((packet, from)) = next(&socket, Duration::from_millis(500)).await {
            let Packet::Data { block: b, data } = packet else {
                panic!("{mode:?}: {packet:?}")
            };
            assert_eq!((b, from), (block + 1, port), "{mode:?}");
            block = b;
            if b == 2 {
                socket.send_to(&rrq("f", &[]), addr).await.unwrap();
            }
            socket
                .send_to(&Packet::Ack(b).encode(), port)
                .await
                .unwrap();
            if data.len() < 512 {
                break;
            }
        }
        assert_eq!(block, 6, "{mode:?}");
        assert!(next(&socket, Duration::from_millis(300)).await.is_none());
    }
}
