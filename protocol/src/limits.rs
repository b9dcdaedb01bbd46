//! Bounds on what a message may carry, checked when it is decoded.
//!
//! Every string field has a length cap (in bytes of UTF-8), so a message
//! cannot make a reader allocate, log or store without end: a field past
//! its cap is a [`DecodeError::TooLong`](crate::DecodeError::TooLong).
//! Numbers that cannot be stored (a sequence number beyond SQLite's signed
//! 64-bit integer) or are not physically possible (a NaN, a state of charge
//! of 300 %) are a [`DecodeError::OutOfRange`](crate::DecodeError::OutOfRange).
//!
//! The caps are far above what packgate itself writes, so only a broken or
//! hostile writer meets them; producers that copy text from outside (a
//! driver error, a serial number read from a pack) cut it with
//! [`truncate`] first.

/// Longest command id: an idempotency key (a UUID is 36 bytes).
pub const MAX_COMMAND_ID_LEN: usize = 128;
/// Longest setting name (profile setting names are short identifiers).
pub const MAX_SETTING_NAME_LEN: usize = 64;
/// Longest free-text reason or error (an offline reason, a rejection, a
/// failed write): enough for a chained error message, bounded for logs.
pub const MAX_REASON_LEN: usize = 1024;
/// Longest serial number a pack may report.
pub const MAX_SERIAL_NUMBER_LEN: usize = 64;
/// Longest worker kind name in a metrics snapshot.
pub const MAX_WORKER_NAME_LEN: usize = 32;
/// Longest worker instance name (host and pid).
pub const MAX_INSTANCE_LEN: usize = 128;
/// Longest version string.
pub const MAX_VERSION_LEN: usize = 64;
/// Longest counter, gauge or latency name.
pub const MAX_METRIC_NAME_LEN: usize = 64;
/// Most counters, gauges or latencies (each) in one snapshot.
pub const MAX_METRICS_PER_SNAPSHOT: usize = 256;
/// Latest timestamp a sample may carry, ms since the Unix epoch: the last
/// millisecond of the year 9999, where dates stop being readable by the
/// stores' and dashboards' date functions. The earliest is the epoch.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;
/// Largest sequence number (of a sample or an event) a store can keep:
/// SQLite's INTEGER is a signed 64-bit number.
pub const MAX_STORABLE_SEQ: u64 = i64::MAX as u64;

/// A rule of [`crate::WireMessage::check`] that a decoded message breaks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    /// A string field is longer than its cap.
    #[error("field {field} is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length, bytes.
        len: usize,
        /// The cap, bytes.
        max: usize,
    },
    /// A number that cannot be stored or is not physically possible.
    #[error("field {field} is out of range: {detail}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value and the range it breaks.
        detail: String,
    },
    /// Any other broken rule (such as the number of cells).
    #[error("{0}")]
    Invalid(String),
}

/// Checks that `value` is at most `max` bytes long.
pub(crate) fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), RuleError> {
    if value.len() > max {
        return Err(RuleError::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// Checks that `value` is finite and within `min..=max`.
pub(crate) fn check_f64(
    field: &'static str,
    value: f64,
    min: f64,
    max: f64,
) -> Result<(), RuleError> {
    if value.is_finite() && (min..=max).contains(&value) {
        return Ok(());
    }
    Err(RuleError::OutOfRange {
        field,
        detail: format!("{value} is not a finite number within {min}..={max}"),
    })
}

/// Checks that a sequence number is in `1..=`[`MAX_STORABLE_SEQ`].
pub(crate) fn check_seq(field: &'static str, seq: u64) -> Result<(), RuleError> {
    if (1..=MAX_STORABLE_SEQ).contains(&seq) {
        return Ok(());
    }
    Err(RuleError::OutOfRange {
        field,
        detail: format!("{seq} is not within 1..={MAX_STORABLE_SEQ}"),
    })
}

/// Cuts `text` to at most `max` bytes, at a character boundary, so a
/// producer never writes a field the readers reject.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_whole_characters() {
        assert_eq!(truncate("abc".into(), 5), "abc");
        assert_eq!(truncate("abcdef".into(), 3), "abc");
        // 'é' is two bytes: a cut inside it keeps the character out.
        assert_eq!(truncate("aé".into(), 2), "a");
        assert_eq!(
            truncate("x".repeat(2000), MAX_REASON_LEN).len(),
            MAX_REASON_LEN
        );
    }

    #[test]
    fn checks_name_the_field_and_the_bound() {
        assert_eq!(
            check_len("id", "abcd", 3),
            Err(RuleError::TooLong {
                field: "id",
                len: 4,
                max: 3
            })
        );
        assert!(check_len("id", "abc", 3).is_ok());
        assert!(check_seq("seq", 0).is_err());
        assert!(check_seq("seq", MAX_STORABLE_SEQ).is_ok());
        assert!(matches!(
            check_seq("seq", 1 << 63),
            Err(RuleError::OutOfRange { field: "seq", .. })
        ));
        assert!(check_f64("x", f64::NAN, 0.0, 1.0).is_err());
        assert!(check_f64("x", 2.0, 0.0, 1.0).is_err());
        assert!(check_f64("x", 1.0, 0.0, 1.0).is_ok());
    }
}
