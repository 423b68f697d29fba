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
//!
//! * `hold --target HOST:PORT --server-pid PID --transfers 5000`: holds that
//!   many transfers of `firmware.bin` open (each ACK sent slowly) and
//!   prints the server's VmRSS before and while they are open.
//! * `flood --kind unknown-names|unacked|http-miss`: issue 10's flood
//!   storms; tftproxy started as a child process, 200 phones booting during
//!   the flood; their success rate and p99, tftproxy's peak RSS, and the
//!   amplification towards the flood's sources.
//!
//! Modules: [`cli`] (the flags), [`files`] (a phone's files, `make-root`),
//! [`storm`] (the simulated phones, `storm`, `wait`), [`measure`] (drops,
//! CPU, percentiles), [`report`] (`RESULT` lines, `summarize`), [`proxy`],
//! [`first_byte`], [`phases`], [`hold`], [`flood`], [`ratios`] (the tables
//! against the reference responder, of `hold` and of `flood`), [`runtime`] (client and server runtimes).
//! The HTTP clusters are `tftproxy_testkit::http_cluster`, shared with the
//! integration tests.

mod cli;
mod files;
mod first_byte;
mod flood;
mod hold;
mod measure;
mod phases;
mod proxy;
mod ratios;
mod report;
mod runtime;
mod storm;

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> Result<()> {
    let cli = Cli::parse();
    raise_open_file_limit();
    match cli.command {
        Command::MakeRoot {
            dir,
            phones,
            firmware,
        } => files::make_root(&dir, phones, firmware),
        Command::Storm(args) => storm::storm_command(args),
        Command::Summarize {
            files,
            ours,
            reference,
        } => report::summarize(&files, &ours, &reference),
        Command::Wait {
            target,
            name,
            seconds,
        } => storm::wait_command(&target, &name, seconds),
        Command::Proxy(args) => proxy::proxy_command(args),
        Command::FirstByte(args) => first_byte::first_byte_command(args),
        Command::Phases { log, dump } => phases::phases_command(&log, &dump),
        Command::Hold(args) => hold::hold_command(args),
        Command::Flood(args) => flood::flood_command(args),
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
