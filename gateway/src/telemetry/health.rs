//! The health rules read off snapshots and samples alone: when a pack is
//! online, stale or suspect, when the data worker is stalled, what the
//! cloud worker's gauges say of its link. Pure: facts in, verdicts out.
//! The rules that also need the workers' kinds and the configuration are
//! in [`crate::health`], which `packgate status` and the web page share.

use packgate_protocol::names::ConsumerSpec;
use packgate_protocol::DataQuality;

/// The gauge `name` of a snapshot, if it has one.
pub fn gauge(gauges: &[(String, f64)], name: &str) -> Option<f64> {
    gauges.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// Why a consumer of a worker does not let it work: it is missing.
pub fn missing_consumer(spec: &ConsumerSpec) -> String {
    format!("consumer {} missing", spec.durable)
}

/// Why the data worker is stalled, if it is: `lag` samples wait in its
/// consumer while it has committed nothing for longer than `stall_ms`
/// (since its last commit, its `last_commit_ms` gauge, or since it
/// started when it has committed nothing yet). Its snapshot was taken at
/// `snapshot_ms`, `uptime_s` after it started.
pub fn data_stall(
    gauges: &[(String, f64)],
    snapshot_ms: i64,
    uptime_s: u64,
    lag: u64,
    now_ms: i64,
    stall_ms: i64,
) -> Option<String> {
    if lag == 0 {
        return None;
    }
    let up_ms = i64::try_from(uptime_s)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    let last = gauge(gauges, "last_commit_ms")
        .map(|ms| ms as i64)
        .filter(|ms| *ms > 0)
        .unwrap_or(snapshot_ms.saturating_sub(up_ms));
    let idle = now_ms.saturating_sub(last);
    (idle > stall_ms).then(|| {
        format!(
            "lag {lag}, nothing stored for {}",
            crate::text::format_age(idle)
        )
    })
}

/// What a pack's last sample says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackState {
    /// Read in its poll, recently.
    Online,
    /// Not read (the pack did not answer), or too old.
    Stale,
    /// Read, but not believable (see the README's "Readings that cannot
    /// be true").
    Suspect,
}

impl PackState {
    /// One word for it: `online`, `stale` or `suspect`.
    pub fn name(self) -> &'static str {
        match self {
            PackState::Online => "online",
            PackState::Stale => "stale",
            PackState::Suspect => "suspect",
        }
    }
}

/// How old a pack's last sample may be before the pack counts as stale:
/// three poll periods, at least three seconds.
pub fn stale_after_ms(poll_interval_ms: u64) -> i64 {
    i64::try_from(poll_interval_ms.saturating_mul(3))
        .unwrap_or(i64::MAX)
        .max(3_000)
}

/// The state of a pack whose last sample has `quality` and is `age_ms`
/// old, polled every `poll_interval_ms`.
pub fn pack_state(quality: DataQuality, age_ms: i64, poll_interval_ms: u64) -> PackState {
    if quality == DataQuality::Stale || age_ms > stale_after_ms(poll_interval_ms) {
        PackState::Stale
    } else if quality == DataQuality::Suspect {
        PackState::Suspect
    } else {
        PackState::Online
    }
}

/// The note of the cloud worker's snapshot that says why its link is down.
pub const LINK_ERROR_NOTE: &str = "link_error";

/// The cloud link as the cloud worker's gauges and notes tell it.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudLink {
    /// Whether the link is up; none when the gauge is absent.
    pub up: Option<bool>,
    /// Why it is down, when it is and the worker said (older workers do
    /// not).
    pub why: Option<String>,
    /// Samples and events waiting to be uploaded.
    pub backlog: Option<f64>,
    /// How far behind the uploads are, milliseconds.
    pub upload_lag_ms: Option<f64>,
}

/// The cloud link from the cloud worker's snapshot gauges and notes.
pub fn cloud_link(gauges: &[(String, f64)], notes: &[(String, String)]) -> CloudLink {
    let up = gauge(gauges, "link_up").map(|v| v > 0.0);
    let why = notes
        .iter()
        .find(|(name, _)| name == LINK_ERROR_NOTE)
        .map(|(_, text)| text.clone())
        .filter(|_| up == Some(false));
    CloudLink {
        up,
        why,
        backlog: gauge(gauges, "backlog"),
        upload_lag_ms: gauge(gauges, "upload_lag_ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_worker_stalls_only_with_a_lag_and_no_commit() {
        let gauges = vec![("last_commit_ms".to_owned(), 50_000.0)];
        assert_eq!(data_stall(&gauges, 90_000, 100, 0, 100_000, 30_000), None);
        assert_eq!(data_stall(&gauges, 90_000, 100, 5, 80_000, 30_000), None);
        let why = data_stall(&gauges, 90_000, 100, 5, 80_001, 30_000).unwrap();
        assert_eq!(why, "lag 5, nothing stored for 30 s");
        // Never committed: idle since it started.
        assert_eq!(data_stall(&[], 90_000, 10, 1, 100_000, 30_000), None);
        assert!(data_stall(&[], 90_000, 10, 1, 110_001, 30_000).is_some());
    }

    #[test]
    fn packs_are_online_stale_or_suspect() {
        assert_eq!(stale_after_ms(1_000), 3_000);
        assert_eq!(stale_after_ms(100), 3_000);
        assert_eq!(stale_after_ms(5_000), 15_000);
        assert_eq!(
            pack_state(DataQuality::Fresh, 3_000, 1_000),
            PackState::Online
        );
        assert_eq!(
            pack_state(DataQuality::Fresh, 3_001, 1_000),
            PackState::Stale
        );
        assert_eq!(pack_state(DataQuality::Stale, 0, 1_000), PackState::Stale);
        assert_eq!(
            pack_state(DataQuality::Suspect, 0, 1_000),
            PackState::Suspect
        );
        assert_eq!(PackState::Suspect.name(), "suspect");
    }

    #[test]
    fn gauges_and_the_cloud_link() {
        let gauges = vec![("link_up".to_owned(), 0.0), ("backlog".to_owned(), 12.0)];
        assert_eq!(
            cloud_link(&gauges, &[]),
            CloudLink {
                up: Some(false),
                why: None,
                backlog: Some(12.0),
                upload_lag_ms: None
            }
        );
        assert_eq!(gauge(&gauges, "backlog"), Some(12.0));
        assert_eq!(gauge(&gauges, "nope"), None);
    }

    #[test]
    fn a_link_down_says_why_when_the_worker_said() {
        let notes = vec![(LINK_ERROR_NOTE.to_owned(), "TLS required".to_owned())];
        let down = vec![("link_up".to_owned(), 0.0)];
        assert_eq!(
            cloud_link(&down, &notes).why.as_deref(),
            Some("TLS required")
        );
        // Up, a stale note is not shown.
        let up = vec![("link_up".to_owned(), 1.0)];
        assert_eq!(cloud_link(&up, &notes).why, None);
    }
}
