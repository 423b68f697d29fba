//! The `hold` subcommand: the server's resident memory with N transfers
//! open at once (issue 11: "RSS at 5,000 concurrent transfers").
//!
//! Each transfer is a phone of its own (127.1.x.y, its own port) reading a
//! large file with no options, acknowledging every block only after a pause
//! shorter than the server's retransmit time-out: the server neither gives
//! up nor resends, and every transfer stays open for as long as we like.
//! Once all have received a first block, the server's `VmRSS` is sampled
//! for `--seconds`; at the end each phone sends an ERROR so that the server
//! drops its transfer at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::cli::HoldArgs;
use crate::runtime::client_runtime;
use crate::storm::make_phones;

/// `VmRSS` and `VmHWM` (peak) of a process, KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn rrq(name: &str) -> Vec<u8> {
    let mut packet = vec![0, 1];
    packet.extend_from_slice(name.as_bytes());
    packet.extend_from_slice(b"\0octet\0");
    packet
}

/// Counters shared by the phones.
#[derive(Default)]
struct Held {
    /// Phones that received at least one block.
    started: AtomicUsize,
    /// Blocks received in all.
    blocks: AtomicUsize,
}

/// One slow phone: RRQ, then an ACK per block after `interval`, until
/// `stop`; a lost datagram is sent again after 3 s of silence.
async fn slow_phone(
    socket: UdpSocket,
    target: SocketAddr,
    name: String,
    interval: Duration,
    held: Arc<Held>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = rrq(&name);
    let mut to = target;
    let mut started = false;
    let mut buffer = vec![0u8; 2048];
    loop {
        if socket.send_to(&last, to).await.is_err() {
            return;
        }
        let received = tokio::select! {
            _ = stop.changed() => break,
            r = tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buffer)) => r,
        };
        let Ok(Ok((n, from))) = received else {
            continue;
        };
        if n < 4 || buffer[1] != 3 {
            // An ERROR (busy, not found) or anything else: this one is done.
            return;
        }
        if !started {
            started = true;
            held.started.fetch_add(1, Ordering::Relaxed);
        }
        held.blocks.fetch_add(1, Ordering::Relaxed);
        to = from;
        last = vec![0, 4, buffer[2], buffer[3]];
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    // Tell the server we are gone, so it frees the transfer now.
    let _ = socket.send_to(b"\0\x05\0\0done\0", to).await;
}

/// `hold`: opens `--transfers` slow transfers, samples the server's RSS.
pub(crate) fn hold_command(args: HoldArgs) -> Result<()> {
    let target: SocketAddr = args.target.parse().context("--target")?;
    let runtime = client_runtime(2)?;
    let (rss_before, _) = rss_kib(args.server_pid).context("server pid: no /proc status")?;
    let held = Arc::new(Held::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let interval = Duration::from_millis(args.ack_interval_ms);
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for phone in make_phones(args.transfers, true) {
            let socket = UdpSocket::bind(SocketAddr::new(phone.source(), 0)).await?;
            tasks.spawn(slow_phone(
                socket,
                target,
                args.name.clone(),
                interval,
                held.clone(),
                stop_rx.clone(),
            ));
        }
        let began = Instant::now();
        while held.started.load(Ordering::Relaxed) < args.transfers
            && began.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let opened_in = began.elapsed();
        let (mut peak, mut samples, mut sum) = (0u64, 0u64, 0u64);
        let blocks_before = held.blocks.load(Ordering::Relaxed);
        let hold = Instant::now();
        while hold.elapsed() < Duration::from_secs(args.seconds) {
            if let Some((rss, _)) = rss_kib(args.server_pid) {
                peak = peak.max(rss);
                sum += rss;
                samples += 1;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let blocks = held.blocks.load(Ordering::Relaxed) - blocks_before;
        let hwm = rss_kib(args.server_pid).map_or(0, |(_, hwm)| hwm);
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        println!(
            "RESULT label={} kind=hold transfers={} started={} opened_s={:.1} \
             blocks_per_s={:.0} rss_before_kib={rss_before} rss_mean_kib={} \
             rss_peak_kib={peak} rss_per_transfer_kib={:.1} hwm_kib={hwm}",
            args.label,
            args.transfers,
            held.started.load(Ordering::Relaxed),
            opened_in.as_secs_f64(),
            blocks as f64 / hold.elapsed().as_secs_f64(),
            sum.checked_div(samples).unwrap_or(0),
            peak.saturating_sub(rss_before) as f64 / args.transfers.max(1) as f64,
        );
        Ok::<(), anyhow::Error>(())
    })
}
