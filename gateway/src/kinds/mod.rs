//! The kinds of worker, and everything known of each without running it:
//! its name, where it sits in the data flow, what `packgate NAME` says of
//! it, the counter that tells most about it, the durable consumers it
//! reads, what it may do on the broker and which setting disables it.
//!
//! One [`WorkerSpec`] per kind, in the table below, is the only place
//! these facts are written: the supervisor, the broker's users,
//! `packgate status`, the web page and the command line all read it. It
//! sits below the workers and the broker (it imports only the
//! configuration), so both can read it.

mod grants;
mod table;

use std::fmt;

use packgate_protocol::names::ConsumerSpec;

use crate::config::Config;
pub use grants::Permissions;

/// Every kind of worker, by the name it has on the command line, in its
/// metrics and in `packgate status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkerKind {
    /// Polls the packs and publishes samples and events.
    Collect,
    /// Stores samples in SQLite.
    Data,
    /// Validates, audits and dispatches commands to packs.
    Control,
    /// Stores every worker's metrics and the pack events.
    Monitor,
    /// Uploads to the cloud and brings its commands in.
    Cloud,
    /// Drives the GPIO alarm relay and status LED from pack events.
    Outputs,
    /// Serves the Prometheus metrics over HTTP.
    Http,
    /// Publishes the packs to an MQTT broker, with Home Assistant
    /// discovery.
    Mqtt,
    /// Follows the packs of each bank and publishes the bank's state and
    /// charge limits.
    Bank,
}

/// What is known of one kind of worker without running it.
#[derive(Debug)]
pub struct WorkerSpec {
    /// Its name: command, broker user, metrics, `status`.
    pub name: &'static str,
    /// Where it sits in the data flow (its stop order).
    pub stage: Stage,
    /// The help of `packgate NAME`, which runs only this worker; `None`
    /// when it has no such command of its own.
    pub command: Option<&'static str>,
    /// Its most telling counters, by preference; `status` shows the first
    /// it has.
    pub key_counters: &'static [&'static str],
    /// The durable consumers it reads; each must exist for it to work.
    pub consumers: &'static [ConsumerSpec],
    /// Adds what its broker user may publish and subscribe to (besides
    /// its own inbox and metrics subject).
    pub grants: fn(&mut Permissions),
    /// The setting that keeps `packgate run` from running it, if `config`
    /// has it so.
    pub disabled_by: fn(&Config) -> Option<&'static str>,
}

impl WorkerKind {
    /// Every kind; within a stage, in start order.
    pub const ALL: [WorkerKind; 9] = [
        WorkerKind::Collect,
        WorkerKind::Bank,
        WorkerKind::Data,
        WorkerKind::Control,
        WorkerKind::Monitor,
        WorkerKind::Cloud,
        WorkerKind::Outputs,
        WorkerKind::Http,
        WorkerKind::Mqtt,
    ];

    /// Its facts.
    pub const fn spec(self) -> &'static WorkerSpec {
        table::spec(self)
    }

    /// The worker's name.
    pub const fn name(self) -> &'static str {
        self.spec().name
    }

    /// Where the worker sits in the data flow.
    pub const fn stage(self) -> Stage {
        self.spec().stage
    }

    /// The kind named `name`, if one is.
    pub fn from_name(name: &str) -> Option<WorkerKind> {
        WorkerKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The name of a process running only this worker, as it introduces
    /// itself to the broker: `packgate-collect`, ...
    pub fn process_name(self) -> String {
        format!("packgate-{}", self.name())
    }

    /// The durable consumers the worker reads: each must exist on the
    /// broker for it to work.
    pub fn consumers(self) -> &'static [ConsumerSpec] {
        self.spec().consumers
    }

    /// Why `packgate run` with `config` does not run this worker, as the
    /// setting that says so; `None` when it runs.
    pub fn disabled_by(self, config: &Config) -> Option<&'static str> {
        (self.spec().disabled_by)(config)
    }

    /// The kinds a gateway of `config` runs in `packgate run`: every
    /// worker that `config` does not disable ([`WorkerKind::disabled_by`]).
    pub fn expected(config: &Config) -> Vec<WorkerKind> {
        WorkerKind::ALL
            .into_iter()
            .filter(|kind| kind.disabled_by(config).is_none())
            .collect()
    }

    /// The counter shown for this worker among `counters`: its most
    /// telling one if present, else its first.
    pub fn key_counter(self, counters: &[(String, u64)]) -> Option<(String, u64)> {
        self.spec()
            .key_counters
            .iter()
            .find_map(|name| counters.iter().find(|(n, _)| n == name))
            .or_else(|| counters.first())
            .cloned()
    }
}

impl fmt::Display for WorkerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a worker sits in the data flow; it decides the stop order, and
/// the start order backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Puts messages on the streams (collect): stops first, after flushing
    /// its publishes.
    Source,
    /// Stores what the sources published (data): stops once it has taken
    /// what the stopped sources flushed.
    Store,
    /// Everything else: stops last.
    Sink,
}

impl Stage {
    /// Every stage, in stop order.
    pub const STOP_ORDER: [Stage; 3] = [Stage::Source, Stage::Store, Stage::Sink];

    /// Where the stage stops: 0 first. The workers start the other way
    /// round.
    pub fn stop_rank(self) -> usize {
        match self {
            Stage::Source => 0,
            Stage::Store => 1,
            Stage::Sink => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stages_rank_is_its_place_in_the_stop_order() {
        for (place, stage) in Stage::STOP_ORDER.into_iter().enumerate() {
            assert_eq!(stage.stop_rank(), place, "{stage:?}");
        }
    }

    #[test]
    fn every_kind_has_its_own_name_and_is_found_by_it() {
        let names: std::collections::BTreeSet<_> =
            WorkerKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), WorkerKind::ALL.len());
        for kind in WorkerKind::ALL {
            assert_eq!(WorkerKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(WorkerKind::from_name("nope"), None);
        assert_eq!(WorkerKind::Collect.stage(), Stage::Source);
        assert_eq!(WorkerKind::Bank.stage(), Stage::Source);
        assert_eq!(WorkerKind::Data.stage(), Stage::Store);
        assert_eq!(WorkerKind::Mqtt.stage(), Stage::Sink);
    }

    #[test]
    fn key_counters_prefer_the_telling_one() {
        let counters: Vec<(String, u64)> = vec![
            ("samples_duplicate".to_owned(), 0),
            ("samples_stored".to_owned(), 1),
        ];
        assert_eq!(
            WorkerKind::Data.key_counter(&counters),
            Some(("samples_stored".to_owned(), 1))
        );
        assert_eq!(
            WorkerKind::Outputs.key_counter(&counters),
            Some(("samples_duplicate".to_owned(), 0))
        );
        assert_eq!(WorkerKind::Outputs.key_counter(&[]), None);
        assert_eq!(WorkerKind::Monitor.consumers().len(), 2);
        assert!(WorkerKind::Http.consumers().is_empty());
    }

    #[test]
    fn the_configuration_disables_the_optional_workers() {
        let config = Config::default();
        assert_eq!(
            WorkerKind::Cloud.disabled_by(&config),
            Some("cloud.enabled = false")
        );
        assert_eq!(
            WorkerKind::Bank.disabled_by(&config),
            Some("no [[banks]] configured")
        );
        assert_eq!(WorkerKind::Data.disabled_by(&config), None);
        assert!(WorkerKind::expected(&config).contains(&WorkerKind::Collect));
        assert!(!WorkerKind::expected(&config).contains(&WorkerKind::Cloud));
    }
}
