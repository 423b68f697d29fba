//! A configuration file: parsing never panics, and a configuration it
//! accepts renders (`tftproxy check`) to text that parses to the same
//! configuration.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tftproxy::config::Config;

fuzz_target!(|text: &str| {
    if let Ok(config) = Config::parse(text, Path::new("fuzz.toml")) {
        let rendered = config.render();
        let again = Config::parse(&rendered, Path::new("rendered.toml"))
            .unwrap_or_else(|e| panic!("rendered config refused: {e}\n{rendered}"));
        assert_eq!(again, config);
    }
});
