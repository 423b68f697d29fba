//! Load and lifecycle: hundreds of concurrent transfers, `max_transfers`
//! telling phones to retry later, no CPU spent waiting for a time-out, and
//! graceful shutdown.

use std::time::Duration;

use tftproxy::client::{get, GetOptions};
use tftproxy::tftp::packet::Packet;
use tokio::net::UdpSocket;

use crate::support::pattern;
use crate::{quick, rrq, server_error, tftp_server_in};

both_modes! {
    async fn five_hundred_concurrent_transfers_all_complete(mode) {
        let content = pattern(20_000, 11);
        let server = tftp_server_in(mode)
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
}

both_modes! {
    async fn over_max_transfers_phones_are_told_to_retry_later(mode) {
        let server = tftp_server_in(mode)
            .file("f", pattern(100_000, 1))
            .tweak(|c| c.tftp.max_transfers = 2)
            .start()
            .await;
        let addr = server.tftp_v4();
        // Two transfers that stall: real clients (they acknowledge block 1)
        // that never acknowledge block 2. (Unanswered ones would be ended
        // to make room.)
        let mut holders = Vec::new();
        for _ in 0..2 {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.send_to(&rrq("f", &[]), addr).await.unwrap();
            let mut buf = [0u8; 1024];
            let (_, from) = socket.recv_from(&mut buf).await.unwrap();
            socket.send_to(&Packet::Ack(1).encode(), from).await.unwrap();
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
}

/// CPU time used by this thread. A `#[tokio::test]` runtime runs the
/// daemon's tasks and the client on the test's one thread, so other tests
/// running in parallel do not count.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

both_modes! {
    async fn waiting_for_a_retransmit_time_out_uses_no_cpu(mode) {
        // Both engines keep one timer per transfer and re-arm it lazily; a timer
        // left fired would turn every wait into a busy loop. Here the server
        // waits on a phone that stopped answering, and the client on a server
        // that never answers, for about 1.5 s.
        let server = tftp_server_in(mode)
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
        // The server sends block 1 and 2 retransmissions (at 0.3 and 0.9 s;
        // a client that never answered gets no more: the reflection bound),
        // then waits out its last time-out (until 1.5 s).
        let mut buf = [0u8; 1024];
        let mut blocks = 0;
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while blocks < 3 {
            match tokio::time::timeout_at(until, silent_phone.recv_from(&mut buf)).await {
                Ok(received) => {
                    received.unwrap();
                    blocks += 1;
                }
                Err(_) => panic!("{blocks} DATA in 5 s, expected block 1 and 2 retransmissions"),
            }
        }
        let used = thread_cpu_time() - before;
        assert!(
            used < Duration::from_millis(400),
            "{used:?} of CPU in 1.5 s of waiting"
        );
    }
}

both_modes! {
    async fn shutdown_lets_running_transfers_finish_and_stops_accepting(mode) {
        let content = pattern(3 << 20, 5);
        let server = tftp_server_in(mode).file("big", &content).start().await;
        let addr = server.tftp_v4();
        let running = tokio::spawn(async move { get(addr, "big", &quick()).await.map(|d| d.data) });
        // Shut down once the transfer runs (a fixed sleep loses the race
        // on a loaded machine: the request is not taken yet, nothing runs).
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while server.daemon.active_transfers() == 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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
}
