//! For tests that run the real `tftproxy` binary as a child process: the
//! command, free ports for its config, and a handle that kills it if the
//! test fails half-way.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// `tftproxy serve -c config` as a person starts it: no systemd
/// notification socket, not under journald; standard input and output
/// closed, standard error piped. The caller sets `RUST_LOG` and spawns.
pub fn serve_by_hand(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tftproxy"));
    command
        .args(["serve", "-c"])
        .arg(config)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// A free loopback TCP port (bound then released: another process, or a
/// test running beside this one, could take it in between).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process, killed and reaped when dropped (a failed assertion
/// leaves no daemon behind). Harmless once the child has exited.
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Deref for Reaper {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Reaper {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}
