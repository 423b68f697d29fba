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
