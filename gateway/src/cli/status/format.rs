//! Compact renderings of ages and sizes.

/// An age in milliseconds, compact: `0.4 s`, `12 s`, `5 m 3 s`, `2 h 10 m`,
/// `3 d 4 h`.
pub fn format_age(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    match s {
        0..=9 => format!("{:.1} s", ms as f64 / 1000.0),
        10..=59 => format!("{s} s"),
        60..=3599 => format!("{} m {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} m", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Bytes, compact: `512 B`, `1.5 KiB`, `12.3 MiB`, `2.0 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_are_compact() {
        assert_eq!(format_age(400), "0.4 s");
        assert_eq!(format_age(12_300), "12 s");
        assert_eq!(format_age(303_000), "5 m 3 s");
        assert_eq!(format_age(7_800_000), "2 h 10 m");
        assert_eq!(format_age(-5), "0.0 s");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
    }
}
