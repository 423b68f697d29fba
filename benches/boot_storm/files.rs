//! The files of one simulated phone: their names and sizes, their
//! deterministic contents, and `make-root` (writing them for N phones into a
//! directory a server serves).

use std::path::Path;

use anyhow::{Context as _, Result};

/// Sizes in bytes; every phone has its own `SEP<MAC>.cnf.xml`, the other
/// three files are the same for all.
pub(crate) const CONFIG_SIZE: usize = 13_000;
pub(crate) const TRUST_NAME: &str = "ITLFile.tlv";
pub(crate) const TRUST_SIZE: usize = 8_000;
pub(crate) const SOFTKEY_NAME: &str = "SKStandard.xml.sgn";
pub(crate) const SOFTKEY_SIZE: usize = 5_000;
pub(crate) const DEFAULT_NAME: &str = "XMLDefault.cnf.xml";
pub(crate) const DEFAULT_SIZE: usize = 1_500;
/// The firmware case of issue 11 (`--firmware`) and the file `hold` reads.
pub(crate) const FIRMWARE_NAME: &str = "firmware.bin";
pub(crate) const FIRMWARE_SIZE: usize = 32 << 20;

fn mac(phone: usize) -> String {
    format!("{:012X}", 0x0011_2200_0000u64 + phone as u64)
}

/// Phone `phone`'s own configuration, `SEP<MAC>.cnf.xml`.
pub(crate) fn config_name(phone: usize) -> String {
    format!("SEP{}.cnf.xml", mac(phone))
}

/// The names a phone asks for, in order, with their sizes.
pub(crate) fn phone_files(phone: usize) -> Vec<(String, usize)> {
    vec![
        (config_name(phone), CONFIG_SIZE),
        (TRUST_NAME.to_owned(), TRUST_SIZE),
        (SOFTKEY_NAME.to_owned(), SOFTKEY_SIZE),
        (DEFAULT_NAME.to_owned(), DEFAULT_SIZE),
    ]
}

/// Deterministic filler (xorshift), so a wrong byte count is visible.
pub(crate) fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b' ' + (x % 94) as u8
        })
        .collect()
}

/// `make-root`: writes the files of `phones` phones into `dir` (existing
/// device files are kept), and `firmware.bin` with `firmware`.
pub(crate) fn make_root(dir: &Path, phones: usize, firmware: bool) -> Result<()> {
    if firmware {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FIRMWARE_NAME);
        if std::fs::metadata(&path).map_or(true, |m| m.len() != FIRMWARE_SIZE as u64) {
            std::fs::write(&path, content(FIRMWARE_SIZE, 4 << 40))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    for phone in 0..phones {
        let path = dir.join(config_name(phone));
        if !path.exists() {
            std::fs::write(&path, content(CONFIG_SIZE, phone as u64))?;
        }
    }
    std::fs::write(dir.join(TRUST_NAME), content(TRUST_SIZE, 1 << 40))?;
    std::fs::write(dir.join(SOFTKEY_NAME), content(SOFTKEY_SIZE, 2 << 40))?;
    std::fs::write(dir.join(DEFAULT_NAME), content(DEFAULT_SIZE, 3 << 40))?;
    Ok(())
}
