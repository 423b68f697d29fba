//! tftproxy — a proxy TFTP daemon for IP-phone fleets that span several
//! call-control clusters.
//!
//! A phone's read request arrives on the TFTP listener ([`tftp::server`]) or
//! the HTTP front ([`http`]); the [`resolve::Resolver`] decides which bytes
//! answer the name (local root, caches, remote clusters over HTTP); the front
//! end then speaks its protocol. The TFTP protocol itself lives in
//! [`tftp::packet`] (codec) and [`tftp::transfer`] / [`tftp::receive`]
//! (deterministic state machines that do no I/O).

pub mod admin;
pub mod body;
pub mod config;
pub mod daemon;
pub mod http;
pub mod local;
pub mod locate;
pub mod logging;
pub mod metrics;
pub mod name;
pub mod option150;
pub mod resolve;
pub mod shutdown;
pub mod systemd;
pub mod tftp;
