//! Durations and sizes as written in the file: parsed (`"30s"`, `"512MiB"`)
//! and formatted back so that parsing gives the same value.

use std::time::Duration;

use super::render::quote;

/// Parses a duration such as `"500ms"`, `"30s"`, `"5m"`, `"1h 30m"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!(
            "must be a duration like \"500ms\", \"30s\" or \"5m\", got {} ({e})",
            quote(s)
        )
    })
}

/// Formats a duration so that [`parse_duration`] reads it back exactly:
/// `"30m"`, `"1s"`, `"1h 30m"`, `"0s"`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string()
}

/// Parses a size: an integer number of bytes (`"1048576"`), or a number with
/// a unit — binary `KiB`/`MiB`/`GiB`/`TiB`, decimal `KB`/`MB`/`GB`/`TB`, `B`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    t.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| {
            format!(
                "must be a size like \"64KiB\", \"512MiB\", \"1GiB\" or a number of bytes, got {}",
                quote(s)
            )
        })
}

/// Formats a size in the largest binary unit that divides it exactly
/// (`"512MiB"`, `"1GiB"`, `"64KiB"`), else as plain bytes (`"1000"`).
pub fn format_size(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    if n != 0 {
        for (unit, name) in UNITS {
            if n % unit == 0 {
                return format!("{}{name}", n / unit);
            }
        }
    }
    n.to_string()
}
