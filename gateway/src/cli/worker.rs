//! The kinds of worker, as the command line and `packgate status` name
//! them.

use std::fmt;

use crate::runtime::WorkerSet;

/// One kind of worker: each runs alone as `packgate <name>`, or with the
/// others in `packgate run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkerKind {
    /// Polls the packs and publishes their samples.
    Collect,
    /// Stores the samples in SQLite.
    Data,
    /// Uploads to the cloud and brings its commands in.
    Cloud,
    /// Validates, audits and dispatches commands to packs.
    Control,
    /// Stores every worker's metrics and the pack events.
    Monitor,
}

impl WorkerKind {
    /// Every kind, in the order `packgate status` shows them.
    pub const ALL: [WorkerKind; 5] = [
        WorkerKind::Collect,
        WorkerKind::Data,
        WorkerKind::Cloud,
        WorkerKind::Control,
        WorkerKind::Monitor,
    ];

    /// The name of the subcommand and of the worker in its metrics
    /// snapshots: `collect`, `data`, `cloud`, `control`, `monitor`.
    pub const fn name(self) -> &'static str {
        match self {
            WorkerKind::Collect => "collect",
            WorkerKind::Data => "data",
            WorkerKind::Cloud => "cloud",
            WorkerKind::Control => "control",
            WorkerKind::Monitor => "monitor",
        }
    }

    /// The name of a process running only this worker, as it introduces
    /// itself to the broker: `packgate-collect`, ...
    pub fn process_name(self) -> String {
        format!("packgate-{}", self.name())
    }

    /// The set of workers holding only this one.
    pub const fn only(self) -> WorkerSet {
        let mut set = WorkerSet::NONE;
        match self {
            WorkerKind::Collect => set.collect = true,
            WorkerKind::Data => set.data = true,
            WorkerKind::Cloud => set.cloud = true,
            WorkerKind::Control => set.control = true,
            WorkerKind::Monitor => set.monitor = true,
        }
        set
    }
}

impl fmt::Display for WorkerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_runs_exactly_its_own_worker() {
        let mut seen = Vec::new();
        for kind in WorkerKind::ALL {
            let set = kind.only();
            let on = [
                (set.collect, WorkerKind::Collect),
                (set.data, WorkerKind::Data),
                (set.cloud, WorkerKind::Cloud),
                (set.control, WorkerKind::Control),
                (set.monitor, WorkerKind::Monitor),
            ];
            let running: Vec<WorkerKind> = on.iter().filter(|(b, _)| *b).map(|(_, k)| *k).collect();
            assert_eq!(running, vec![kind], "{kind}");
            seen.push(kind.name());
        }
        assert_eq!(seen, ["collect", "data", "cloud", "control", "monitor"]);
        assert_eq!(WorkerKind::Cloud.process_name(), "packgate-cloud");
    }
}
