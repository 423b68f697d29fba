//! The daemon under abuse (issue 10): only correct bytes are served, the
//! admin API is authenticated, client allow-lists and per-client limits
//! hold, and `max_transfers` holds across reloads.
//!
//! One test binary; the tests are grouped by theme in the modules below, the
//! set-up shared by them lives here.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod encoding;

use std::net::SocketAddr;
use std::time::Duration;

use tftproxy::client::{get_with_socket, Download, GetError, GetOptions};
use tokio::net::UdpSocket;

fn quick() -> GetOptions {
    GetOptions {
        retransmit: Duration::from_millis(300),
        max_retries: 10,
        ..Default::default()
    }
}

/// A TFTP read of `name` from `server`, sent from `source` (port 0).
async fn get_from(
    source: &str,
    server: SocketAddr,
    name: &str,
    options: &GetOptions,
) -> Result<Download, GetError> {
    let socket = UdpSocket::bind((source.parse::<std::net::IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    get_with_socket(&socket, server, name, options).await
}

/// The TFTP error code and message of a failed download.
fn server_error(result: Result<Download, GetError>) -> (u16, String) {
    match result {
        Err(e) => {
            let (code, message) = e
                .server_error()
                .unwrap_or_else(|| panic!("not a server error: {e}"));
            (code, message.to_owned())
        }
        Ok(d) => panic!("expected an error, got {} bytes", d.data.len()),
    }
}
