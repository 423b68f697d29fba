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
