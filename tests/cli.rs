//! The command line refuses values the protocols do not allow, with a
//! message naming the option and the allowed range, before sending anything.

use std::process::Command;

fn tftproxy(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tftproxy"))
        .args(args)
        .output()
        .expect("run tftproxy");
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn get_refuses_option_values_outside_the_rfcs() {
    for (option, value, allowed) in [
        ("--timeout", "0", "1..=255"),
        ("--blksize", "7", "8..=65464"),
        ("--blksize", "65465", "8..=65464"),
        ("--windowsize", "0", "1..=65535"),
    ] {
        let (code, text) = tftproxy(&["get", "127.0.0.1:9", "x", option, value]);
        assert_eq!(code, 2, "{option} {value}: {text}");
        assert!(
            text.contains(option) && text.contains(allowed),
            "{option} {value}: {text}"
        );
    }
}

#[test]
fn a_missing_config_file_is_one_clear_line() {
    for command in ["serve", "check", "locate"] {
        let mut args = vec![command, "-c", "/nonexistent/tftproxy.toml"];
        if command == "locate" {
            args.push("x");
        }
        let (code, text) = tftproxy(&args);
        assert_eq!(code, 1, "{command}: {text}");
        assert!(
            text.contains("/nonexistent/tftproxy.toml"),
            "{command}: {text}"
        );
        assert_eq!(
            text.matches("No such file or directory").count(),
            1,
            "{command}: the cause is said once: {text}"
        );
    }
}

/// `tftproxy locate` tells scripts what a phone would get by its exit
/// status: 0 served, 1 not found, 2 retry later, 3 refused.
#[test]
fn locate_exit_status_says_what_a_phone_would_get() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("SEP001122334455.cnf.xml"), b"<device/>").unwrap();
    let write_config = |name: &str, clusters: &str| {
        let path = dir.path().join(name);
        let text = format!(
            "[tftp]\nlisten = [\"127.0.0.1:0\"]\nroot = {:?}\n{clusters}",
            root.display().to_string()
        );
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let local_only = write_config("local.toml", "");
    // Nothing listens on port 9 (discard) on loopback: connection refused.
    let down = write_config(
        "down.toml",
        "[remote]\nconnect_timeout = \"1s\"\n[[cluster]]\nid = \"down\"\naddresses = [\"http://127.0.0.1:9\"]\n",
    );
    for (config, name, expected) in [
        (&local_only, "SEP001122334455.cnf.xml", 0),
        (&local_only, "SEPFFFFFFFFFFFF.cnf.xml", 1),
        (&local_only, "../etc/passwd", 3),
        (&down, "SEPFFFFFFFFFFFF.cnf.xml", 2),
    ] {
        let (code, text) = tftproxy(&["locate", "-c", config, name]);
        assert_eq!(code, expected, "{name} with {config}: {text}");
        assert!(text.contains("verdict:"), "{text}");
    }
    let (_, text) = tftproxy(&["locate", "-c", &local_only, "SEPFFFFFFFFFFFF.cnf.xml"]);
    assert!(
        !text.contains("once its home cluster is known"),
        "no cluster is configured, so no home can be learned: {text}"
    );
}

/// Runs tftproxy with `args`; kills it if it has not ended within `limit`
/// (then the result is `None`).
fn tftproxy_within(args: &[&str], limit: std::time::Duration) -> Option<(i32, String)> {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tftproxy"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tftproxy");
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    Some((status.code().unwrap_or(-1), text))
}

#[test]
fn a_config_that_is_not_a_regular_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("tftproxy.toml");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let fifo = fifo.to_str().unwrap();
    for (path, what) in [(fifo, "a FIFO"), ("/dev/zero", "a character device")] {
        for command in ["serve", "check", "locate"] {
            let mut args = vec![command, "-c", path];
            if command == "locate" {
                args.push("x");
            }
            // Generous: "at once" means not blocking on a FIFO and not
            // reading /dev/zero until memory runs out.
            let (code, text) = tftproxy_within(&args, std::time::Duration::from_secs(20))
                .unwrap_or_else(|| panic!("{command} -c {path} did not end"));
            assert_eq!(code, 1, "{command} -c {path}: {text}");
            assert!(
                text.contains(&format!("{path}: is {what}, not a regular file")),
                "{command} -c {path}: {text}"
            );
        }
    }
}

#[test]
fn an_oversized_config_is_refused() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let comment = format!("# {}\n", "x".repeat(1000));
    std::fs::write(file.path(), comment.repeat(1100)).unwrap();
    let path = file.path().to_str().unwrap();
    let (code, text) = tftproxy(&["check", "-c", path]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("a configuration file is at most 1048576 bytes"),
        "{text}"
    );
}

#[test]
fn an_admin_api_off_loopback_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tftproxy.toml");
    std::fs::write(
        &config,
        "[tftp]\nlisten = [\"127.0.0.1:0\"]\n\n[admin]\nlisten = \"0.0.0.0:9669\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    for command in ["check", "serve"] {
        let (code, text) =
            tftproxy_within(&[command, "-c", config], std::time::Duration::from_secs(20))
                .unwrap_or_else(|| panic!("{command} did not refuse"));
        assert_eq!(code, 1, "{command}: {text}");
        assert!(
            text.contains(&format!(
                "{config}:5: admin.listen: 0.0.0.0:9669 is not a loopback address: set admin.token_file"
            )),
            "{command}: {text}"
        );
    }
}

/// A failed `get` names the server it asked, so a script's log says which
/// of several TFTP servers did not answer.
#[test]
fn a_failed_get_names_the_server() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = silent.local_addr().unwrap().to_string();
    let (code, text) = tftproxy(&["get", &server, "SEP001122334455.cnf.xml", "--timeout", "1"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("{server} SEP001122334455.cnf.xml: ")),
        "{text}"
    );
}

/// `get` to a closed port: the kernel's ICMP port unreachable ends it at
/// once (not after every retry), and the error names the server and says
/// "refused".
#[test]
fn a_get_to_a_closed_port_is_refused_at_once() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = closed.local_addr().unwrap().to_string();
    drop(closed);
    let started = std::time::Instant::now();
    let (code, text) = tftproxy(&["get", &server, "SEP001122334455.cnf.xml"]);
    let elapsed = started.elapsed();
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("{server} refused")), "{text}");
    // Without the report it waits out 5 retries of 1 s.
    assert!(
        elapsed < std::time::Duration::from_secs(3),
        "{elapsed:?}: {text}"
    );
}

/// The manual pages the package ships come from the CLI definition: one
/// per command, each with its options and help text.
#[test]
fn man_writes_a_page_per_command_from_the_cli_definition() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    let (code, text) = tftproxy(&["man", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    let page = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    assert!(page("tftproxy.1").starts_with(".ie"), "roff");
    assert!(page("tftproxy.1").contains(".TH tftproxy 1"));
    let locate = page("tftproxy-locate.1");
    assert!(locate.contains("\\-\\-admin"), "{locate}");
    assert!(locate.contains("Exit status: 0"), "{locate}");
    for command in ["serve", "check", "get", "option150"] {
        assert!(page(&format!("tftproxy-{command}.1")).contains(".TH"));
    }
    assert!(
        !out.join("tftproxy-man.1").exists(),
        "the hidden command has no page"
    );
}
