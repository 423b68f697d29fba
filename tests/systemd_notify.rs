//! `tftproxy serve` under a fake systemd: the real binary, a temporary
//! config on free loopback ports, and `NOTIFY_SOCKET` pointing at a Unix
//! datagram socket this test binds. Checks the `Type=notify` protocol:
//! `READY=1` once the listeners answer, `WATCHDOG=1` pings, `STATUS=` with
//! live counts, `RELOADING=1` then `READY=1` on SIGHUP (also for an invalid
//! config, which is rejected while the old one keeps serving), `STOPPING=1`
//! on SIGTERM and exit status 0.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;

use support::process::{free_port, serve_by_hand, Reaper};

const WAIT: Duration = Duration::from_secs(15);

fn write_config(path: &Path, root: &Path, admin: SocketAddr, max_transfers: u32, level: &str) {
    std::fs::write(
        path,
        format!(
            r#"
[tftp]
listen = ["127.0.0.1:0"]
root = "{}"
max_transfers = {max_transfers}

[http]
listen = ["127.0.0.1:0"]

[admin]
listen = "{admin}"

[log]
level = "{level}"
"#,
            root.display()
        ),
    )
    .unwrap();
}

/// The notifications the daemon sent, as lines (`READY=1`, `STATUS=…`).
struct FakeSystemd {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl FakeSystemd {
    fn bind(path: &Path) -> FakeSystemd {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        FakeSystemd {
            socket,
            seen: Vec::new(),
        }
    }

    /// Waits for a datagram with the line `want`; returns every line
    /// received meanwhile (the matching datagram's included).
    fn wait_for(&mut self, want: &str, child: &mut Child) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut lines = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let datagram: Vec<String> = text.lines().map(str::to_owned).collect();
                    self.seen.extend(datagram.iter().cloned());
                    let found = datagram.iter().any(|l| l == want);
                    lines.extend(datagram);
                    if found {
                        return lines;
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    if let Some(status) = child.try_wait().unwrap() {
                        panic!("tftproxy exited ({status}) before {want}; got {lines:?}");
                    }
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        panic!("no {want} within {WAIT:?}; got {lines:?}");
    }
}

/// Everything the (exited) child wrote to its piped standard error.
fn stderr_of(child: &mut Child) -> String {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).unwrap();
    }
    stderr
}

fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill failed");
}

fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tftproxy did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET path` on the admin front; the status code.
fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&admin, Duration::from_secs(2)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn ready_reload_watchdog_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.xml"), "a").unwrap();
    let config = dir.path().join("tftproxy.toml");
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    write_config(&config, &root, admin, 100, "info");
    let notify_path = dir.path().join("notify.sock");
    let mut systemd = FakeSystemd::bind(&notify_path);

    // `exec` keeps the shell's PID, so WATCHDOG_PID can name the daemon as
    // systemd would.
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" serve -c "$1""#)
        .arg(env!("CARGO_BIN_EXE_tftproxy"))
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .env("JOURNAL_STREAM", "8:1234")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tftproxy starts");
    let mut reaper = Reaper(child);
    let child = &mut reaper.0;

    let lines = systemd.wait_for("READY=1", child);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("STATUS=") && l.contains("transfers active")),
        "{lines:?}"
    );
    // READY means serving: the admin front answers at once.
    let (status, body) = admin_get(admin, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\": \"ok\""), "{body}");

    // Watchdog pings every WATCHDOG_USEC / 2.
    systemd.wait_for("WATCHDOG=1", child);

    // SIGHUP with a valid new config: RELOADING=1, then READY=1. Its log
    // level applies at once: "configuration reloaded" (info) is not shown.
    write_config(&config, &root, admin, 50, "warn");
    signal(child, libc::SIGHUP);
    systemd.wait_for("RELOADING=1", child);
    systemd.wait_for("READY=1", child);
    let (_, metrics) = admin_get(admin, "/metrics");
    assert!(
        metrics.contains("tftproxy_config_reloads_total{result=\"applied\"} 1"),
        "{metrics}"
    );

    // SIGHUP with an invalid config: rejected, the old one keeps serving.
    std::fs::write(&config, "[tftp]\nmax_block_size = 70000\n").unwrap();
    signal(child, libc::SIGHUP);
    systemd.wait_for("RELOADING=1", child);
    systemd.wait_for("READY=1", child);
    let (status, metrics) = admin_get(admin, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tftproxy_config_reloads_total{result=\"rejected\"} 1"),
        "{metrics}"
    );

    // SIGTERM: STOPPING=1 with the stop time-out extended to the grace
    // (default 10 s) and 5 s more, then a clean exit.
    signal(child, libc::SIGTERM);
    let lines = systemd.wait_for("STOPPING=1", child);
    assert!(
        lines.iter().any(|l| l == "EXTEND_TIMEOUT_USEC=15000000"),
        "{lines:?}"
    );
    let status = wait_exit(child);
    let stderr = stderr_of(child);
    assert!(status.success(), "exit {status}; log:\n{stderr}");
    // Under journald (JOURNAL_STREAM set) lines carry no timestamp of their
    // own but a syslog priority journald reads: `<6> INFO …`.
    // (The first line is a warning when the receive buffer cannot be
    // raised, as for an unprivileged user.)
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("<6> INFO") || first.starts_with("<4> WARN"),
        "{first}"
    );
    // The invalid config was reported with its key, as an error (<3>).
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("<3>") && l.contains("max_block_size")),
        "{stderr}"
    );
    assert!(stderr.contains("tftproxy started"), "{stderr}");
    assert!(!stderr.contains("configuration reloaded"), "{stderr}");
    assert!(
        !stderr.contains("\x1b["),
        "colour codes in the log: {stderr}"
    );
}

#[test]
fn no_notify_socket_no_problem() {
    // Without NOTIFY_SOCKET (run by hand) serve runs and stops the same way;
    // a second SIGTERM during the grace time stops it at once; logs to a
    // pipe carry no colour codes.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("big.bin"), vec![7u8; 1 << 20]).unwrap();
    let config = dir.path().join("tftproxy.toml");
    // Ports picked free can be taken by a test running beside this one
    // before the daemon binds them: a daemon refused its ports is started
    // again on others.
    let (mut reaper, tftp) = (0..5)
        .find_map(|_| start_on_free_ports(&config, &root))
        .expect("free ports within five tries");
    let child = &mut reaper.0;
    // A transfer that does not end by itself for a minute: the phone asks
    // for a 5 s time-out, acknowledges the OACK (so it has answered and
    // `max_retries` applies), then never acknowledges DATA 1.
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    phone
        .send_to(b"\x00\x01big.bin\x00octet\x00timeout\x005\x00", tftp)
        .unwrap();
    phone
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut first = [0u8; 600];
    let (n, transfer) = phone.recv_from(&mut first).expect("OACK");
    assert_eq!(&first[..2], b"\x00\x06", "{n} bytes");
    phone.send_to(b"\x00\x04\x00\x00", transfer).unwrap();
    let (n, _) = phone.recv_from(&mut first).expect("DATA 1");
    assert_eq!(&first[..4], b"\x00\x03\x00\x01", "{n} bytes");

    signal(child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first SIGTERM waits for the transfer"
    );
    let second = Instant::now();
    signal(child, libc::SIGTERM);
    assert!(wait_exit(child).success());
    // Well before the transfer would give up by itself (about a minute).
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "{:?}",
        second.elapsed()
    );
    let stderr = stderr_of(child);
    assert!(stderr.contains("abandoning transfers"), "{stderr}");
    assert!(
        !stderr.contains("\x1b["),
        "colour codes in the log: {stderr}"
    );
}

/// Starts `serve` (no `NOTIFY_SOCKET`) on free TFTP and admin ports and
/// waits for its admin front; `None` when one of the ports was taken in the
/// meantime.
fn start_on_free_ports(config: &Path, root: &Path) -> Option<(Reaper, SocketAddr)> {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let tftp: SocketAddr = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    std::fs::write(
        config,
        format!(
            "[tftp]\nlisten = [\"{tftp}\"]\nroot = \"{}\"\nshutdown_grace = \"1h\"\n\n\
             [admin]\nlisten = \"{admin}\"\n",
            root.display()
        ),
    )
    .unwrap();
    let child = serve_by_hand(config)
        .env_remove("RUST_LOG")
        .spawn()
        .unwrap();
    let mut reaper = Reaper(child);
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect_timeout(&admin, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "admin never answered");
        if reaper.0.try_wait().unwrap().is_some() {
            let stderr = stderr_of(&mut reaper.0);
            assert!(stderr.contains("in use"), "tftproxy exited: {stderr}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((reaper, tftp))
}
