//! The simulated phones and the `storm` and `wait` subcommands.
//!
//! A storm binds every phone's socket (with `--reuse-socket`), spawns one
//! task per phone, lets them all reach a start line, then releases them at
//! once; each phone fetches its files in order with the library client.
//! Kernel and CPU counters are read around the storm (see [`crate::measure`])
//! and everything ends up in a [`StormReport`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use tftproxy::client::{get_with_socket, GetError, GetOptions};
use tftproxy::config::Config;
use tftproxy::daemon::Daemon;
use tftproxy::tftp::receive::ReceiveError;

use crate::cli::{ClientArgs, StormArgs};
use crate::files::{make_root, phone_files, FIRMWARE_NAME, FIRMWARE_SIZE};
use crate::measure::{
    cpu_seconds, drops_of, machine_cpu, process_cpu_seconds, target_port_drops, udp_counters,
};
use crate::report::StormReport;
use crate::runtime::{client_runtime, ServerRuntime};

// ---- one storm ---------------------------------------------------------------

/// Why a file failed (the `kinds=` of a `RESULT` line, by `Debug` name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Failure {
    Busy,
    NotFound,
    OtherServerError,
    TimedOut,
    WrongSize,
    Other,
}

impl Failure {
    fn from_error(error: &GetError) -> Failure {
        match error {
            GetError::Transfer(ReceiveError::Server { code: 0, .. }) => Failure::Busy,
            GetError::Transfer(ReceiveError::Server { code: 1, .. }) => Failure::NotFound,
            GetError::Transfer(ReceiveError::Server { .. }) => Failure::OtherServerError,
            GetError::Transfer(ReceiveError::TimedOut) => Failure::TimedOut,
            _ => Failure::Other,
        }
    }
}

struct FileResult {
    /// Position of the file in the phone's list.
    index: usize,
    /// The phone's address and port for this file (to match server logs).
    local: Option<SocketAddr>,
    name: String,
    latency: Duration,
    /// When the file was done, from the storm's start.
    finished: Duration,
    outcome: Result<(), Failure>,
}

/// One simulated phone: its source address and the files it asks for.
pub(crate) struct Phone {
    source: IpAddr,
    files: Vec<(String, usize)>,
}

fn phone_source(phone: usize, spread: bool) -> IpAddr {
    if spread {
        IpAddr::V4(Ipv4Addr::new(
            127,
            1,
            (phone / 250) as u8,
            (phone % 250 + 1) as u8,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

fn phone_options(client: &ClientArgs) -> GetOptions {
    GetOptions {
        block_size: client.blksize,
        window_size: client.windowsize,
        retransmit: Duration::from_millis(client.retransmit_ms),
        max_retries: client.max_retries,
        ..GetOptions::default()
    }
}

impl Phone {
    /// The phone's source address.
    pub(crate) fn source(&self) -> IpAddr {
        self.source
    }
}

/// `count` phones; with `spread_ips` each has its own source address
/// 127.1.x.y, otherwise they all send from 127.0.0.1.
pub(crate) fn make_phones(count: usize, spread_ips: bool) -> Vec<Phone> {
    (0..count)
        .map(|i| Phone {
            source: phone_source(i, spread_ips),
            files: phone_files(i),
        })
        .collect()
}

/// The phones of a storm as `client` asks: their four boot files, or only
/// the firmware image with `--firmware`.
pub(crate) fn phones_for(client: &ClientArgs, count: usize) -> Vec<Phone> {
    let mut phones = make_phones(count, !client.same_ip);
    if client.firmware {
        for phone in &mut phones {
            phone.files = vec![(FIRMWARE_NAME.to_owned(), FIRMWARE_SIZE)];
        }
    }
    phones
}

/// What one phone did.
struct PhoneRun {
    results: Vec<FileResult>,
    drops: u64,
    errors: Vec<String>,
}

/// One phone's task: waits for the start, then fetches its files in order,
/// on `socket` (`--reuse-socket`) or on a fresh socket per file.
async fn run_phone(
    phone: Phone,
    socket: Option<UdpSocket>,
    target: SocketAddr,
    options: Arc<GetOptions>,
    mut go: watch::Receiver<Option<Instant>>,
) -> PhoneRun {
    let mut run = PhoneRun {
        results: Vec::with_capacity(phone.files.len()),
        drops: 0,
        errors: Vec::new(),
    };
    let start = loop {
        if let Some(start) = *go.borrow_and_update() {
            break start;
        }
        if go.changed().await.is_err() {
            return run;
        }
    };
    for (index, (name, size)) in phone.files.iter().enumerate() {
        let began = Instant::now();
        let mut local = None;
        let result = match &socket {
            Some(socket) => {
                local = socket.local_addr().ok();
                get_with_socket(socket, target, name, &options).await
            }
            None => match UdpSocket::bind(SocketAddr::new(phone.source, 0)).await {
                Ok(fresh) => {
                    local = fresh.local_addr().ok();
                    let r = get_with_socket(&fresh, target, name, &options).await;
                    run.drops += drops_of(&fresh);
                    r
                }
                Err(e) => Err(e.into()),
            },
        };
        let outcome = match result {
            Ok(d) if d.data.len() == *size => Ok(()),
            Ok(d) => {
                run.errors
                    .push(format!("{name}: {} bytes, expected {size}", d.data.len()));
                Err(Failure::WrongSize)
            }
            Err(e) => {
                run.errors.push(format!("{name}: {e}"));
                Err(Failure::from_error(&e))
            }
        };
        let now = Instant::now();
        run.results.push(FileResult {
            index,
            local,
            name: name.clone(),
            latency: now - began,
            finished: now - start,
            outcome,
        });
    }
    if let Some(socket) = &socket {
        run.drops += drops_of(socket);
    }
    run
}

/// Groups an error message by its text without the file name's MAC.
fn error_key(e: String) -> String {
    e.split_once(": ")
        .map(|(n, m)| {
            let n = if n.starts_with("SEP") {
                "SEP<MAC>.cnf.xml"
            } else {
                n
            };
            format!("{n}: {m}")
        })
        .unwrap_or(e)
}

/// `--dump`: one line per file (phone address, name, start and latency in
/// ms, outcome).
fn write_dump(path: &Path, all: &[FileResult]) -> Result<()> {
    use std::fmt::Write as _;
    let mut text = String::new();
    for r in all {
        let _ = writeln!(
            text,
            "{} {} {:.3} {:.3} {}",
            r.local.map_or_else(|| "-".to_owned(), |a| a.to_string()),
            r.name,
            (r.finished - r.latency).as_secs_f64() * 1000.0,
            r.latency.as_secs_f64() * 1000.0,
            match r.outcome {
                Ok(()) => "ok".to_owned(),
                Err(kind) => format!("{kind:?}"),
            }
        );
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// Runs one storm: binds every phone's socket, then starts them all at once.
pub(crate) async fn storm(
    target: SocketAddr,
    phones: Vec<Phone>,
    client: &ClientArgs,
) -> Result<StormReport> {
    let options = Arc::new(phone_options(client));
    let count = phones.len();
    // With --reuse-socket, bind every phone's socket before the start.
    let mut sockets = Vec::with_capacity(count);
    for phone in &phones {
        if client.reuse_socket {
            let socket = UdpSocket::bind(SocketAddr::new(phone.source, 0))
                .await
                .with_context(|| format!("bind a phone socket on {}", phone.source))?;
            sockets.push(Some(socket));
        } else {
            sockets.push(None);
        }
    }
    let (go_tx, go_rx) = watch::channel(None::<Instant>);
    let mut tasks = tokio::task::JoinSet::new();
    for (phone, socket) in phones.into_iter().zip(sockets) {
        tasks.spawn(run_phone(
            phone,
            socket,
            target,
            options.clone(),
            go_rx.clone(),
        ));
    }
    let udp_before = udp_counters();
    let drops_before = target_port_drops(target);
    let cpu_before = cpu_seconds();
    let server_before = client.server_pid.and_then(process_cpu_seconds);
    // Let every task reach its wait.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let machine_before = machine_cpu();
    let start = Instant::now();
    go_tx.send(Some(start)).ok();
    let mut all = Vec::with_capacity(count * 4);
    let mut client_drops = 0;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let run = joined.context("a phone task panicked")?;
        all.extend(run.results);
        client_drops += run.drops;
        for e in run.errors {
            *errors.entry(error_key(e)).or_insert(0) += 1;
        }
    }
    let cpu = cpu_seconds() - cpu_before;
    if let Some(path) = &client.dump {
        write_dump(path, &all)?;
    }
    let server_after = client.server_pid.and_then(process_cpu_seconds);
    let machine_after = machine_cpu();
    let wall = all.iter().map(|r| r.finished).max().unwrap_or_default();
    let drops_after = target_port_drops(target);
    let udp_after = udp_counters();
    for (message, n) in &errors {
        eprintln!("  failure ×{n}: {message}");
    }

    let mut latencies = Vec::with_capacity(all.len());
    let mut failures = BTreeMap::new();
    let mut ok = 0;
    let mut slow = 0;
    let slow_threshold = Duration::from_millis(client.retransmit_ms * 9 / 10);
    for r in &all {
        latencies.push(r.latency);
        if r.latency >= slow_threshold {
            slow += 1;
        }
        match r.outcome {
            Ok(()) => ok += 1,
            Err(kind) => *failures.entry(kind).or_insert(0) += 1,
        }
    }
    latencies.sort();
    let positions = all.iter().map(|r| r.index + 1).max().unwrap_or(0);
    let mut by_position = vec![Vec::new(); positions];
    for r in &all {
        by_position[r.index].push(r.latency);
    }
    for v in &mut by_position {
        v.sort();
    }
    Ok(StormReport {
        by_position,
        phones: count,
        files_ok: ok,
        failures,
        wall,
        latencies,
        slow,
        listener_drops: match (drops_before, drops_after) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
        client_drops,
        rcvbuf_errors: udp_after.get("RcvbufErrors").copied().unwrap_or(0)
            - udp_before.get("RcvbufErrors").copied().unwrap_or(0),
        client_cpu: cpu,
        server_cpu: match (server_before, server_after) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        },
        machine_busy: machine_after.0 - machine_before.0,
        machine_idle: machine_after.1 - machine_before.1,
    })
}

// ---- the storm and wait subcommands --------------------------------------------

fn resolve_target(target: &str) -> Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("target {target}"))?
        .next()
        .with_context(|| format!("target {target}: no address"))
}

/// `storm`: `--runs` storms against `--target`, or against tftproxy started
/// in-process serving `--root`; a `RESULT` line per run.
pub(crate) fn storm_command(args: StormArgs) -> Result<()> {
    let runtime = client_runtime(args.client.client_threads)?;
    // Without a target: tftproxy in-process, on its own runtime and threads.
    let mut _temp = None;
    let mut _server = None;
    let target = match &args.target {
        Some(t) => resolve_target(t)?,
        None => {
            let root = match &args.root {
                Some(root) => root.clone(),
                None => {
                    let dir = tempfile::tempdir()?;
                    let path = dir.path().to_path_buf();
                    _temp = Some(dir);
                    path
                }
            };
            make_root(&root, args.phones, args.client.firmware)?;
            let server = ServerRuntime::new("tftproxy", args.server_threads)?;
            let mut config = Config::default();
            config.tftp.listen = vec!["127.0.0.1:0".parse().unwrap()];
            config.tftp.root = Some(root);
            config.tftp.max_transfers = 10_000;
            if args.client.same_ip {
                // Every phone is 127.0.0.1: the per-client limits would
                // measure themselves.
                config.tftp.max_transfers_per_client = 10_000;
                config.tftp.client_request_rate = 1_000_000;
            }
            let daemon = server.block_on(Daemon::start(config))?;
            let addr = daemon.tftp_addrs()[0];
            _server = Some((server, daemon));
            addr
        }
    };
    for run in 1..=args.runs {
        let phones = phones_for(&args.client, args.phones);
        let report = runtime.block_on(storm(target, phones, &args.client))?;
        println!("{}", report.result_line(&args.label, run, ""));
        if run < args.runs {
            std::thread::sleep(Duration::from_millis(args.pause_ms));
        }
    }
    Ok(())
}

/// `wait`: retries a read request of `name` until `target` answers, for at
/// most `seconds`.
pub(crate) fn wait_command(target: &str, name: &str, seconds: f64) -> Result<()> {
    let target = resolve_target(target)?;
    let runtime = client_runtime(1)?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    runtime.block_on(async {
        let options = GetOptions {
            retransmit: Duration::from_millis(200),
            max_retries: 1,
            ..GetOptions::default()
        };
        loop {
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            match get_with_socket(&socket, target, name, &options).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => bail!("{target} does not answer: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
}
