//! Helpers shared by the integration tests. Each test binary declares
//! `mod support;` and uses what it needs (hence the `dead_code` allowance in
//! `daemon`). What does not depend on tftproxy lives in the
//! `tftproxy-testkit` crate (`testkit/`), shared with the boot-storm bench,
//! and is re-exported here.

pub mod daemon;

// Each test binary uses some of these (an unused one would warn).
#[allow(unused_imports)]
pub use tftproxy_testkit::{http_cluster, pattern, rng};
