//! Boot-storm load generator (a benchmark, not a test; `harness = false`).
//!
//! N simulated phones, all starting at the same instant, each fetching in
//! order what a phone fetches when it boots: its own 13 KB configuration
//! `SEP<MAC>.cnf.xml`, an 8 KB trust list, a 5 KB softkey file and a 1.5 KB
//! default configuration. Each download is done by the library client with a
//! phone's behaviour: a 1 s retransmit, 5 retries, no options (like a 7940)
//! unless `--blksize` is given. Each phone has its own source address
//! (127.1.x.y; `--same-ip` for 127.0.0.1) and a fresh UDP socket, i.e. a new
//! transfer ID, per file as RFC 1350 asks (`--reuse-socket`: one socket per
//! phone for all its files).
//!
//! Besides files/s, failures and latency percentiles, each `RESULT` line
//! tells where packets were lost: drops at the target's listening socket and
//! at the phones' sockets (`/proc/net/udp`, `SO_MEMINFO`), the system-wide
//! UDP `RcvbufErrors`, and the CPU time of the generator, of the server
//! (`--server-pid`) and of the whole machine during the storm.
//!
//! Subcommands (run with `cargo bench --bench boot_storm -- <subcommand>`, or
//! the built binary directly; `benches/run.sh` drives them):
//!
//! * `make-root DIR --phones N`: writes the files of N phones into DIR.
//! * `storm [--target HOST:PORT] --phones N --runs R --label L`: one storm per
//!   run against a server (without `--target`, tftproxy is started in-process
//!   on its own runtime, serving `--root`). Prints a `RESULT` line per run.
//! * `summarize FILE...`: medians of `RESULT` lines, as markdown tables.
//! * `wait --target HOST:PORT`: waits until a server answers (for scripts).
//! * `proxy --phones N --clusters 4 --delay-ms 20`: tftproxy in front of HTTP
//!   clusters on loopback; a cold storm then a warm one; counts upstream
//!   requests at the clusters.
//! * `first-byte --clusters 10 --delay-ms 50 --runs R`: time to the first
//!   DATA block when the file is only on the last cluster, parallel vs
//!   sequential strategy.
//! * `phases --log tftproxy.log --dump FILE`: joins a storm's `--dump` with
//!   tftproxy's `served ... ms=` log lines: how much of each file's latency
//!   was spent before its transfer task started (listener, queueing) and how
//!   much inside the transfer.

#[path = "../tests/support/http_cluster.rs"]
mod http_cluster;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};
use tokio::net::UdpSocket;

use tftproxy::config::{ClusterConfig, Config, Strategy};
use tftproxy::daemon::Daemon;
use tftproxy::tftp::client::{get_with_socket, GetError, GetOptions};
use tftproxy::tftp::receive::ReceiveError;

// ---- the files of one phone --------------------------------------------------

const CONFIG_SIZE: usize = 13_000;
const TRUST_NAME: &str = "ITLFile.tlv";
const TRUST_SIZE: usize = 8_000;
const SOFTKEY_NAME: &str = "SKStandard.xml.sgn";
const SOFTKEY_SIZE: usize = 5_000;
const DEFAULT_NAME: &str = "XMLDefault.cnf.xml";
const DEFAULT_SIZE: usize = 1_500;

fn mac(phone: usize) -> String {
    format!("{:012X}", 0x0011_2200_0000u64 + phone as u64)
}

fn config_name(phone: usize) -> String {
    format!("SEP{}.cnf.xml", mac(phone))
}

/// The names a phone asks for, in order, with their sizes.
fn phone_files(phone: usize) -> Vec<(String, usize)> {
    vec![
        (config_name(phone), CONFIG_SIZE),
        (TRUST_NAME.to_owned(), TRUST_SIZE),
        (SOFTKEY_NAME.to_owned(), SOFTKEY_SIZE),
        (DEFAULT_NAME.to_owned(), DEFAULT_SIZE),
    ]
}

/// Deterministic filler (xorshift), so a wrong byte count is visible.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b' ' + (x % 94) as u8
        })
        .collect()
}

fn make_root(dir: &Path, phones: usize) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    for phone in 0..phones {
        let path = dir.join(config_name(phone));
        if !path.exists() {
            std::fs::write(&path, content(CONFIG_SIZE, phone as u64))?;
        }
    }
    std::fs::write(dir.join(TRUST_NAME), content(TRUST_SIZE, 1 << 40))?;
    std::fs::write(dir.join(SOFTKEY_NAME), content(SOFTKEY_SIZE, 2 << 40))?;
    std::fs::write(dir.join(DEFAULT_NAME), content(DEFAULT_SIZE, 3 << 40))?;
    Ok(())
}

// ---- command line ------------------------------------------------------------

#[derive(Parser)]
#[command(name = "boot_storm", about = "TFTP boot-storm load generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, global = true, hide = true)]
    bench: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Write the files of N phones into DIR.
    MakeRoot {
        dir: PathBuf,
        #[arg(long, default_value_t = 5000)]
        phones: usize,
    },
    /// Run boot storms against a server and print a RESULT line per run.
    Storm(StormArgs),
    /// Medians of RESULT lines (from files, or stdin with `-`), as markdown.
    Summarize {
        files: Vec<PathBuf>,
        /// The label of tftproxy's rows (ratios are tftproxy / best other).
        #[arg(long, default_value = "tftproxy")]
        ours: String,
    },
    /// Wait until a TFTP server answers a read request.
    Wait {
        #[arg(long)]
        target: String,
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// tftproxy in front of HTTP clusters: cold storm, then warm storm.
    Proxy(ProxyArgs),
    /// Time to first byte, file on the last of K clusters: parallel vs sequential.
    FirstByte(FirstByteArgs),
    /// Split per-file latency into "before the transfer" and "in the transfer"
    /// by joining a storm's --dump with tftproxy's log.
    Phases {
        #[arg(long)]
        log: PathBuf,
        #[arg(long)]
        dump: PathBuf,
    },
}

#[derive(Args, Clone)]
struct ClientArgs {
    /// Ask for this block size (default: no options, like a 7940).
    #[arg(long)]
    blksize: Option<u16>,
    /// Phone retransmit time-out, milliseconds.
    #[arg(long, default_value_t = 1000)]
    retransmit_ms: u64,
    #[arg(long, default_value_t = 5)]
    max_retries: u32,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// One socket (one source port) per phone for all its files. By default
    /// each file gets a fresh socket, i.e. a new transfer ID, as RFC 1350
    /// asks of a client.
    #[arg(long)]
    reuse_socket: bool,
    /// Send every phone's requests from 127.0.0.1. By default each phone has
    /// its own source address 127.1.x.y, as on a real network: then a port
    /// the kernel hands out again cannot receive a lingering transfer's
    /// retransmissions meant for another phone.
    #[arg(long)]
    same_ip: bool,
    /// Write one line per file (phone address, name, start and latency in
    /// ms, outcome) to this file, to match against a server's log.
    #[arg(long)]
    dump: Option<PathBuf>,
    /// The server's process id, to report its CPU time during each storm
    /// (children it reaped included).
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Args)]
struct StormArgs {
    /// The server; without it tftproxy is started in-process serving --root.
    #[arg(long)]
    target: Option<String>,
    /// Root for the in-process tftproxy (default: a temporary directory).
    #[arg(long)]
    root: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    phones: usize,
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Name printed in RESULT lines.
    #[arg(long, default_value = "tftproxy")]
    label: String,
    /// Pause between runs, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pause_ms: u64,
    /// Worker threads of the in-process tftproxy.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct ProxyArgs {
    #[arg(long, default_value_t = 1000)]
    phones: usize,
    #[arg(long, default_value_t = 4)]
    clusters: usize,
    /// Latency each HTTP cluster adds to every answer.
    #[arg(long, default_value_t = 20)]
    delay_ms: u64,
    /// `cache.device_ttl` for the daemon, seconds (default 5 s would make
    /// the warm storm fetch device files again by design).
    #[arg(long, default_value_t = 3600)]
    device_ttl_s: u64,
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct FirstByteArgs {
    #[arg(long, default_value_t = 10)]
    clusters: usize,
    #[arg(long, default_value_t = 50)]
    delay_ms: u64,
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    raise_open_file_limit();
    match cli.command {
        Command::MakeRoot { dir, phones } => make_root(&dir, phones),
        Command::Storm(args) => storm_command(args),
        Command::Summarize { files, ours } => summarize(&files, &ours),
        Command::Wait {
            target,
            name,
            seconds,
        } => wait_command(&target, &name, seconds),
        Command::Proxy(args) => proxy_command(args),
        Command::FirstByte(args) => first_byte_command(args),
        Command::Phases { log, dump } => phases_command(&log, &dump),
    }
}

fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < 12_000 => {
            eprintln!("warning: open file limit is {limit}; 5,000 phones need more")
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot raise the open file limit: {e}"),
    }
}

fn client_runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("phones")
        .enable_all()
        .build()?)
}

/// A runtime on its own threads, kept alive by the returned guard, for
/// whatever plays the server side in-process.
struct ServerRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl ServerRuntime {
    fn new(name: &str, threads: usize) -> Result<ServerRuntime> {
        Ok(ServerRuntime {
            runtime: Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads.max(1))
                    .thread_name(name)
                    .enable_all()
                    .build()?,
            ),
        })
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().unwrap().block_on(f)
    }
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn resolve_target(target: &str) -> Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("target {target}"))?
        .next()
        .with_context(|| format!("target {target}: no address"))
}

// ---- one storm ---------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Failure {
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

struct Phone {
    source: IpAddr,
    files: Vec<(String, usize)>,
}

struct StormReport {
    phones: usize,
    files_ok: usize,
    failures: BTreeMap<Failure, usize>,
    wall: Duration,
    latencies: Vec<Duration>,
    /// Sorted latencies of the phones' 1st, 2nd, ... file.
    by_position: Vec<Vec<Duration>>,
    /// Files that took at least a retransmit time-out (a request or a block
    /// was lost or ignored somewhere).
    slow: usize,
    /// Loss at the target's listening socket (`/proc/net/udp` drops).
    listener_drops: Option<u64>,
    /// Loss at the phones' own sockets.
    client_drops: u64,
    /// System-wide UDP receive-buffer errors during the storm.
    rcvbuf_errors: i64,
    /// CPU seconds the load generator used during the storm.
    client_cpu: f64,
    /// CPU seconds the server used (when its pid is known).
    server_cpu: Option<f64>,
    /// The whole machine during the storm: CPU seconds busy (every process,
    /// softirq included) and idle, from `/proc/stat`.
    machine_busy: f64,
    machine_idle: f64,
}

impl StormReport {
    fn files_per_s(&self) -> f64 {
        self.files_ok as f64 / self.wall.as_secs_f64()
    }

    fn failed(&self) -> usize {
        self.failures.values().sum()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        percentile(&self.latencies, p).as_secs_f64() * 1000.0
    }

    fn result_line(&self, label: &str, run: usize, extra: &str) -> String {
        let failures: Vec<String> = self
            .failures
            .iter()
            .map(|(k, v)| format!("{k:?}:{v}"))
            .collect();
        format!(
            "RESULT label={label} phones={} run={run} files={} files_per_s={:.0} failures={} \
             p50_ms={:.1} p99_ms={:.1} max_ms={:.1} slow_1s={} wall_s={:.3} listener_drops={} \
             client_drops={} rcvbuf_errors={} client_cpu_s={:.2} server_cpu_s={} \
             machine_busy_s={:.2} machine_idle_s={:.2} p99_by_file_ms={}{}{}",
            self.phones,
            self.files_ok,
            self.files_per_s(),
            self.failed(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0),
            self.slow,
            self.wall.as_secs_f64(),
            self.listener_drops
                .map_or_else(|| "-".to_owned(), |d| d.to_string()),
            self.client_drops,
            self.rcvbuf_errors,
            self.client_cpu,
            self.server_cpu
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.2}")),
            self.machine_busy,
            self.machine_idle,
            self.by_position
                .iter()
                .map(|v| format!("{:.0}", percentile(v, 0.99).as_secs_f64() * 1000.0))
                .collect::<Vec<_>>()
                .join("/"),
            if failures.is_empty() {
                String::new()
            } else {
                format!(" kinds={}", failures.join(","))
            },
            extra,
        )
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
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
        retransmit: Duration::from_millis(client.retransmit_ms),
        max_retries: client.max_retries,
        ..GetOptions::default()
    }
}

/// Drops counted on one socket (`SO_MEMINFO`, `SK_MEMINFO_DROPS`).
fn drops_of(socket: &UdpSocket) -> u64 {
    use std::os::fd::AsRawFd;
    let mut info = [0u32; 9];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: a valid descriptor, a buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc == 0 && len as usize >= 9 * 4 {
        u64::from(info[8])
    } else {
        0
    }
}

/// What one phone did.
struct PhoneRun {
    results: Vec<FileResult>,
    drops: u64,
    errors: Vec<String>,
}

/// Runs one storm: binds every phone's socket, then starts them all at once.
async fn storm(target: SocketAddr, phones: Vec<Phone>, client: &ClientArgs) -> Result<StormReport> {
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
    let (go_tx, go_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = tokio::task::JoinSet::new();
    for (phone, socket) in phones.into_iter().zip(sockets) {
        let mut go = go_rx.clone();
        let options = options.clone();
        tasks.spawn(async move {
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
        });
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
            // Group messages by their text without the file name's MAC.
            let key = e
                .split_once(": ")
                .map(|(n, m)| {
                    let n = if n.starts_with("SEP") {
                        "SEP<MAC>.cnf.xml"
                    } else {
                        n
                    };
                    format!("{n}: {m}")
                })
                .unwrap_or(e);
            *errors.entry(key).or_insert(0) += 1;
        }
    }
    let cpu = cpu_seconds() - cpu_before;
    if let Some(path) = &client.dump {
        use std::fmt::Write as _;
        let mut text = String::new();
        for r in &all {
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

fn make_phones(count: usize, spread_ips: bool) -> Vec<Phone> {
    (0..count)
        .map(|i| Phone {
            source: phone_source(i, spread_ips),
            files: phone_files(i),
        })
        .collect()
}

// ---- kernel counters -----------------------------------------------------------

/// `Udp:` counters of `/proc/net/snmp` (system-wide).
fn udp_counters() -> HashMap<String, i64> {
    let Ok(text) = std::fs::read_to_string("/proc/net/snmp") else {
        return HashMap::new();
    };
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    if lines.len() < 2 {
        return HashMap::new();
    }
    lines[0]
        .split_whitespace()
        .zip(lines[1].split_whitespace())
        .skip(1)
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

/// Rows of `/proc/net/udp` (and udp6): (local port, local address hex, drops).
fn udp_sockets() -> Vec<(u16, String, u64)> {
    let mut rows = Vec::new();
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 13 {
                continue;
            }
            let Some((addr, port)) = fields[1].split_once(':') else {
                continue;
            };
            let Ok(port) = u16::from_str_radix(port, 16) else {
                continue;
            };
            let drops = fields[fields.len() - 1].parse().unwrap_or(0);
            rows.push((port, addr.to_owned(), drops));
        }
    }
    rows
}

/// Drops counted on the socket(s) bound to the target's port (the
/// listener), when it runs on this machine.
fn target_port_drops(target: SocketAddr) -> Option<u64> {
    let rows: Vec<u64> = udp_sockets()
        .into_iter()
        .filter(|(port, _, _)| *port == target.port())
        .map(|(_, _, d)| d)
        .collect();
    (!rows.is_empty()).then(|| rows.iter().sum())
}

/// User + system CPU time of this process, seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// (busy, idle) CPU seconds of the whole machine since boot (`/proc/stat`).
fn machine_cpu() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0.0, 0.0);
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0.0, 0.0);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    let busy: f64 = v.iter().take(8).sum::<f64>() - idle;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (busy / hz, idle / hz)
}

/// utime + stime + cutime + cstime of a process, seconds.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime is field 14 of the whole line, i.e. index 11 after the name.
    let ticks: f64 = fields
        .get(11..15)?
        .iter()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

// ---- storm command -------------------------------------------------------------

fn storm_command(args: StormArgs) -> Result<()> {
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
            make_root(&root, args.phones)?;
            let server = ServerRuntime::new("tftproxy", args.server_threads)?;
            let mut config = Config::default();
            config.tftp.listen = vec!["127.0.0.1:0".parse().unwrap()];
            config.tftp.root = Some(root);
            config.tftp.max_transfers = 10_000;
            let daemon = server.block_on(Daemon::start(config))?;
            let addr = daemon.tftp_addrs()[0];
            _server = Some((server, daemon));
            addr
        }
    };
    for run in 1..=args.runs {
        let phones = make_phones(args.phones, !args.client.same_ip);
        let report = runtime.block_on(storm(target, phones, &args.client))?;
        println!("{}", report.result_line(&args.label, run, ""));
        if run < args.runs {
            std::thread::sleep(Duration::from_millis(args.pause_ms));
        }
    }
    Ok(())
}

fn wait_command(target: &str, name: &str, seconds: f64) -> Result<()> {
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

// ---- summarize -----------------------------------------------------------------

fn parse_result(line: &str) -> Option<HashMap<String, String>> {
    let rest = line.trim().strip_prefix("RESULT ")?;
    Some(
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

type Row = HashMap<String, String>;

fn field_median(rows: &[Row], key: &str) -> f64 {
    let mut v: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.get(key).and_then(|x| x.parse().ok()))
        .collect();
    median(&mut v)
}

fn field_max(rows: &[Row], key: &str) -> f64 {
    rows.iter()
        .filter_map(|r| r.get(key).and_then(|x| x.parse::<f64>().ok()))
        .fold(0.0, f64::max)
}

/// Median CPU microseconds per file served, of `key` (a CPU seconds field).
fn cpu_per_file(rows: &[Row], key: &str) -> String {
    let mut v: Vec<f64> = rows
        .iter()
        .filter_map(|r| {
            let cpu: f64 = r.get(key)?.parse().ok()?;
            let files: f64 = r.get("files")?.parse().ok()?;
            (files > 0.0).then(|| cpu / files * 1e6)
        })
        .collect();
    let m = median(&mut v);
    if m.is_nan() {
        "-".to_owned()
    } else {
        format!("{m:.0}")
    }
}

/// Rows grouped by a key, groups in order of first appearance.
fn group_by(rows: Vec<Row>, key: impl Fn(&Row) -> String) -> Vec<(String, Vec<Row>)> {
    let mut groups: Vec<(String, Vec<Row>)> = Vec::new();
    for row in rows {
        let k = key(&row);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(row),
            None => groups.push((k, vec![row])),
        }
    }
    groups
}

fn summarize(files: &[PathBuf], ours: &str) -> Result<()> {
    let mut text = String::new();
    for file in files {
        if file.as_os_str() == "-" {
            use std::io::Read;
            std::io::stdin().read_to_string(&mut text)?;
        } else {
            text.push_str(&std::fs::read_to_string(file)?);
        }
        text.push('\n');
    }
    let rows: Vec<Row> = text.lines().filter_map(parse_result).collect();
    let label = |r: &Row| r.get("label").cloned().unwrap_or_default();
    let (storms, rest): (Vec<Row>, Vec<Row>) = rows
        .into_iter()
        .partition(|r| !label(r).starts_with("proxy-") && label(r) != "first-byte");
    let (proxy, first): (Vec<Row>, Vec<Row>) = rest
        .into_iter()
        .partition(|r| label(r).starts_with("proxy-"));
    if !storms.is_empty() {
        storm_tables(storms, ours);
    }
    if !proxy.is_empty() {
        println!();
        println!("| storm | runs | files/s | failures (max) | p50 ms | p99 ms | p99 ms by file (cnf/ITL/SK/default) | upstream requests (new) | upstream total per distinct name | max per (cluster, name) | TCP connections per cluster |");
        println!("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|");
        for (label, rows) in group_by(proxy, label) {
            println!(
                "| {label} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {:.0} (max {:.0}) | {:.2} | {:.0} | {} |",
                rows.len(),
                field_median(&rows, "files_per_s"),
                field_max(&rows, "failures"),
                field_median(&rows, "p50_ms"),
                field_median(&rows, "p99_ms"),
                rows.iter().filter_map(|r| r.get("p99_by_file_ms").cloned()).collect::<Vec<_>>().join(", "),
                field_median(&rows, "upstream_new"),
                field_max(&rows, "upstream_new"),
                field_median(&rows, "per_distinct_name"),
                field_max(&rows, "max_per_cluster_name"),
                rows.iter().filter_map(|r| r.get("upstream_connections").cloned()).collect::<Vec<_>>().join(", "),
            );
        }
    }
    if !first.is_empty() {
        println!();
        println!("| strategy | clusters | delay per cluster | invocations | median time to first byte | all medians ms |");
        println!("|---|---:|---:|---:|---:|---|");
        for (strategy, rows) in group_by(first, |r| r.get("strategy").cloned().unwrap_or_default())
        {
            println!(
                "| {} | {} | {} ms | {} | {:.1} ms | {} |",
                strategy.to_lowercase(),
                rows[0].get("clusters").cloned().unwrap_or_default(),
                rows[0].get("delay_ms").cloned().unwrap_or_default(),
                rows.len(),
                field_median(&rows, "median_ms"),
                rows.iter()
                    .filter_map(|r| r.get("median_ms").cloned())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
    }
    Ok(())
}

fn storm_tables(rows: Vec<Row>, ours: &str) {
    // phones -> labels -> rows
    let mut groups: BTreeMap<usize, Vec<(String, Vec<Row>)>> = BTreeMap::new();
    for (phones, rows) in group_by(rows, |r| r.get("phones").cloned().unwrap_or_default()) {
        let phones: usize = phones.parse().unwrap_or(0);
        groups.insert(
            phones,
            group_by(rows, |r| r.get("label").cloned().unwrap_or_default()),
        );
    }
    println!("| phones | server | runs | files/s | failures (median / max) | p50 ms | p99 ms | files ≥ 1 s | listener drops | server CPU µs/file | client CPU µs/file |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (phones, labels) in &groups {
        for (label, rows) in labels {
            let drops = field_median(rows, "listener_drops");
            println!(
                "| {phones} | {label} | {} | {:.0} | {:.0} / {:.0} | {:.1} | {:.1} | {:.0} | {} | {} | {} |",
                rows.len(),
                field_median(rows, "files_per_s"),
                field_median(rows, "failures"),
                field_max(rows, "failures"),
                field_median(rows, "p50_ms"),
                field_median(rows, "p99_ms"),
                field_median(rows, "slow_1s"),
                if drops.is_nan() {
                    "-".to_owned()
                } else {
                    format!("{drops:.0}")
                },
                cpu_per_file(rows, "server_cpu_s"),
                cpu_per_file(rows, "client_cpu_s"),
            );
        }
    }
    println!();
    println!("| phones | {ours} files/s | best other | its files/s | ratio | {ours} p99 ms | its p99 ms | {ours} failures | its failures |");
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    let mut ours_at = BTreeMap::new();
    for (phones, labels) in &groups {
        let Some((_, mine)) = labels.iter().find(|(l, _)| l == ours) else {
            continue;
        };
        let mine_fps = field_median(mine, "files_per_s");
        ours_at.insert(*phones, mine_fps);
        let best = labels
            .iter()
            .filter(|(l, _)| l != ours)
            .map(|(l, rows)| (l, rows, field_median(rows, "files_per_s")))
            .max_by(|a, b| a.2.partial_cmp(&b.2).unwrap());
        if let Some((label, rows, fps)) = best {
            println!(
                "| {phones} | {mine_fps:.0} | {label} | {fps:.0} | {:.2}× | {:.1} | {:.1} | {:.0} | {:.0} |",
                mine_fps / fps,
                field_median(mine, "p99_ms"),
                field_median(rows, "p99_ms"),
                field_median(mine, "failures"),
                field_median(rows, "failures"),
            );
        }
    }
    if let (Some((&lo, &at_lo)), Some((&hi, &at_hi))) =
        (ours_at.iter().next(), ours_at.iter().next_back())
    {
        if lo != hi {
            println!();
            println!(
                "{ours}: files/s at {hi} phones = {:.0} % of its figure at {lo} phones.",
                100.0 * at_hi / at_lo
            );
        }
    }
}

// ---- phases --------------------------------------------------------------------

/// Removes ANSI colour sequences.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `key=` in a tracing text line (quotes removed).
fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()
    } else {
        rest.split_whitespace().next()
    }
}

fn phases_command(log: &Path, dump: &Path) -> Result<()> {
    // (client address, name) -> server-side milliseconds of the transfer.
    let mut served: HashMap<(String, String), f64> = HashMap::new();
    for line in std::fs::read_to_string(log)?.lines() {
        let line = strip_ansi(line);
        if !line.contains(" served ") {
            continue;
        }
        if let (Some(client), Some(name), Some(ms)) = (
            log_field(&line, "client"),
            log_field(&line, "name"),
            log_field(&line, "ms").and_then(|m| m.parse().ok()),
        ) {
            served.insert((client.to_owned(), name.to_owned()), ms);
        }
    }
    /// Client latency, time before the transfer task, time inside it (ms).
    type Samples = (Vec<f64>, Vec<f64>, Vec<f64>);
    let mut by_kind: BTreeMap<&str, Samples> = BTreeMap::new();
    let mut matched = 0;
    for line in std::fs::read_to_string(dump)?.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [addr, name, _start, latency, "ok"] = f[..] else {
            continue;
        };
        let Some(&server_ms) = served.get(&(addr.to_owned(), name.to_owned())) else {
            continue;
        };
        let latency: f64 = latency.parse()?;
        matched += 1;
        let kind = if name.starts_with("SEP") {
            "1st file (SEP<MAC>.cnf.xml)"
        } else {
            "files 2-4"
        };
        for k in ["all", kind] {
            let e = by_kind.entry(k).or_default();
            e.0.push(latency);
            e.1.push((latency - server_ms).max(0.0));
            e.2.push(server_ms);
        }
    }
    println!("{matched} files matched between the dump and the log");
    println!("| files | n | client latency p50 / p99 ms | before the transfer task p50 / p99 ms | inside the transfer p50 / p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    let p = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
        v.get(rank - 1).copied().unwrap_or(f64::NAN)
    };
    for (kind, (mut lat, mut pre, mut inside)) in by_kind {
        println!(
            "| {kind} | {} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} |",
            lat.len(),
            p(&mut lat, 0.5),
            p(&mut lat, 0.99),
            p(&mut pre, 0.5),
            p(&mut pre, 0.99),
            p(&mut inside, 0.5),
            p(&mut inside, 0.99),
        );
    }
    Ok(())
}

// ---- proxy storm ---------------------------------------------------------------

fn cluster_config(index: usize, url: String) -> ClusterConfig {
    ClusterConfig {
        id: format!("cluster-{}", index + 1),
        description: String::new(),
        fqdn: String::new(),
        enabled: true,
        addresses: vec![url],
    }
}

/// Requests the clusters received, by (cluster, name).
fn upstream_counts(clusters: &[http_cluster::HttpCluster]) -> HashMap<(usize, String), usize> {
    let mut counts = HashMap::new();
    for (i, cluster) in clusters.iter().enumerate() {
        for request in cluster.request_log() {
            *counts.entry((i, request.name)).or_insert(0) += 1;
        }
    }
    counts
}

/// `count` HTTP clusters on `runtime`, each answering after `delay`.
fn start_clusters(
    runtime: &ServerRuntime,
    count: usize,
    delay: Duration,
) -> Vec<http_cluster::HttpCluster> {
    runtime.block_on(async {
        let mut clusters = Vec::new();
        for _ in 0..count {
            let cluster = http_cluster::HttpCluster::start().await;
            cluster.set_delay(delay);
            clusters.push(cluster);
        }
        clusters
    })
}

fn proxy_command(args: ProxyArgs) -> Result<()> {
    let upstream = ServerRuntime::new("clusters", 1)?;
    let server = ServerRuntime::new("tftproxy", args.server_threads)?;
    let runtime = client_runtime(args.client.client_threads)?;
    let delay = Duration::from_millis(args.delay_ms);

    // Device files spread over the clusters; common files on every cluster
    // (each cluster's own copy, as each CUCM cluster signs its own).
    let clusters: Vec<http_cluster::HttpCluster> = start_clusters(&upstream, args.clusters, delay);
    for phone in 0..args.phones {
        clusters[phone % args.clusters].put(config_name(phone), content(CONFIG_SIZE, phone as u64));
    }
    for (i, cluster) in clusters.iter().enumerate() {
        let seed = (i as u64 + 1) << 48;
        cluster.put(TRUST_NAME, content(TRUST_SIZE, seed + 1));
        cluster.put(SOFTKEY_NAME, content(SOFTKEY_SIZE, seed + 2));
        cluster.put(DEFAULT_NAME, content(DEFAULT_SIZE, seed + 3));
    }

    let mut config = Config::default();
    config.tftp.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.tftp.max_transfers = 10_000;
    config.cache.device_ttl = Duration::from_secs(args.device_ttl_s);
    config.remote.strategy = Strategy::Parallel;
    config.clusters = clusters
        .iter()
        .enumerate()
        .map(|(i, c)| cluster_config(i, c.base_url()))
        .collect();
    let daemon = server.block_on(Daemon::start(config))?;
    let target = daemon.tftp_addrs()[0];
    println!(
        "proxy storm: {} phones, {} clusters answering after {} ms, device_ttl {} s, {}",
        args.phones,
        args.clusters,
        args.delay_ms,
        args.device_ttl_s,
        if args.client.same_ip {
            "every phone from 127.0.0.1"
        } else {
            "one source address per phone (127.1.x.y)"
        }
    );

    let distinct_names = args.phones + 3;
    let mut previous_total = 0usize;
    for (round, label) in ["proxy-cold", "proxy-warm"].iter().enumerate() {
        let phones = make_phones(args.phones, !args.client.same_ip);
        let report = runtime.block_on(storm(target, phones, &args.client))?;
        let counts = upstream_counts(&clusters);
        let total: usize = counts.values().sum();
        let new = total - previous_total;
        previous_total = total;
        let names: std::collections::HashSet<&String> = counts.keys().map(|(_, n)| n).collect();
        let max_pair = counts.values().copied().max().unwrap_or(0);
        let device_requests: usize = counts
            .iter()
            .filter(|((_, n), _)| n.starts_with("SEP"))
            .map(|(_, c)| c)
            .sum();
        let common: Vec<String> = [TRUST_NAME, SOFTKEY_NAME, DEFAULT_NAME]
            .iter()
            .map(|name| {
                let per: Vec<String> = (0..args.clusters)
                    .map(|i| {
                        counts
                            .get(&(i, name.to_string()))
                            .copied()
                            .unwrap_or(0)
                            .to_string()
                    })
                    .collect();
                format!("{name}:{}", per.join("/"))
            })
            .collect();
        let connections: Vec<String> = clusters
            .iter()
            .map(|c| c.connections().to_string())
            .collect();
        let extra = format!(
            " upstream_connections={connections} upstream_new={new} upstream_total={total} distinct_names={distinct_names} \
             names_asked={} per_distinct_name={:.2} device_requests={device_requests} \
             max_per_cluster_name={max_pair} common_per_cluster={}",
            names.len(),
            total as f64 / distinct_names as f64,
            common.join(";"),
            connections = connections.join("/"),
        );
        println!("{}", report.result_line(label, round + 1, &extra));
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(daemon);
    drop(server);
    drop(clusters);
    drop(upstream);
    Ok(())
}

// ---- time to first byte ----------------------------------------------------------

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

fn first_byte_command(args: FirstByteArgs) -> Result<()> {
    let upstream = ServerRuntime::new("clusters", 1)?;
    let runtime = client_runtime(1)?;
    let delay = Duration::from_millis(args.delay_ms);
    let clusters: Vec<http_cluster::HttpCluster> = start_clusters(&upstream, args.clusters, delay);
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
