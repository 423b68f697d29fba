//! Single-port mode (`tftp.single_port`): every packet of every transfer
//! from the listening port, strays from unknown ports answered only where
//! RFC 1350 asks, never in a way that could loop.

use std::time::Duration;

use tftproxy::tftp::packet::{ErrorCode, Packet};
use tokio::net::UdpSocket;

use crate::support::pattern;
use crate::{rrq, tftp_server_in, Ports};

/// Receives the next datagram within `wait`.
async fn next(socket: &UdpSocket, wait: Duration) -> Option<(Packet, std::net::SocketAddr)> {
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(wait, socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some((Packet::decode(&buf[..n]).ok()?, from))
}

#[tokio::test]
async fn every_packet_of_every_transfer_leaves_from_the_listening_port() {
    let server = tftp_server_in(Ports::Single)
        .file("f", pattern(5000, 3))
        .start()
        .await;
    for addr in [server.tftp_v4(), server.tftp_v6()] {
        let any = if addr.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        // Two phones at once, one with options (OACK, window of 4).
        let plain = UdpSocket::bind(any).await.unwrap();
        let windowed = UdpSocket::bind(any).await.unwrap();
        plain.send_to(&rrq("f", &[]), addr).await.unwrap();
        windowed
            .send_to(&rrq("f", &[("blksize", "1024"), ("windowsize", "4")]), addr)
            .await
            .unwrap();
        for (socket, block_size) in [(&plain, 512), (&windowed, 1024)] {
            let mut received = 0;
            while let Some((packet, from)) = next(socket, Duration::from_secs(2)).await {
                assert_eq!(from, addr, "a packet from another port than the listener's");
                match packet {
                    Packet::Oack(_) => {
                        socket
                            .send_to(&Packet::Ack(0).encode(), addr)
                            .await
                            .unwrap();
                    }
                    Packet::Data { block, data } => {
                        received += data.len();
                        let last = data.len() < block_size;
                        if last || block % 4 == 0 || block_size == 512 {
                            socket
                                .send_to(&Packet::Ack(block).encode(), addr)
                                .await
                                .unwrap();
                        }
                        if last {
                            break;
                        }
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(received, 5000, "{addr}, blksize {block_size}");
        }
    }
}

#[tokio::test]
async fn strays_get_unknown_transfer_id_only_for_data_and_nothing_for_errors() {
    let server = tftp_server_in(Ports::Single)
        .file("f", pattern(100, 4))
        .start()
        .await;
    let addr = server.tftp_v4();
    let stray = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // DATA from a port with no transfer: ERROR 5, as RFC 1350 asks.
    let data = Packet::Data {
        block: 1,
        data: b"x".to_vec().into(),
    };
    stray.send_to(&data.encode(), addr).await.unwrap();
    let (reply, from) = next(&stray, Duration::from_secs(2)).await.expect("ERROR 5");
    assert_eq!(from, addr);
    assert!(
        matches!(reply, Packet::Error { code, .. } if code == ErrorCode::UnknownTransferId as u16),
        "{reply:?}"
    );
    // An ACK (a finished transfer's duplicate final ACK) and an ERROR (which
    // would loop if answered) get nothing.
    stray.send_to(&Packet::Ack(7).encode(), addr).await.unwrap();
    stray
        .send_to(&Packet::error(ErrorCode::UnknownTransferId, "x"), addr)
        .await
        .unwrap();
    assert!(next(&stray, Duration::from_millis(500)).await.is_none());
    // Meanwhile the port serves requests.
    stray.send_to(&rrq("f", &[]), addr).await.unwrap();
    let (first, _) = next(&stray, Duration::from_secs(2)).await.expect("DATA 1");
    assert!(matches!(first, Packet::Data { block: 1, .. }), "{first:?}");
}
