//! A worker's health, published periodically to the metrics stream.

use serde::{Deserialize, Serialize};

/// Percentiles of one latency, over the snapshot's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// What is measured, such as `poll_to_commit`.
    pub name: String,
    /// Observations in the window.
    pub count: u64,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Largest, milliseconds.
    pub max_ms: f64,
}

/// Counters, gauges and latencies of one worker instance at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Worker kind: `collect`, `data`, `cloud`, `control`, `monitor`.
    pub worker: String,
    /// Instance name (host and pid), to tell two instances apart.
    pub instance: String,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Seconds since the worker started.
    pub uptime_s: u64,
    /// packgate version.
    pub version: String,
    /// Resident memory of the process, bytes.
    pub rss_bytes: u64,
    /// CPU time of the process (user + system), seconds.
    pub cpu_s: f64,
    /// Monotonic counters by name.
    pub counters: Vec<(String, u64)>,
    /// Gauges by name.
    pub gauges: Vec<(String, f64)>,
    /// Latency summaries.
    pub latencies: Vec<LatencySummary>,
    /// Short texts by name, for what a number cannot say, such as why the
    /// cloud link is down (`link_error`). Since schema version 3; empty in
    /// older snapshots.
    pub notes: Vec<(String, String)>,
}

/// A snapshot as schema versions 1 and 2 wrote it: today's fields in the
/// same order, without the notes.
#[derive(Deserialize)]
struct MetricsSnapshotV2 {
    worker: String,
    instance: String,
    timestamp_ms: i64,
    uptime_s: u64,
    version: String,
    rss_bytes: u64,
    cpu_s: f64,
    counters: Vec<(String, u64)>,
    gauges: Vec<(String, f64)>,
    latencies: Vec<LatencySummary>,
}

/// Decodes a version 1 or 2 snapshot payload into today's
/// [`MetricsSnapshot`], with no notes.
pub(crate) fn take_snapshot_v2(payload: &[u8]) -> postcard::Result<(MetricsSnapshot, &[u8])> {
    let (old, rest): (MetricsSnapshotV2, &[u8]) = postcard::take_from_bytes(payload)?;
    let snapshot = MetricsSnapshot {
        worker: old.worker,
        instance: old.instance,
        timestamp_ms: old.timestamp_ms,
        uptime_s: old.uptime_s,
        version: old.version,
        rss_bytes: old.rss_bytes,
        cpu_s: old.cpu_s,
        counters: old.counters,
        gauges: old.gauges,
        latencies: old.latencies,
        notes: Vec::new(),
    };
    Ok((snapshot, rest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::codec::{decode, encode, DecodeError, WireMessage};

    fn snapshot(notes: Vec<(String, String)>) -> MetricsSnapshot {
        MetricsSnapshot {
            worker: "cloud".into(),
            instance: "box/1".into(),
            timestamp_ms: 1_700_000_000_000,
            uptime_s: 5,
            version: "0.1.0".into(),
            rss_bytes: 1 << 20,
            cpu_s: 0.5,
            counters: vec![("batches_sent".into(), 3)],
            gauges: vec![("link_up".into(), 0.0)],
            latencies: vec![],
            notes,
        }
    }

    /// The bytes a version 2 build wrote: the envelope, then every field
    /// but the notes.
    fn written_by_version_2(s: &MetricsSnapshot) -> Vec<u8> {
        #[derive(Serialize)]
        struct V2<'a> {
            worker: &'a str,
            instance: &'a str,
            timestamp_ms: i64,
            uptime_s: u64,
            version: &'a str,
            rss_bytes: u64,
            cpu_s: f64,
            counters: &'a [(String, u64)],
            gauges: &'a [(String, f64)],
            latencies: &'a [LatencySummary],
        }
        let v2 = V2 {
            worker: &s.worker,
            instance: &s.instance,
            timestamp_ms: s.timestamp_ms,
            uptime_s: s.uptime_s,
            version: &s.version,
            rss_bytes: s.rss_bytes,
            cpu_s: s.cpu_s,
            counters: &s.counters,
            gauges: &s.gauges,
            latencies: &s.latencies,
        };
        postcard::to_extend(&v2, vec![2, MetricsSnapshot::KIND as u8]).unwrap()
    }

    #[test]
    fn snapshots_of_versions_1_and_2_read_with_no_notes() {
        let old = snapshot(vec![]);
        let mut bytes = written_by_version_2(&old);
        assert_eq!(decode::<MetricsSnapshot>(&bytes), Ok(old.clone()));
        bytes[0] = 1;
        assert_eq!(decode::<MetricsSnapshot>(&bytes), Ok(old));
    }

    #[test]
    fn notes_round_trip_at_version_3_and_are_bounded() {
        let s = snapshot(vec![("link_error".into(), "certificate unknown".into())]);
        let bytes = encode(&s);
        assert_eq!(bytes[0], 3);
        assert_eq!(decode::<MetricsSnapshot>(&bytes), Ok(s.clone()));
        // A version 2 reader's layout does not take the notes: at version
        // 2 these bytes are refused, not misread.
        let mut as_v2 = bytes.clone();
        as_v2[0] = 2;
        assert!(matches!(
            decode::<MetricsSnapshot>(&as_v2),
            Err(DecodeError::TrailingBytes(_))
        ));
        let long = snapshot(vec![("link_error".into(), "x".repeat(2_000))]);
        assert!(matches!(
            decode::<MetricsSnapshot>(&encode(&long)),
            Err(DecodeError::TooLong { field: "notes", .. })
        ));
    }
}
