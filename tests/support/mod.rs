//! Helpers shared by the integration tests. Each test binary declares
//! `mod support;` and uses what it needs (hence the `dead_code` allowance in
//! `daemon`). What does not depend on tftproxy lives in the
//! `tftproxy-testkit` crate (`testkit/`), shared with the boot-storm bench,
//! and is re-exported here.

pub mod daemon;
#[allow(dead_code)]
pub mod process;

// Each test binary uses some of these (an unused one would warn).
#[allow(unused_imports)]
pub use tftproxy_testkit::{http_cluster, pattern, rng};

/// The TFTP error code and message of a download that failed with one;
/// panics on success or another kind of failure.
#[allow(dead_code)]
pub fn server_error(
    result: Result<tftproxy::client::Download, tftproxy::client::GetError>,
) -> (u16, String) {
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
