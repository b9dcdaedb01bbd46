//! The allowed range of every number of the `[collect]`, `[data]`,
//! `[monitor]`, `[broker]`, `[streams]`, `[control]` and `[outputs]`
//! sections, and the most packs one gateway polls. Every duration has a
//! ceiling, so no configured value can overflow the arithmetic of the
//! workers that use it.

use super::{CollectConfig, Config, ConfigError};

/// The most packs one gateway polls (configured plus `--sim`): 1000 packs
/// keep a one-second period on two cores (the README's benchmark); many
/// more cannot, and every pack costs memory and a task.
pub const MAX_PACKS: usize = 1_000;

/// Shortest poll period of a configuration file, milliseconds (0, as fast
/// as possible, is for `packgate bench` only).
pub const MIN_POLL_INTERVAL_MS: u64 = 10;

/// Largest stream on the box's disk, bytes (1 TiB): larger is a typo, and
/// the broker would refuse the stream or fill the disk.
pub const MAX_STREAM_BYTES: i64 = 1 << 40;

/// Smallest stream, bytes (1 MiB).
pub const MIN_STREAM_BYTES: i64 = 1 << 20;

/// Longest any stream keeps a message, seconds (ten years); 0 keeps them
/// until `max_bytes` pushes them out.
pub const MAX_STREAM_AGE_S: u64 = 10 * 365 * 86_400;

const DAY_MS: u64 = 86_400_000;
const TEN_MINUTES_MS: u64 = 600_000;
const HOUR_MS: u64 = 3_600_000;
const HUNDRED_YEARS_DAYS: u64 = 36_500;

type Invalid<'a> = &'a dyn Fn(&str, String) -> ConfigError;

/// One key, its value and its allowed range.
struct Range {
    key: &'static str,
    value: u64,
    min: u64,
    max: u64,
    /// What the range means, when the bare numbers do not say it.
    note: &'static str,
}

fn range(key: &'static str, value: u64, min: u64, max: u64) -> Range {
    Range {
        key,
        value,
        min,
        max,
        note: "",
    }
}

fn check(ranges: &[Range], invalid: Invalid<'_>) -> Result<(), ConfigError> {
    for r in ranges {
        if !(r.min..=r.max).contains(&r.value) {
            let note = if r.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.note)
            };
            return Err(invalid(
                r.key,
                format!(
                    "{} is out of range: must be {} to {}{note}",
                    r.value, r.min, r.max
                ),
            ));
        }
    }
    Ok(())
}

fn wide(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// The ranges of the `[collect]` keys.
fn collect_ranges(c: &CollectConfig) -> Vec<Range> {
    vec![
        Range {
            note: "a day",
            ..range(
                "collect.poll_interval_ms",
                c.poll_interval_ms,
                MIN_POLL_INTERVAL_MS,
                DAY_MS,
            )
        },
        range(
            "collect.request_timeout_ms",
            c.request_timeout_ms,
            1,
            TEN_MINUTES_MS,
        ),
        range(
            "collect.offline_after_failures",
            u64::from(c.offline_after_failures),
            1,
            1_000_000,
        ),
        range(
            "collect.offline_backoff_max_ms",
            c.offline_backoff_max_ms,
            0,
            DAY_MS,
        ),
        range("collect.inflight_max", wide(c.inflight_max), 1, 65_536),
        Range {
            note: "and at least collect.inflight_max",
            ..range(
                "collect.pending_max",
                wide(c.pending_max),
                wide(c.inflight_max),
                1_000_000,
            )
        },
        range(
            "collect.publish_retry_max_ms",
            c.publish_retry_max_ms,
            1,
            TEN_MINUTES_MS,
        ),
    ]
}

/// The ranges of the `[data]`, `[monitor]` and `[broker]` keys.
fn store_and_broker_ranges(config: &Config) -> Vec<Range> {
    let (d, m, b) = (&config.data, &config.monitor, &config.broker);
    vec![
        range(
            "data.batch_max_samples",
            wide(d.batch_max_samples),
            1,
            100_000,
        ),
        range("data.batch_linger_ms", d.batch_linger_ms, 0, 60_000),
        range(
            "data.batch_min_samples",
            wide(d.batch_min_samples),
            1,
            100_000,
        ),
        range(
            "data.retention_days",
            u64::from(d.retention_days),
            0,
            HUNDRED_YEARS_DAYS,
        ),
        range(
            "data.retention_interval_s",
            d.retention_interval_s,
            0,
            86_400,
        ),
        range("data.shutdown_drain_ms", d.shutdown_drain_ms, 0, HOUR_MS),
        range(
            "monitor.retention_days",
            u64::from(m.retention_days),
            0,
            HUNDRED_YEARS_DAYS,
        ),
        range(
            "monitor.snapshot_interval_s",
            m.snapshot_interval_s,
            0,
            86_400,
        ),
        range(
            "broker.connect_timeout_ms",
            b.connect_timeout_ms,
            1,
            TEN_MINUTES_MS,
        ),
        range(
            "broker.request_timeout_ms",
            b.request_timeout_ms,
            1,
            TEN_MINUTES_MS,
        ),
        range(
            "broker.embedded_startup_timeout_ms",
            b.embedded_startup_timeout_ms,
            1,
            TEN_MINUTES_MS,
        ),
    ]
}

/// The ranges of the `[control]` and `[outputs]` numbers (their other rules
/// are their sections' own).
fn control_and_output_ranges(config: &Config) -> Vec<Range> {
    let c = &config.control;
    let mut ranges = vec![
        range(
            "control.default_deadline_ms",
            c.default_deadline_ms,
            1,
            TEN_MINUTES_MS,
        ),
        Range {
            note: "30 days",
            ..range(
                "control.max_command_ttl_s",
                c.max_command_ttl_s,
                1,
                2_592_000,
            )
        },
        range("control.max_clock_skew_ms", c.max_clock_skew_ms, 0, DAY_MS),
        range(
            "control.audit_retention_days",
            u64::from(c.audit_retention_days),
            0,
            HUNDRED_YEARS_DAYS,
        ),
        range("control.max_in_flight", wide(c.max_in_flight), 1, 4_096),
    ];
    if let Some(led) = &config.outputs.status_led {
        ranges.push(range(
            "outputs.status_led.blink_period_ms",
            led.blink_period_ms,
            100,
            60_000,
        ));
    }
    ranges
}

/// Checks each stream's size and age (its size against the disk is
/// checked where the disk is known, `Config::fit_streams_to_disk`).
fn check_streams(config: &Config, invalid: Invalid<'_>) -> Result<(), ConfigError> {
    for (name, limits) in config.streams.named() {
        if !(MIN_STREAM_BYTES..=MAX_STREAM_BYTES).contains(&limits.max_bytes) {
            return Err(invalid(
                &format!("streams.{name}.max_bytes"),
                format!(
                    "{} is out of range: must be 1 MiB ({MIN_STREAM_BYTES}) to 1 TiB \
                     ({MAX_STREAM_BYTES}), and fit on the box's disk",
                    limits.max_bytes
                ),
            ));
        }
        if limits.max_age_s > MAX_STREAM_AGE_S {
            return Err(invalid(
                &format!("streams.{name}.max_age_s"),
                format!(
                    "{} is out of range: must be 0 (no age limit) to {MAX_STREAM_AGE_S} (ten years)",
                    limits.max_age_s
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the ranges of the sections above and the number of packs.
pub(super) fn validate(config: &Config, invalid: Invalid<'_>) -> Result<(), ConfigError> {
    if config.collect.poll_interval_ms == 0 {
        return Err(invalid(
            "collect.poll_interval_ms",
            format!(
                "0 (as fast as possible) is for `packgate bench` only; a real gateway polls \
                 every {MIN_POLL_INTERVAL_MS} ms or slower"
            ),
        ));
    }
    check(&collect_ranges(&config.collect), invalid)?;
    check(&store_and_broker_ranges(config), invalid)?;
    check(&control_and_output_ranges(config), invalid)?;
    check_streams(config, invalid)?;
    if config.packs.len() > MAX_PACKS {
        return Err(invalid(
            "packs",
            format!(
                "{} packs; one gateway polls at most {MAX_PACKS} (configured and --sim together)",
                config.packs.len()
            ),
        ));
    }
    Ok(())
}
