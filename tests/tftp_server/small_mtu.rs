//! A path whose MTU is smaller than a block: a window cannot leave as one
//! segmented send (the kernel refuses it), and must still arrive, its
//! blocks fragmented as they would be without segmentation. The test runs
//! itself again inside a network namespace of its own whose loopback MTU is
//! 1,280 bytes (root and `ip` needed; skipped, and saying so, without them).

use std::process::Command;

use tftproxy::client::{get, GetOptions};

use crate::support::pattern;
use crate::{quick, tftp_server_in, MODES};

/// Set in the environment of the run inside the namespace.
const INSIDE: &str = "TFTPROXY_TEST_SMALL_MTU_NAMESPACE";
const TEST: &str = "small_mtu::blocks_larger_than_the_path_mtu_arrive_in_windows_in_both_modes";

#[test]
fn blocks_larger_than_the_path_mtu_arrive_in_windows_in_both_modes() {
    if std::env::var_os(INSIDE).is_some() {
        return tokio::runtime::Runtime::new().unwrap().block_on(inside());
    }
    let namespace = format!("tftproxy-mtu-{}", std::process::id());
    let ip = |args: &[&str]| Command::new("ip").args(args).status();
    match ip(&["netns", "add", &namespace]) {
        Ok(status) if status.success() => {}
        _ => {
            eprintln!("skipped: cannot create a network namespace (needs root and iproute2)");
            return;
        }
    }
    let inner = ip(&["-n", &namespace, "link", "set", "lo", "mtu", "1280", "up"]).and_then(|_| {
        Command::new("ip")
            .args(["netns", "exec", &namespace])
            .arg(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--nocapture"])
            .env(INSIDE, "1")
            .status()
    });
    let _ = ip(&["netns", "delete", &namespace]);
    assert!(
        inner.unwrap().success(),
        "the run inside the namespace failed"
    );
}

async fn inside() {
    let content = pattern(300_000, 11);
    for mode in MODES {
        let server = tftp_server_in(mode).file("fw.bin", &content).start().await;
        // 1,472-byte datagrams on a 1,280-byte path, 8 to a window.
        let options = GetOptions {
            block_size: Some(1468),
            window_size: Some(8),
            ..quick()
        };
        for addr in [server.tftp_v4(), server.tftp_v6()] {
            let download = get(addr, "fw.bin", &options).await.unwrap();
            assert!(download.data == content, "{mode:?} via {addr}");
        }
    }
}
