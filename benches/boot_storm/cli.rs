//! The command line: subcommands and their flags (clap). Their doc comments
//! are the `--help` texts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::files::DEFAULT_NAME;

#[derive(Parser)]
#[command(name = "boot_storm", about = "TFTP boot-storm load generator")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, global = true, hide = true)]
    bench: bool,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Write the files of N phones into DIR.
    MakeRoot {
        dir: PathBuf,
        #[arg(long, default_value_t = 5000)]
        phones: usize,
        /// Also write `firmware.bin` (32 MiB) for `--firmware` storms and `hold`.
        #[arg(long)]
        firmware: bool,
    },
    /// Run boot storms against a server and print a RESULT line per run.
    Storm(StormArgs),
    /// Medians of RESULT lines (from files, or stdin with `-`), as markdown.
    Summarize {
        files: Vec<PathBuf>,
        /// The label of tftproxy's rows (ratios are tftproxy / best other).
        #[arg(long, default_value = "tftproxy")]
        ours: String,
        /// The label every server is compared with in the ratio table (the
        /// minimal reference responder, measured in the same run).
        #[arg(long, default_value = "reference")]
        reference: String,
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
    /// Hold N transfers of a large file open (phones that ACK slowly) and
    /// report the server's resident memory.
    Hold(HoldArgs),
    /// Issue 10's flood storms: legitimate phones boot during a flood;
    /// tftproxy runs as a child process in front of scripted clusters.
    Flood(FloodArgs),
}

#[derive(Args, Clone)]
pub(crate) struct ClientArgs {
    /// Ask for this block size (default: no options, like a 7940).
    #[arg(long)]
    pub(crate) blksize: Option<u16>,
    /// Ask for this window size (RFC 7440).
    #[arg(long)]
    pub(crate) windowsize: Option<u16>,
    /// Each phone fetches only `firmware.bin` (32 MiB; `make-root
    /// --firmware`) instead of its four boot files.
    #[arg(long)]
    pub(crate) firmware: bool,
    /// Phone retransmit time-out, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub(crate) retransmit_ms: u64,
    #[arg(long, default_value_t = 5)]
    pub(crate) max_retries: u32,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    pub(crate) client_threads: usize,
    /// One socket (one source port) per phone for all its files. By default
    /// each file gets a fresh socket, i.e. a new transfer ID, as RFC 1350
    /// asks of a client.
    #[arg(long)]
    pub(crate) reuse_socket: bool,
    /// Send every phone's requests from 127.0.0.1. By default each phone has
    /// its own source address 127.1.x.y, as on a real network: then a port
    /// the kernel hands out again cannot receive a lingering transfer's
    /// retransmissions meant for another phone.
    #[arg(long)]
    pub(crate) same_ip: bool,
    /// Write one line per file (phone address, name, start and latency in
    /// ms, outcome) to this file, to match against a server's log.
    #[arg(long)]
    pub(crate) dump: Option<PathBuf>,
    /// The server's process id, to report its CPU time during each storm
    /// (children it reaped included).
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
}

#[derive(Args)]
pub(crate) struct StormArgs {
    /// The server; without it tftproxy is started in-process serving --root.
    #[arg(long)]
    pub(crate) target: Option<String>,
    /// Root for the in-process tftproxy (default: a temporary directory).
    #[arg(long)]
    pub(crate) root: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    pub(crate) phones: usize,
    #[arg(long, default_value_t = 1)]
    pub(crate) runs: usize,
    /// Name printed in RESULT lines.
    #[arg(long, default_value = "tftproxy")]
    pub(crate) label: String,
    /// Pause between runs, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub(crate) pause_ms: u64,
    /// Worker threads of the in-process tftproxy.
    #[arg(long, default_value_t = 2)]
    pub(crate) server_threads: usize,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct ProxyArgs {
    #[arg(long, default_value_t = 1000)]
    pub(crate) phones: usize,
    #[arg(long, default_value_t = 4)]
    pub(crate) clusters: usize,
    /// Latency each HTTP cluster adds to every answer.
    #[arg(long, default_value_t = 20)]
    pub(crate) delay_ms: u64,
    /// `cache.device_ttl` for the daemon, seconds (default 5 s would make
    /// the warm storm fetch device files again by design).
    #[arg(long, default_value_t = 3600)]
    pub(crate) device_ttl_s: u64,
    #[arg(long, default_value_t = 2)]
    pub(crate) server_threads: usize,
    /// After the cold storm, a power cut: tftproxy (with a persistent cache
    /// directory) is stopped and started again, then storms with the
    /// clusters up (`power-cut-up`) and, after another restart, with every
    /// cluster gone (`power-cut-down`). Pass a short `--device-ttl-s` so
    /// device files are stale after the restart.
    #[arg(long)]
    pub(crate) power_cut: bool,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct FirstByteArgs {
    #[arg(long, default_value_t = 10)]
    pub(crate) clusters: usize,
    #[arg(long, default_value_t = 50)]
    pub(crate) delay_ms: u64,
    #[arg(long, default_value_t = 5)]
    pub(crate) runs: usize,
}

#[derive(Args)]
pub(crate) struct HoldArgs {
    #[arg(long)]
    pub(crate) target: String,
    /// The server's process id, whose VmRSS is reported.
    #[arg(long)]
    pub(crate) server_pid: u32,
    /// Transfers held open at once, each from its own address and port.
    #[arg(long, default_value_t = 5000)]
    pub(crate) transfers: usize,
    /// The file each one reads (large enough not to finish).
    #[arg(long, default_value = crate::files::FIRMWARE_NAME)]
    pub(crate) name: String,
    /// Pause before acknowledging each block, milliseconds (below the
    /// server's retransmit time-out, so it neither resends nor gives up).
    #[arg(long, default_value_t = 500)]
    pub(crate) ack_interval_ms: u64,
    /// How long to hold them once all are open, seconds.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
    #[arg(long, default_value = "server")]
    pub(crate) label: String,
}

/// Which flood `flood` runs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FloodKind {
    /// RRQs for distinct unknown names; the cluster answers 404 after 0.5 s.
    UnknownNames,
    /// RRQs for a 256 KiB local file from many addresses, never acknowledged.
    Unacked,
    /// HTTP-front GETs for distinct unknown names; one cluster hangs.
    HttpMiss,
}

#[derive(Args)]
pub(crate) struct FloodArgs {
    /// The tftproxy binary to start.
    #[arg(long, default_value = "target/release/tftproxy")]
    pub(crate) tftproxy: PathBuf,
    #[arg(long, value_enum)]
    pub(crate) kind: FloodKind,
    /// Length of the flood, seconds.
    #[arg(long, default_value_t = 30)]
    pub(crate) seconds: u64,
    /// Flood requests per second.
    #[arg(long, default_value_t = 1000)]
    pub(crate) rate: u64,
    /// Distinct source addresses of the flood (127.2.x.y).
    #[arg(long, default_value_t = 1000)]
    pub(crate) sources: usize,
    /// Legitimate phones, booting once the flood has run a quarter of its time.
    #[arg(long, default_value_t = 200)]
    pub(crate) phones: usize,
    /// Extra lines appended to tftproxy's `[tftp]` table (e.g. "max_transfers = 500").
    #[arg(long)]
    pub(crate) tftp_extra: Vec<String>,
    /// Directory for the configuration, root and log (default: temporary).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}
