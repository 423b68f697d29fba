//! tftproxy — a proxy TFTP daemon for IP-phone fleets that span several
//! call-control clusters. ARCHITECTURE.md walks through the code.
//!
//! The layers, each depending only on those before it:
//!
//! 1. leaves: the TFTP protocol ([`tftp`], no I/O), the answer every layer
//!    gives ([`verdict`]), bodies ([`body`]), names ([`name`]),
//!    configuration ([`config`]), metrics ([`metrics`]), the proxy loop
//!    guard ([`via`]);
//! 2. [`source`]: where bytes come from (local root, clusters over HTTP);
//! 3. [`resolve`]: which bytes answer a name, and [`diagnose`] (`locate`);
//! 4. [`front`]: the protocols phones and operators speak (TFTP, HTTP,
//!    admin), and [`client`] (the diagnostic TFTP client);
//! 5. [`daemon`]: listeners, reload, shutdown; the binary is a thin shell.

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod body;
pub mod client;
pub mod config;
pub mod daemon;
pub mod diagnose;
pub mod front;
pub mod logging;
pub mod metrics;
pub mod name;
pub mod option150;
mod process_metrics;
pub mod resolve;
pub mod source;
mod sync;
pub mod systemd;
pub mod tftp;
pub mod verdict;
pub mod via;
