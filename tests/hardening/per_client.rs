//! Per-client TFTP limits with their defaults: the 17th concurrent
//! transfer of one address is told `busy, retry later`, and a burst over
//! `client_request_rate` gets no answer — while another address is served.

use tftproxy::tftp::packet::Packet;

use crate::support::daemon::TestDaemon;
use crate::support::pattern;
use crate::{bind, first_reply, get_from, metric, quick, rrq, SILENCE};

const BIG: &str = "firmware.sbn";

#[tokio::test]
async fn the_seventeenth_transfer_of_one_address_is_busy_while_another_is_served() {
    let content = pattern(64 * 1024, 7);
    let server = TestDaemon::builder()
        .client_limits()
        .file(BIG, &content)
        .start()
        .await;
    assert_eq!(server.daemon.config().tftp.max_transfers_per_client, 16);
    // Sixteen transfers from 127.0.0.2 that never acknowledge: each stays
    // open, retransmitting its first block. The sockets stay open too (a
    // closed one would end its transfer with an ICMP error).
    let mut phones = Vec::new();
    for _ in 0..16 {
        let socket = bind("127.0.0.2").await;
        socket.send_to(&rrq(BIG), server.tftp_v4()).await.unwrap();
        let reply = first_reply(&socket, SILENCE).await;
        assert!(
            matches!(reply, Some(Packet::Data { block: 1, .. })),
            "{reply:?}"
        );
        phones.push(socket);
    }
    let seventeenth = bind("127.0.0.2").await;
    seventeenth
        .send_to(&rrq(BIG), server.tftp_v4())
        .await
        .unwrap();
    match first_reply(&seventeenth, SILENCE).await {
        Some(Packet::Error { code: 0, message }) => assert_eq!(message, "busy, retry later"),
        other => panic!("the 17th transfer: {other:?}"),
    }
    let refused = r#"tftproxy_client_refusals_total{front="tftp",reason="too_many_transfers"}"#;
    assert_eq!(metric(&server, refused), 1.0);

    let download = get_from("127.0.0.3", server.tftp_v4(), BIG, &quick()).await;
    assert!(
        download.unwrap().data == content,
        "another address is served"
    );
    drop(phones);
}

#[tokio::test]
async fn a_burst_over_the_rate_gets_no_answer_while_another_address_is_served() {
    let server = TestDaemon::builder()
        .client_limits()
        .file("a.cnf.xml", b"<a/>")
        .start()
        .await;
    let rate = server.daemon.config().tftp.client_request_rate as usize;
    assert_eq!(rate, 50);
    // 3 × the burst, as fast as one socket sends: distinct names (so none
    // is a retransmission of another), none of them found — each request
    // let through gets exactly one ERROR packet: not found, or busy when
    // 16 of them are being looked up at once.
    let burst = 3 * rate;
    let flood = bind("127.0.0.2").await;
    for i in 0..burst {
        flood
            .send_to(&rrq(&format!("missing-{i}.bin")), server.tftp_v4())
            .await
            .unwrap();
    }
    let mut answered = 0;
    while let Some(reply) = first_reply(&flood, SILENCE).await {
        assert!(
            matches!(reply, Packet::Error { code: 0 | 1, .. }),
            "{reply:?}"
        );
        answered += 1;
    }
    // The burst, plus what the bucket refilled while the flood was sent
    // (generous: a loaded machine sends slowly).
    assert!(answered >= rate, "{answered} answered");
    assert!(answered < 2 * rate, "{answered} of {burst} answered");
    let limited = r#"tftproxy_client_refusals_total{front="tftp",reason="rate_limited"}"#;
    assert_eq!(metric(&server, limited), (burst - answered) as f64);

    let download = get_from("127.0.0.3", server.tftp_v4(), "a.cnf.xml", &quick()).await;
    assert_eq!(download.unwrap().data, b"<a/>");
}
