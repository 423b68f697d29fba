//! Reflection: a request from an address that never answers (a forged
//! source) makes the server send three first packets at most, and a stream
//! of repeats one more per time-out at most, in both modes. The
//! amplification factor (bytes sent to the silent address ÷ bytes received
//! from it) is printed for the README.

use super::*;

use tokio::net::UdpSocket;

const FILE: &str = "firmware.sbn";

/// Sends `repeats + 1` copies of `request`, one every `every`, from one
/// socket that never acknowledges, and returns what came back within `listen`:
/// datagrams and bytes. (A repeat after the transfer gave up would be a new
/// request, which only `client_request_rate` bounds.)
async fn reflected(
    server: &TestDaemon,
    request: &[u8],
    repeats: usize,
    every: Duration,
    listen: Duration,
) -> (usize, usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (mut datagrams, mut bytes) = (0, 0);
    let start = tokio::time::Instant::now();
    let mut next_repeat = start;
    let mut sent = 0;
    while start.elapsed() < listen {
        if sent <= repeats && tokio::time::Instant::now() >= next_repeat {
            socket.send_to(request, server.tftp_v4()).await.unwrap();
            sent += 1;
            next_repeat += every;
        }
        let wait = next_repeat.max(tokio::time::Instant::now() + Duration::from_millis(10));
        if let Ok(Ok((n, _))) = tokio::time::timeout_at(wait, socket.recv_from(&mut buf)).await {
            datagrams += 1;
            bytes += n;
        }
    }
    (datagrams, bytes)
}

both_modes! {
    async fn a_silent_address_gets_three_first_packets_at_most(mode) {
        let server = tftp_server_in(mode)
            .file(FILE, vec![7u8; 256 * 1024])
            // Time-outs at 0.5, 1.5 and 2.5 s: the third ends the transfer
            // (the old code sent again then, and twice more).
            .tweak(|c| c.tftp.retransmit_timeout = Duration::from_millis(500))
            .start()
            .await;
        let plain = rrq(FILE, &[]);
        let with_options = rrq(FILE, &[("blksize", "1468"), ("windowsize", "8"), ("tsize", "0")]);
        for repeats in [0, 20] {
            // Repeats use the resends up at once: the transfer ends 1 s later.
            let listen = Duration::from_millis(if repeats == 0 { 3200 } else { 1800 });
            let burst = Duration::from_millis(5);
            let (datagrams, bytes) = reflected(&server, &plain, repeats, burst, listen).await;
            assert_eq!(datagrams, 3, "no options, {repeats} repeats: {bytes} bytes");
            assert_eq!(bytes, 3 * 516);
            if repeats == 0 {
                println!(
                    "{mode:?}: one {}-byte RRQ without options, never acknowledged: \
                     {bytes} bytes back (amplification {:.0}x)",
                    plain.len(),
                    bytes as f64 / plain.len() as f64
                );
            }
            let (datagrams, bytes) =
                reflected(&server, &with_options, repeats, burst, listen).await;
            assert_eq!(datagrams, 3, "with options, {repeats} repeats");
            let factor = bytes as f64 / with_options.len() as f64;
            assert!(factor < 3.0, "OACKs only: {bytes} bytes");
            if repeats == 0 {
                println!(
                    "{mode:?}: one {}-byte RRQ with blksize/windowsize/tsize, never \
                     acknowledged: {bytes} bytes back (amplification {factor:.1}x)",
                    with_options.len()
                );
            }
        }
    }
}

both_modes! {
    async fn a_stream_of_repeats_gets_one_first_packet_per_time_out_at_most(mode) {
        let timeout = Duration::from_millis(500);
        let server = tftp_server_in(mode)
            .file(FILE, vec![7u8; 256 * 1024])
            .tweak(move |c| c.tftp.retransmit_timeout = timeout)
            .start()
            .await;
        let plain = rrq(FILE, &[]);
        // A repeat every 50 ms for 2 s, within the transfer's listening
        // window (time-outs at 0.5, 1.5 and 2.5 s).
        let (datagrams, bytes) =
            reflected(&server, &plain, 40, Duration::from_millis(50), Duration::from_millis(2100))
                .await;
        // The free ones, then one per time-out (2 s / 0.5 s).
        assert!((4..=3 + 4 + 1).contains(&datagrams), "{datagrams} datagrams");
        let factor = bytes as f64 / (41 * plain.len()) as f64;
        assert!(factor < 5.0, "amplification {factor:.1}x");
        println!("{mode:?}: 41 repeats over 2 s: {datagrams} datagrams back (amplification {factor:.1}x)");
    }
}
