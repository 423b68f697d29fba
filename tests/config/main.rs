//! Configuration parsing and validation: located errors, defaults, the
//! example file, the `render` round trip, address normalisation, values.
//!
//! One test binary; the tests are grouped by theme in the modules below, the
//! parse helpers shared by all of them live here.

mod ca_file;
mod defaults;
mod errors;
mod render;
mod samples;
mod values;

use std::path::Path;

use tftproxy::config::{Config, ConfigError};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

fn parse_ok(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("config should be valid, got: {e}\n---\n{text}"),
    }
}
