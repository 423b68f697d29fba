//! The TFTP server on loopback sockets, driven by the library client:
//! sizes, families, concurrency, refusals, source addresses, a lossy path
//! and graceful shutdown.
//!
//! One test binary; the tests are grouped by theme in the modules below, the
//! server set-up, client options and packet helpers shared by them live here.

#[path = "../support/mod.rs"]
mod support;

// A test run once per mode, as two tests (`<name>::per_transfer_port` and
// `<name>::single_port`): `both_modes! { async fn name(mode) { .. } }`,
// where the body starts its server with `tftp_server_in(mode)`.
macro_rules! both_modes {
    (async fn $name:ident($mode:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn per_transfer_port() {
                run($crate::Ports::PerTransfer).await
            }

            #[tokio::test]
            async fn single_port() {
                run($crate::Ports::Single).await
            }

            async fn run($mode: $crate::Ports) $body
        }
    };
}

mod load;
mod lossy;
mod port_reuse;
mod reflection;
mod requests;
mod resolving;
mod sessions;
mod single_port;
mod small_mtu;
mod transfers;

use std::time::Duration;

use support::daemon::{TestDaemon, TestDaemonBuilder};
use support::server_error;
use tftproxy::client::GetOptions;
use tftproxy::tftp::packet::{Mode, Packet, Request};

/// TFTP on 127.0.0.1 and ::1, serving a temporary root.
fn tftp_server() -> TestDaemonBuilder {
    TestDaemon::builder().tftp_ipv6()
}

/// Where a transfer's packets leave from: `tftp.single_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ports {
    /// A new ephemeral port per transfer (the default).
    PerTransfer,
    /// Every transfer on the listening port.
    Single,
}

/// Tests that loop over the modes themselves.
const MODES: [Ports; 2] = [Ports::PerTransfer, Ports::Single];

/// [`tftp_server`] in `mode`.
fn tftp_server_in(mode: Ports) -> TestDaemonBuilder {
    tftp_server().tweak(move |c| c.tftp.single_port = mode == Ports::Single)
}

fn quick() -> GetOptions {
    GetOptions {
        retransmit: Duration::from_millis(300),
        max_retries: 10,
        ..Default::default()
    }
}

/// An octet-mode RRQ for `name` with `options`, encoded.
fn rrq(name: &str, options: &[(&str, &str)]) -> Vec<u8> {
    Packet::Rrq(Request {
        filename: name.into(),
        mode: Mode::Octet,
        options: options
            .iter()
            .map(|&(option, value)| (option.into(), value.into()))
            .collect(),
    })
    .encode()
}
