//! The health rules that `packgate status` and the web page share: when a
//! worker is alive, stalled, missing or disabled, when a pack is online,
//! stale or suspect, what the cloud worker's gauges say of its link. Pure:
//! facts in, verdicts out, so the two views can never disagree. Which
//! counter tells most about a worker and which consumers it reads are its
//! kind's facts ([`WorkerKind::key_counter`], [`WorkerKind::consumers`]).

pub use crate::telemetry::health::{
    cloud_link, data_stall, gauge, missing_consumer, pack_state, stale_after_ms, CloudLink,
    PackState, LINK_ERROR_NOTE,
};

use std::collections::BTreeMap;

use crate::config::Config;
use crate::kinds::WorkerKind;

/// What a worker is doing, as its snapshots, the broker and the
/// configuration tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    /// A snapshot in the last [`alive_window_ms`], and nothing wrong seen.
    Alive,
    /// Alive, but not doing its work; the reasons say why.
    Stalled(Vec<String>),
    /// No snapshot in the last [`alive_window_ms`] (or never).
    Missing,
    /// The configuration does not run it (the setting that says so), and
    /// it sends no snapshots from elsewhere.
    Disabled(&'static str),
}

impl WorkerState {
    /// One word for it: `alive`, `stalled`, `missing` or `disabled`.
    pub fn name(&self) -> &'static str {
        match self {
            WorkerState::Alive => "alive",
            WorkerState::Stalled(_) => "stalled",
            WorkerState::Missing => "missing",
            WorkerState::Disabled(_) => "disabled",
        }
    }
}

/// How recent a worker's last snapshot must be for it to count as alive:
/// three snapshot intervals.
pub fn alive_window_ms(config: &Config) -> i64 {
    i64::try_from(config.monitor.snapshot_interval().as_millis())
        .unwrap_or(i64::MAX / 4)
        .saturating_mul(3)
}

/// The verdict on `kind` under `config`'s rules (see
/// [`HealthRules::worker_state`]).
pub fn worker_state(
    kind: WorkerKind,
    config: &Config,
    last_snapshot_ms: Option<i64>,
    now_ms: i64,
    reasons: Vec<String>,
) -> WorkerState {
    HealthRules::of(config).worker_state(kind, last_snapshot_ms, now_ms, reasons)
}

/// What the worker verdicts read of the configuration: how recent a
/// snapshot must be, and which workers it does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRules {
    /// How recent a worker's last snapshot must be for it to count as
    /// alive ([`alive_window_ms`]).
    pub alive_window_ms: i64,
    /// The workers the configuration does not run, with the setting that
    /// says so.
    pub disabled: BTreeMap<WorkerKind, &'static str>,
}

impl HealthRules {
    /// The rules of `config`.
    pub fn of(config: &Config) -> Self {
        Self {
            alive_window_ms: alive_window_ms(config),
            disabled: WorkerKind::ALL
                .into_iter()
                .filter_map(|kind| kind.disabled_by(config).map(|why| (kind, why)))
                .collect(),
        }
    }

    /// Why the configuration does not run `kind`; `None` when it does.
    pub fn disabled_by(&self, kind: WorkerKind) -> Option<&'static str> {
        self.disabled.get(&kind).copied()
    }

    /// The verdict on `kind`, whose newest snapshot was taken at
    /// `last_snapshot_ms` (none: never seen), at `now_ms`, given the
    /// `reasons` it is not working (see [`data_stall`] and
    /// [`WorkerKind::consumers`]).
    pub fn worker_state(
        &self,
        kind: WorkerKind,
        last_snapshot_ms: Option<i64>,
        now_ms: i64,
        reasons: Vec<String>,
    ) -> WorkerState {
        let fresh = last_snapshot_ms.is_some_and(|at| now_ms - at <= self.alive_window_ms);
        // A worker the configuration does not run is disabled, not
        // missing; one that sends snapshots anyway (run elsewhere) is
        // shown as it is.
        match (self.disabled_by(kind), fresh) {
            (Some(why), false) => WorkerState::Disabled(why),
            (_, false) => WorkerState::Missing,
            (_, true) if reasons.is_empty() => WorkerState::Alive,
            (_, true) => WorkerState::Stalled(reasons),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_alive_stalled_missing_or_disabled() {
        let mut config = Config::default();
        config.monitor.snapshot_interval_s = 10;
        let now = 1_000_000;
        let alive = |kind, at, reasons| worker_state(kind, &config, at, now, reasons);
        assert_eq!(alive_window_ms(&config), 30_000);
        assert_eq!(
            alive(WorkerKind::Data, Some(now - 30_000), vec![]),
            WorkerState::Alive
        );
        assert_eq!(
            alive(WorkerKind::Data, Some(now - 30_001), vec![]),
            WorkerState::Missing
        );
        assert_eq!(alive(WorkerKind::Data, None, vec![]), WorkerState::Missing);
        assert_eq!(
            alive(WorkerKind::Data, Some(now), vec!["x".into()]),
            WorkerState::Stalled(vec!["x".into()])
        );
        // The cloud worker is off by default: disabled unless it reports.
        assert_eq!(
            alive(WorkerKind::Cloud, None, vec![]),
            WorkerState::Disabled("cloud.enabled = false")
        );
        assert_eq!(
            alive(WorkerKind::Cloud, Some(now), vec![]),
            WorkerState::Alive
        );
        assert_eq!(WorkerState::Stalled(vec![]).name(), "stalled");
    }
}
