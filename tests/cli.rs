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
