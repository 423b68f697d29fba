//! Helpers shared by the integration tests. Each test binary declares
//! `mod support;` and uses what it needs (hence `dead_code` allowances in
//! the modules).
#![allow(dead_code)]

pub mod http_cluster;
