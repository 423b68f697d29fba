//! A file name as a phone sends it: normalising never panics, and what it
//! accepts never escapes the root (no `..` segment, no leading `/`, no NUL)
//! and is stable (normalising it again changes nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tftproxy::name::{classify, normalise};

fuzz_target!(|raw: &str| {
    if let Ok(name) = normalise(raw) {
        assert!(!name.starts_with('/'), "{name:?}");
        assert!(!name.contains('\0'), "{name:?}");
        assert!(name.split('/').all(|segment| segment != ".."), "{name:?}");
        assert_eq!(normalise(&name).as_deref(), Ok(&*name));
        let _ = classify(&name);
    }
});
