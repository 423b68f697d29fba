//! For tests that run the real `tftproxy` binary as a child process: free
//! ports for its config, and a handle that kills it if the test fails
//! half-way.

use std::ops::{Deref, DerefMut};
use std::process::Child;

/// A free loopback TCP port (bound then released: another process could
/// take it in between, which a test machine does not do in practice).
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
