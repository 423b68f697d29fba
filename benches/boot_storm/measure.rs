//! Measurements around a storm: latency percentiles and medians, UDP
//! drops (one socket's `SO_MEMINFO`, the target's listener in
//! `/proc/net/udp`, the system-wide `RcvbufErrors` of `/proc/net/snmp`) and
//! CPU time (this process, the server's process, the whole machine).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

/// The `p` quantile (0 to 1, nearest rank) of sorted durations; zero when
/// there are none.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of `values` (sorted in place); NaN when empty.
pub(crate) fn median(values: &mut [f64]) -> f64 {
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

/// Drops counted on one socket (`SO_MEMINFO`, `SK_MEMINFO_DROPS`).
pub(crate) fn drops_of(socket: &UdpSocket) -> u64 {
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

/// `Udp:` counters of `/proc/net/snmp` (system-wide).
pub(crate) fn udp_counters() -> HashMap<String, i64> {
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
pub(crate) fn target_port_drops(target: SocketAddr) -> Option<u64> {
    let rows: Vec<u64> = udp_sockets()
        .into_iter()
        .filter(|(port, _, _)| *port == target.port())
        .map(|(_, _, d)| d)
        .collect();
    (!rows.is_empty()).then(|| rows.iter().sum())
}

/// User + system CPU time of this process, seconds.
pub(crate) fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// (busy, idle) CPU seconds of the whole machine since boot (`/proc/stat`).
pub(crate) fn machine_cpu() -> (f64, f64) {
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

/// CPU time of a process, seconds: its threads' own (running and ended),
/// from the kernel's CPU clock of the process, to the nanosecond, plus its
/// reaped children's (`cutime` + `cstime`, 10 ms ticks: a server that forks
/// per transfer). In ticks alone a 200-file storm measured CPU per file to
/// ±50 µs, the whole difference between two servers.
pub(crate) fn process_cpu_seconds(pid: u32) -> Option<f64> {
    // utime is field 14 of the whole line, i.e. index 11 after the name.
    let own = process_clock_seconds(pid).or_else(|| stat_seconds(pid, 11..13))?;
    Some(own + stat_seconds(pid, 13..15)?)
}

/// The process CPU clock of `pid` (`clock_getcpuclockid`), seconds.
fn process_clock_seconds(pid: u32) -> Option<f64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: writes the clock's id into the variable we own.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    // SAFETY: writes into the struct we own.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the clock id came from the kernel.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(now.tv_sec as f64 + now.tv_nsec as f64 / 1e9)
}

/// The sum of `/proc/<pid>/stat` tick fields `fields` (indexes after the
/// command name), seconds.
fn stat_seconds(pid: u32, fields: std::ops::Range<usize>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let values: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = values
        .get(fields)?
        .iter()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}
