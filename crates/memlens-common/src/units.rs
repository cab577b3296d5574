//! Sizes, durations and rates as people type and read them.
//!
//! * Sizes: `4096`, `500MiB`, `2GiB`, `1.5G`, `300 kB`. `K`, `M`, `G`, `T` and `KiB`,
//!   `MiB`, `GiB`, `TiB` are powers of 1024; `kB`, `MB`, `GB`, `TB` powers of 1000; `B` or
//!   no unit is bytes. Units are case-insensitive.
//! * Durations: `500ms`, `1s`, `2m`, `1.5h`, `1d`, `1m30s`; a plain number is seconds.
//! * Rates: a size per time unit, `10MiB/h`, `1.5M/min`, `200KiB/s`; `0` alone is zero.
//!
//! And the other way, for people: [`human_bytes`], [`human_rate`] (per hour),
//! [`human_rate_per_sec`], [`human_duration`], [`human_time`] (a moment of a trace),
//! [`count`] (`1,234`), [`plural`], [`percent`], [`clock`]. Every command formats these
//! through here.

use std::time::Duration;

/// Parse a size in bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let bad = || format!("'{s}' is not a size (examples: 4096, 500MiB, 2GiB, 1.5G, 300kB)");
    if num.is_empty() {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(bad()),
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("'{s}' is too large"));
    }
    Ok(bytes.round() as u64)
}

/// Parse a duration: one or more `<number><unit>` parts (`1m30s`), or a plain number of
/// seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("'{s}' is not a duration (examples: 500ms, 1s, 2m, 1h, 1m30s)");
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return secs_to_duration(secs).ok_or_else(bad);
    }
    let total = sum_of_parts(t, unit_seconds).ok_or_else(bad)?;
    secs_to_duration(total).ok_or_else(bad)
}

/// The sum of one or more `<number><unit>` parts (`1m30s`, `1.5h`), each unit worth what
/// `unit` says (`None`: not a unit). `None` when `t` is not such a list.
pub fn sum_of_parts(t: &str, unit: impl Fn(&str) -> Option<f64>) -> Option<f64> {
    let mut rest = t;
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if n == 0 {
            return None;
        }
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        total += value * unit(rest[..u].trim())?;
        rest = &rest[u..];
    }
    Some(total)
}

fn secs_to_duration(secs: f64) -> Option<Duration> {
    (0.0..1e12)
        .contains(&secs)
        .then(|| Duration::from_secs_f64(secs))
}

fn unit_seconds(u: &str) -> Option<f64> {
    Some(match u.to_ascii_lowercase().as_str() {
        "ms" => 1e-3,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        _ => return None,
    })
}

/// Parse a growth rate into bytes per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let bad = || format!("'{s}' is not a rate (examples: 10MiB/h, 1.5M/min, 200KiB/s, 0)");
    if t.parse::<f64>() == Ok(0.0) {
        return Ok(0.0);
    }
    let (size, per) = t.split_once('/').ok_or_else(bad)?;
    let bytes = parse_size(size).map_err(|_| bad())?;
    let secs = unit_seconds(per.trim()).ok_or_else(bad)?;
    Ok(bytes as f64 / secs)
}

/// Bytes for people: `512 B`, `1.50 KiB`, `3.00 MiB` (the style of `memlens report`).
pub fn human_bytes(n: u64) -> String {
    human_bytes_f(n as f64)
}

/// [`human_bytes`] for a value that may be negative or fractional.
pub fn human_bytes_f(v: f64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let sign = if v < 0.0 { "-" } else { "" };
    let a = v.abs();
    if a < 1024.0 {
        return format!("{sign}{a:.0} B");
    }
    let mut x = a / 1024.0;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    format!("{sign}{x:.2} {}", UNITS[u])
}

/// A growth rate (bytes per second) as a signed amount per hour: `+36.00 MiB/h`.
pub fn human_rate(bytes_per_sec: f64) -> String {
    signed_per(bytes_per_sec * 3600.0, "h")
}

/// A growth rate as a signed amount per second: `+1.95 MiB/s` (the report's growth
/// section).
pub fn human_rate_per_sec(bytes_per_sec: f64) -> String {
    signed_per(bytes_per_sec, "s")
}

/// `+1.00 KiB/UNIT`, `-3.00 MiB/UNIT`.
fn signed_per(bytes: f64, unit: &str) -> String {
    let s = human_bytes_f(bytes);
    if bytes >= 0.0 {
        format!("+{s}/{unit}")
    } else {
        format!("{s}/{unit}")
    }
}

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|g| std::str::from_utf8(g).unwrap_or_default())
        .collect();
    groups.join(",")
}

/// A count and the word for it, singular or plural: `1 block`, `1,234 blocks`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// `a` as a percentage of `b` with one decimal: `12.5%`; `0%` when `b` is 0.
pub fn percent(a: u64, b: u64) -> String {
    if b == 0 {
        "0%".to_string()
    } else {
        format!("{:.1}%", 100.0 * a as f64 / b as f64)
    }
}

/// A moment of a trace (ns since it started) or a span of one, in ms or s: `0.012 ms`,
/// `9.0 ms`, `2.50 s`, `12.3 s` (the style of `memlens report`).
pub fn human_time(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

/// A duration for people: `850 ms`, `12.3 s`, `4m 05s`, `2h 10m`, `3d 4h`.
pub fn human_duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "forever".into();
    }
    let s = secs.max(0.0);
    if s < 1.0 {
        return format!("{:.0} ms", s * 1e3);
    }
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let total = s.round() as u64;
    let (d, h, m, sec) = (
        total / 86400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else {
        format!("{m}m {sec:02}s")
    }
}

/// A clock reading for the live view: `0:07`, `12:30`, `1:02:03`.
pub fn clock(secs: f64) -> String {
    let t = secs.max(0.0) as u64;
    let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A UTC calendar time: year, month (1-12), day (1-31), hour, minute, second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// The UTC calendar time of `secs` seconds since the Unix epoch (Howard Hinnant's
/// `civil_from_days`; no time-zone database needed).
pub fn utc_from_unix_secs(secs: u64) -> UtcTime {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    UtcTime {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem / 60 % 60) as u32,
        second: (rem % 60) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("500 MiB"), Ok(500 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("300kB"), Ok(300_000));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("10B"), Ok(10));
        for bad in ["", "MiB", "1.2.3M", "5 parsecs", "-5M", "1e999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        let ms = |s| parse_duration(s).map(|d| d.as_millis());
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("1s"), Ok(1000));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms("10m"), Ok(600_000));
        assert_eq!(ms("1.5h"), Ok(5_400_000));
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        assert_eq!(ms("2.5"), Ok(2500));
        assert_eq!(ms("0"), Ok(0));
        for bad in ["", "s", "5 fortnights", "-1s", "1m30", "ms5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("3600B/h"), Ok(1.0));
        assert_eq!(parse_rate("10MiB/h"), Ok(10.0 * 1048576.0 / 3600.0));
        assert_eq!(parse_rate("1M/s"), Ok(1048576.0));
        assert_eq!(parse_rate("60KiB/min"), Ok(1024.0));
        for bad in ["10MiB", "10MiB/fortnight", "/h", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(3 << 20), "3.00 MiB");
        assert_eq!(human_bytes_f(-2.0 * 1048576.0), "-2.00 MiB");
        assert_eq!(human_rate(1048576.0 / 3600.0 * 36.0), "+36.00 MiB/h");
        assert_eq!(human_rate(-1.0), "-3.52 KiB/h");
        assert_eq!(human_duration(0.25), "250 ms");
        assert_eq!(human_duration(12.34), "12.3 s");
        assert_eq!(human_duration(245.0), "4m 05s");
        assert_eq!(human_duration(7800.0), "2h 10m");
        assert_eq!(human_duration(3.0 * 86400.0 + 4.0 * 3600.0), "3d 4h");
        assert_eq!(human_rate_per_sec(-2048.0), "-2.00 KiB/s");
        assert_eq!(plural(1, "block", "blocks"), "1 block");
        assert_eq!(plural(1234, "block", "blocks"), "1,234 blocks");
        assert_eq!(percent(1, 8), "12.5%");
        assert_eq!(percent(1, 0), "0%");
        assert_eq!(clock(7.9), "0:07");
        assert_eq!(clock(3723.0), "1:02:03");
    }

    #[test]
    fn units() {
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(3 << 20), "3.00 MiB");
        assert_eq!(human_bytes(5 << 30), "5.00 GiB");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(human_time(12_345), "0.012 ms");
        assert_eq!(human_time(9_000_000), "9.0 ms");
        assert_eq!(human_time(2_500_000_000), "2.50 s");
    }
}
