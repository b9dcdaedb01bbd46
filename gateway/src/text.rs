//! How times, ages and sizes are written for people.

/// Formats milliseconds since the Unix epoch as UTC ISO-8601 with
/// milliseconds, e.g. `2000-02-29T00:00:00.000Z`; negative values are
/// before 1970.
pub fn iso8601_utc_ms(epoch_ms: i64) -> String {
    const MS_PER_DAY: i64 = 86_400_000;
    let days = epoch_ms.div_euclid(MS_PER_DAY);
    let ms_of_day = epoch_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let (hour, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (minute, rest) = (rest / 60_000, rest % 60_000);
    let (second, ms) = (rest / 1000, rest % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{ms:03}Z")
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

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
