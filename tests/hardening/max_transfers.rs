//! `tftp.max_transfers` holds across reloads: after a reload to a smaller
//! limit, the transfers started under the old one count, and once they end
//! no more than the new limit run. And a full `max_transfers` makes room
//! for a new request by ending the oldest transfer whose client never
//! answered (a forged request), never one whose client did.

use std::time::Duration;

use tftproxy::tftp::packet::Packet;
use tokio::net::UdpSocket;

use crate::support::daemon::TestDaemon;
use crate::support::pattern;
use crate::{bind, first_reply, rrq, SILENCE};

const BIG: &str = "firmware.sbn";

/// Sends an RRQ from a new socket and says whether the first answer is
/// the first block (then acknowledged, so the client is real; the socket is
/// kept: its transfer stays open, since block 2 is never acknowledged) or
/// `busy`.
async fn start_stalled(server: &TestDaemon) -> (bool, UdpSocket) {
    start(server, true).await
}

/// [`start_stalled`], the first block acknowledged or not.
async fn start(server: &TestDaemon, answer: bool) -> (bool, UdpSocket) {
    let socket = bind("127.0.0.1").await;
    socket.send_to(&rrq(BIG), server.tftp_v4()).await.unwrap();
    let mut buf = [0u8; 600];
    let reply = tokio::time::timeout(SILENCE, socket.recv_from(&mut buf)).await;
    let (n, from) = reply.expect("an answer").unwrap();
    match Packet::decode(&buf[..n]).unwrap() {
        Packet::Data { block: 1, .. } => {
            if answer {
                socket
                    .send_to(&Packet::Ack(1).encode(), from)
                    .await
                    .unwrap();
                let next = first_reply(&socket, SILENCE).await;
                assert!(
                    matches!(next, Some(Packet::Data { block: 2, .. })),
                    "{next:?}"
                );
            }
            (true, socket)
        }
        Packet::Error { code: 0, message } if message == "busy, retry later" => (false, socket),
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test]
async fn a_reload_to_fewer_transfers_is_never_exceeded_by_new_requests() {
    let server = TestDaemon::builder()
        .file(BIG, pattern(64 * 1024, 1))
        .tweak(|config| {
            config.tftp.max_transfers = 20;
            // Unacknowledged transfers give up after 5 s (1 + 2 + 2: two
            // resends to a client that never answered), long enough for the
            // checks below on a loaded machine.
            config.tftp.retransmit_timeout = Duration::from_secs(1);
            config.tftp.max_retries = 3;
        })
        .start()
        .await;
    let mut old = Vec::new();
    for _ in 0..20 {
        let (started, socket) = start_stalled(&server).await;
        assert!(started, "under the first limit");
        old.push(socket);
    }
    assert!(!start_stalled(&server).await.0, "the 21st is busy");

    let mut config = server.daemon.config();
    config.tftp.max_transfers = 5;
    server.daemon.reload(config).unwrap();
    // The 20 transfers of the old generation still count.
    for _ in 0..5 {
        assert!(
            !start_stalled(&server).await.0,
            "admitted over the new limit"
        );
    }

    // Once they have given up, exactly 5 new ones run at a time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while server.daemon.active_transfers() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "transfers never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(old);
    let mut new = Vec::new();
    let mut started = 0;
    for _ in 0..10 {
        let (running, socket) = start_stalled(&server).await;
        started += usize::from(running);
        new.push(socket);
    }
    assert_eq!(started, 5, "transfers started under max_transfers = 5");
    assert!(server.daemon.active_transfers() <= 5);
}

#[tokio::test]
async fn a_full_max_transfers_ends_the_oldest_transfer_nobody_answered() {
    ends_the_oldest_transfer_nobody_answered(false).await;
}

#[tokio::test]
async fn a_full_max_transfers_ends_the_oldest_transfer_nobody_answered_single_port() {
    ends_the_oldest_transfer_nobody_answered(true).await;
}

async fn ends_the_oldest_transfer_nobody_answered(single_port: bool) {
    let server = TestDaemon::builder()
        .file(BIG, pattern(64 * 1024, 2))
        .tweak(move |config| {
            config.tftp.max_transfers = 3;
            config.tftp.single_port = single_port;
        })
        .start()
        .await;
    // Three forged requests hold every slot; a real phone still gets a
    // transfer, and the oldest forged one ends for it.
    let mut forged = Vec::new();
    for _ in 0..3 {
        let (started, socket) = start(&server, false).await;
        assert!(started);
        forged.push(socket);
    }
    let (started, _phone) = start_stalled(&server).await;
    assert!(started, "a real phone was told busy behind forged requests");
    assert_eq!(server.daemon.active_transfers(), 3);
    // Three real (answered) transfers are never ended for a newcomer.
    let (_, _second) = start_stalled(&server).await;
    let (_, _third) = start_stalled(&server).await;
    assert!(
        !start(&server, false).await.0,
        "an answered transfer was ended"
    );
}
