//! The `flood` subcommand: issue 10's benchmark. tftproxy (a child process,
//! so that its memory is its own) serves local common files and fetches
//! device files from two HTTP clusters on loopback: `good`, which holds
//! every phone's `SEP<MAC>.cnf.xml` and answers at once, and `slow`, which
//! holds nothing (`good` has the higher priority). During a flood of `--seconds`, once a quarter of it has
//! passed, `--phones` legitimate phones (each its own 127.1.x.y) boot.
//!
//! * `unknown-names`: RRQs for distinct unknown names; `slow` answers 404
//!   after 0.5 s.
//! * `unacked`: RRQs for a 256 KiB local file, never acknowledged.
//! * `http-miss`: HTTP-front GETs for distinct unknown names; `slow` hangs.
//!
//! The flood comes from `--sources` addresses (127.2.x.y), a fresh socket
//! (port) per request, each kept open until the end so that everything the
//! server sends to it is counted: the amplification factor is the UDP
//! payload bytes the server sent to the flood's sockets ÷ the payload bytes
//! they sent it. The `RESULT` line adds the phones' success rate, tftproxy's
//! peak VmRSS (sampled every 100 ms) and the HTTP statuses the flood got.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::ValueEnum as _;
use tftproxy_testkit::http_cluster::HttpCluster;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, UdpSocket};

use crate::cli::{FloodArgs, FloodKind};
use crate::files::{
    config_name, content, CONFIG_SIZE, DEFAULT_NAME, DEFAULT_SIZE, SOFTKEY_NAME, SOFTKEY_SIZE,
    TRUST_NAME, TRUST_SIZE,
};
use crate::hold::rss_kib;
use crate::runtime::{client_runtime, ServerRuntime};
use crate::storm::{make_phones, storm, wait_command};

/// The local file of the `unacked` flood.
const BIG_NAME: &str = "big.bin";
const BIG_SIZE: usize = 256 << 10;
/// How long the flood's sockets keep counting after the flood, for the
/// server's retransmissions.
const GRACE: Duration = Duration::from_secs(10);

/// Kills the child tftproxy however `flood` ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the flood's sockets counted.
#[derive(Default)]
struct FloodCounters {
    requests: AtomicU64,
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
    /// HTTP statuses (or "timeout", "refused") of `http-miss`.
    statuses: Mutex<BTreeMap<String, u64>>,
}

fn free_port(tcp: bool) -> Result<u16> {
    Ok(if tcp {
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    } else {
        std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    })
}

fn flood_source(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 2, (n / 250) as u8, (n % 250 + 1) as u8))
}

/// Root with the common files and the 256 KiB file; the configuration.
fn write_setup(
    dir: &Path,
    tftp: SocketAddr,
    http: SocketAddr,
    slow: &HttpCluster,
    good: &HttpCluster,
    extra: &[String],
) -> Result<std::path::PathBuf> {
    let root = dir.join("root");
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join(TRUST_NAME), content(TRUST_SIZE, 1 << 40))?;
    std::fs::write(root.join(SOFTKEY_NAME), content(SOFTKEY_SIZE, 2 << 40))?;
    std::fs::write(root.join(DEFAULT_NAME), content(DEFAULT_SIZE, 3 << 40))?;
    std::fs::write(root.join(BIG_NAME), content(BIG_SIZE, 5 << 40))?;
    let mut config = format!(
        "[tftp]\nlisten = [\"{tftp}\"]\nroot = \"{}\"\n",
        root.display()
    );
    for line in extra {
        let _ = writeln!(config, "{line}");
    }
    // `good` first: a file found on the cluster of highest priority is
    // served at once, whereas one found on a lower-priority cluster waits
    // for the answers above it, which `slow` delays by design.
    let _ = write!(
        config,
        "[http]\nlisten = [\"{http}\"]\n[log]\nlevel = \"warn\"\n\
         [[cluster]]\nid = \"good\"\naddresses = [\"{}\"]\n\
         [[cluster]]\nid = \"slow\"\naddresses = [\"{}\"]\n",
        good.base_url(),
        slow.base_url()
    );
    let path = dir.join("tftproxy.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// One flood RRQ from a fresh socket; counts what comes back until `until`.
async fn flood_rrq(
    source: IpAddr,
    target: SocketAddr,
    name: String,
    until: Instant,
    c: Arc<FloodCounters>,
) {
    let Ok(socket) = UdpSocket::bind(SocketAddr::new(source, 0)).await else {
        return;
    };
    let mut packet = vec![0, 1];
    packet.extend_from_slice(name.as_bytes());
    packet.extend_from_slice(b"\0octet\0");
    if socket.send_to(&packet, target).await.is_err() {
        return;
    }
    c.requests.fetch_add(1, Ordering::Relaxed);
    c.bytes_out
        .fetch_add(packet.len() as u64, Ordering::Relaxed);
    let mut buffer = vec![0u8; 2048];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout_at(until.into(), socket.recv_from(&mut buffer)).await
    {
        c.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// One flood GET to the HTTP front; records its status.
async fn flood_get(
    source: IpAddr,
    front: SocketAddr,
    name: String,
    until: Instant,
    c: Arc<FloodCounters>,
) {
    let status = async {
        let socket = TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(source, 0)).ok()?;
        let mut stream = socket.connect(front).await.ok()?;
        let request =
            format!("GET /{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        c.requests.fetch_add(1, Ordering::Relaxed);
        let mut head = vec![0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(String::from_utf8_lossy(&head[9..12]).into_owned())
    };
    let status = match tokio::time::timeout_at(until.into(), status).await {
        Ok(Some(s)) => s,
        Ok(None) => "refused".to_owned(),
        Err(_) => "timeout".to_owned(),
    };
    *c.statuses.lock().unwrap().entry(status).or_insert(0) += 1;
}

/// Sends `rate` requests per second for `length`, in 10 ms ticks.
async fn run_flood(args: &FloodArgs, tftp: SocketAddr, http: SocketAddr, c: Arc<FloodCounters>) {
    let start = Instant::now();
    let length = Duration::from_secs(args.seconds);
    let until = start + length + GRACE;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while start.elapsed() < length {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * args.rate as f64) as u64;
        while sent < due {
            let source = flood_source(sent as usize % args.sources.max(1));
            let name = format!("flood-{sent:09}.cnf.xml");
            let c = c.clone();
            match args.kind {
                FloodKind::UnknownNames => tasks.spawn(flood_rrq(source, tftp, name, until, c)),
                FloodKind::Unacked => {
                    tasks.spawn(flood_rrq(source, tftp, BIG_NAME.into(), until, c))
                }
                FloodKind::HttpMiss => tasks.spawn(flood_get(source, http, name, until, c)),
            };
            sent += 1;
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// `flood`: one flood with phones booting during it; one `RESULT` line.
pub(crate) fn flood_command(mut args: FloodArgs) -> Result<()> {
    let _temp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            let t = tempfile::tempdir()?;
            let path = t.path().to_path_buf();
            _temp = t;
            path
        }
    };
    std::fs::create_dir_all(&dir)?;
    let clusters = ServerRuntime::new("clusters", 1)?;
    let (slow, good) =
        clusters.block_on(async { (HttpCluster::start().await, HttpCluster::start().await) });
    match args.kind {
        FloodKind::HttpMiss => slow.set_hang(true),
        _ => slow.set_delay(Duration::from_millis(500)),
    }
    for phone in 0..args.phones {
        good.put(config_name(phone), content(CONFIG_SIZE, phone as u64));
    }
    let tftp = SocketAddr::from(([127, 0, 0, 1], free_port(false)?));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port(true)?));
    let config = write_setup(&dir, tftp, http, &slow, &good, &args.tftp_extra)?;
    let log = std::fs::File::create(dir.join("tftproxy.log"))?;
    let child = Command::new(&args.tftproxy)
        .args(["serve", "-c"])
        .arg(&config)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("start {}", args.tftproxy.display()))?;
    let pid = child.id();
    let _child = ChildGuard(child);
    wait_command(&tftp.to_string(), DEFAULT_NAME, 10.0)?;
    args.client.server_pid = Some(pid);

    // Peak RSS, sampled by a thread of its own.
    let (rss_before, _) = rss_kib(pid).context("tftproxy's /proc status")?;
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some((rss, _)) = rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let counters = Arc::new(FloodCounters::default());
    let runtime = client_runtime(args.client.client_threads)?;
    let report = runtime.block_on(async {
        let flood = run_flood(&args, tftp, http, counters.clone());
        let phones = async {
            tokio::time::sleep(Duration::from_secs(args.seconds) / 4).await;
            storm(tftp, make_phones(args.phones, true), &args.client).await
        };
        let ((), report) = tokio::join!(flood, phones);
        report
    })?;
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let hwm = rss_kib(pid).map_or(0, |(_, hwm)| hwm);

    let requests = counters.requests.load(Ordering::Relaxed);
    let (out, back) = (
        counters.bytes_out.load(Ordering::Relaxed),
        counters.bytes_in.load(Ordering::Relaxed),
    );
    let statuses: Vec<String> = counters
        .statuses
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    let kind = args
        .kind
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_owned());
    let wanted = args.phones * 4;
    let extra =
        format!(
        " kind={kind} flood_s={} flood_rate={} flood_requests={requests} flood_bytes_sent={out} \
         flood_bytes_back={back} amplification={} success_pct={:.2} rss_before_kib={rss_before} \
         rss_peak_kib={} hwm_kib={hwm} http_statuses={}",
        args.seconds,
        args.rate,
        if out == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}", back as f64 / out as f64)
        },
        100.0 * report.files_ok as f64 / wanted.max(1) as f64,
        peak.load(Ordering::Relaxed),
        if statuses.is_empty() { "-".to_owned() } else { statuses.join(",") },
    );
    let label = format!("flood-{kind}");
    println!("{}", report.result_line(&label, 1, &extra));
    Ok(())
}
