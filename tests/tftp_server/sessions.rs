//! Transfer IDs and sockets: one transfer per repeated RRQ, replies from the
//! address asked, ports inside `port_range`, a client ERROR ending the
//! transfer, a phone reusing its port, the client reusing its socket.

use std::net::SocketAddr;
use std::time::Duration;

use tftproxy::client::get;
use tftproxy::tftp::packet::Packet;
use tokio::net::UdpSocket;

use crate::support::pattern;
use crate::{quick, rrq, tftp_server, tftp_server_in};

both_modes! {
    async fn a_repeated_rrq_from_the_same_port_starts_no_second_transfer(mode) {
        let server = tftp_server_in(mode).file("f", pattern(100, 1)).start().await;
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
}

both_modes! {
    async fn replies_leave_from_the_address_the_request_came_to(mode) {
        // A wildcard listener; the phone asks 127.0.0.2. The client accepts the
        // reply only from the address it asked, so success proves the source.
        let server = tftp_server_in(mode)
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

both_modes! {
    async fn a_client_error_after_the_oack_ends_the_transfer_at_once(mode) {
        let server = tftp_server_in(mode)
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

both_modes! {
    async fn the_client_can_reuse_one_socket_for_several_downloads(mode) {
        let server = tftp_server_in(mode)
            .file("a", b"first")
            .file("b", b"second")
            .start()
            .await;
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for (name, content) in [("a", &b"first"[..]), ("b", b"second"), ("a", b"first")] {
            let download = tftproxy::client::get_with_socket(&socket, server.tftp_v4(), name, &quick())
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(download.data, content);
        }
    }
}

both_modes! {
    async fn a_phone_that_closes_its_port_frees_its_transfer_at_once(mode) {
        // Retransmissions every 5 s: only the ICMP "port unreachable" the
        // closed port brings back can end the transfer within the wait.
        let server = tftp_server_in(mode)
            .file("f", pattern(100_000, 3))
            .tweak(|c| c.tftp.retransmit_timeout = Duration::from_secs(5))
            .start()
            .await;
        // The port closes right after the request, long before the
        // server can have sent its first DATA there.
        let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        phone.send_to(&rrq("f", &[]), server.tftp_v4()).unwrap();
        drop(phone);
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let gone = "tftproxy_requests_total{front=\"tftp\",result=\"client_gone\"} 1";
        loop {
            let metrics = server.daemon.metrics().encode();
            if metrics.contains(gone) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "still running: {metrics}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
