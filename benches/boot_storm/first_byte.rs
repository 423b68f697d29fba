//! The `first-byte` subcommand: time to the first DATA block of a file only
//! the last of K HTTP clusters has, with the parallel and the sequential
//! search strategy.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tftproxy_testkit::http_cluster::HttpCluster;
use tokio::net::UdpSocket;

use tftproxy::config::{Config, Strategy};
use tftproxy::daemon::Daemon;

use crate::cli::FirstByteArgs;
use crate::files::content;
use crate::measure::median;
use crate::proxy::{cluster_config, start_clusters};
use crate::runtime::{client_runtime, ServerRuntime};

/// A read request for `name`, octet mode, no options.
fn rrq(name: &str) -> Vec<u8> {
    let mut v = vec![0, 1];
    v.extend_from_slice(name.as_bytes());
    v.push(0);
    v.extend_from_slice(b"octet");
    v.push(0);
    v
}

/// Sends an RRQ and waits for the first DATA block; acknowledges the whole
/// (one-block) file. Returns the time to that first block.
async fn first_byte(target: SocketAddr, name: &str) -> Result<Duration> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let started = Instant::now();
    socket.send_to(&rrq(name), target).await?;
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buf))
        .await
        .context("no answer in 10 s")??;
    let elapsed = started.elapsed();
    match buf.get(..2) {
        Some([0, 3]) if n >= 4 => {
            let ack = [0, 4, buf[2], buf[3]];
            socket.send_to(&ack, from).await?;
            Ok(elapsed)
        }
        Some([0, 5]) => bail!(
            "server error {}: {}",
            u16::from_be_bytes([buf[2], buf[3]]),
            String::from_utf8_lossy(&buf[4..n.saturating_sub(1).max(4)])
        ),
        _ => bail!("unexpected answer of {n} bytes"),
    }
}

/// `first-byte`: per strategy (parallel, then sequential), `--runs` first
/// blocks of files only the last cluster has; a `RESULT` line each.
pub(crate) fn first_byte_command(args: FirstByteArgs) -> Result<()> {
    let upstream = ServerRuntime::new("clusters", 1)?;
    let runtime = client_runtime(1)?;
    let delay = Duration::from_millis(args.delay_ms);
    let clusters: Vec<HttpCluster> = start_clusters(&upstream, args.clusters, delay);
    let last = clusters.last().context("no cluster")?;
    let name = |strategy: usize, run: usize| {
        format!(
            "SEP{:012X}.cnf.xml",
            0xAB00_0000_0000u64 + (strategy as u64) * 1000 + run as u64
        )
    };
    for s in 0..2 {
        for run in 0..=args.runs {
            last.put(name(s, run), content(300, run as u64));
        }
    }
    println!(
        "time to first byte: {} clusters answering after {} ms, the file only on the last",
        args.clusters, args.delay_ms
    );
    let mut medians = Vec::new();
    for (s, strategy) in [Strategy::Parallel, Strategy::Sequential]
        .into_iter()
        .enumerate()
    {
        let server = ServerRuntime::new("tftproxy", 2)?;
        let mut config = Config::default();
        config.tftp.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.remote.strategy = strategy;
        config.clusters = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| cluster_config(i, c.base_url()))
            .collect();
        let daemon = server.block_on(Daemon::start(config))?;
        let target = daemon.tftp_addrs()[0];
        let before: usize = clusters.iter().map(|c| c.requests()).sum();
        let mut times = Vec::new();
        // Run 0 warms up connections and is not counted.
        for run in 0..=args.runs {
            let t = runtime.block_on(first_byte(target, &name(s, run)))?;
            if run > 0 {
                times.push(t.as_secs_f64() * 1000.0);
            }
        }
        let after: usize = clusters.iter().map(|c| c.requests()).sum();
        let shown: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
        let m = median(&mut times.clone());
        println!(
            "RESULT label=first-byte strategy={strategy:?} clusters={} delay_ms={} runs={} median_ms={m:.1} times_ms={} upstream_requests={}",
            args.clusters,
            args.delay_ms,
            args.runs,
            shown.join(","),
            after - before,
        );
        medians.push((strategy, m));
        drop(daemon);
        drop(server);
    }
    if let [(_, p), (_, s)] = medians[..] {
        println!("| strategy | median time to first byte |\n|---|---:|\n| parallel | {p:.1} ms |\n| sequential | {s:.1} ms |");
    }
    drop(clusters);
    drop(upstream);
    Ok(())
}
