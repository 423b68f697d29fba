//! Durations and sizes as written in the file: parsed (`"30s"`, `"512MiB"`)
//! and formatted back so that parsing gives the same value.

use std::time::Duration;

use super::render::quote;

/// Parses a duration such as `"500ms"`, `"30s"`, `"5m"`, `"1h 30m"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => {
            format!("is too large to be a duration, got {}", quote(s))
        }
        e => format!(
            "must be a duration like \"500ms\", \"30s\" or \"5m\", got {} ({e})",
            quote(s)
        ),
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
/// A size of 2^64 bytes or more is an error (`bytesize` would saturate it
/// to 2^64 − 1 without a word).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    let bad = || {
        format!(
            "must be a size like \"64KiB\", \"512MiB\", \"1GiB\" or a number of bytes, got {}",
            quote(s)
        )
    };
    // Split as bytesize does: the number, then the unit.
    let digits = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let unit = unit.trim();
    let factor = if unit.is_empty() {
        1
    } else {
        format!("1{unit}")
            .parse::<bytesize::ByteSize>()
            .map_err(|_| bad())?
            .as_u64()
    };
    let overflows = match number.parse::<u128>() {
        Ok(n) => n.saturating_mul(u128::from(factor)) > u128::from(u64::MAX),
        // An integer even u128 cannot hold, or a decimal number.
        Err(_) if !number.contains('.') => true,
        Err(_) => number
            .parse::<f64>()
            .is_ok_and(|v| v * factor as f64 >= u64::MAX as f64),
    };
    if overflows && !number.is_empty() {
        return Err(format!(
            "is too large: a size must be under 16EiB (2^64 bytes), got {}",
            quote(s)
        ));
    }
    t.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| bad())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_overflows_are_errors() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size(" 1 GiB "), Ok(1 << 30));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size("16777215TiB"), Ok(16_777_215 << 40));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        for overflow in [
            "99999999999999999999999TiB",
            "16777216TiB",
            "16EiB",
            "18446744073709551616",
            "18446744073709551616B",
            "999999999999999999999999999999999999999999999MiB",
            "20000000.5TiB",
        ] {
            let error = parse_size(overflow).unwrap_err();
            assert!(error.starts_with("is too large"), "{overflow}: {error}");
        }
        assert!(parse_size("lots")
            .unwrap_err()
            .starts_with("must be a size"));
    }

    #[test]
    fn overflowing_durations_are_errors() {
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        let error = parse_duration("99999999999999999999999s").unwrap_err();
        assert!(error.starts_with("is too large"), "{error}");
        let error = parse_duration("600000000000y").unwrap_err();
        assert!(error.starts_with("is too large"), "{error}");
    }
}
