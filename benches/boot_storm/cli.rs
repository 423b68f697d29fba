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
pub(crate) struct ClientArgs {
    /// Ask for this block size (default: no options, like a 7940).
    #[arg(long)]
    pub(crate) blksize: Option<u16>,
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
