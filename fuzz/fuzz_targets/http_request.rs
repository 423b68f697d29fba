//! What the HTTP front reads of a request before it resolves anything: the
//! percent-encoded path, the `Via` chain (any bytes), the `Range` header.
//! None of them may panic, and a range is always inside the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tftproxy::front::fuzzing::{decode_path, range_of};
use tftproxy::via::Chain;

fuzz_target!(|input: (&str, Vec<&[u8]>, &str, u32)| {
    let (path, via, range, len) = input;
    let _ = decode_path(path);
    let _ = Chain::parse(via);
    if let Some(bytes) = range_of(range, u64::from(len)) {
        assert!(bytes.start < bytes.end && bytes.end <= u64::from(len), "{bytes:?} of {len}");
    }
});
