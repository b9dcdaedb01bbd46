//! Things that happen to a pack, as opposed to what it measures.

use serde::{Deserialize, Serialize};

use crate::ids::{BootId, PackId};
use crate::sample::AlarmFlags;

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    /// Alarm flags that were clear are now set.
    AlarmRaised(AlarmFlags),
    /// Alarm flags that were set are now clear.
    AlarmCleared(AlarmFlags),
    /// The pack answers again (or answered for the first time).
    PackOnline,
    /// The pack stopped answering.
    PackOffline {
        /// The last error seen, for the operator.
        reason: String,
    },
}

impl EventKind {
    /// Stable lower-case name of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::AlarmRaised(_) => "alarm_raised",
            EventKind::AlarmCleared(_) => "alarm_cleared",
            EventKind::PackOnline => "pack_online",
            EventKind::PackOffline { .. } => "pack_offline",
        }
    }
}

/// One event about one pack.
///
/// `(pack_id, boot_id, seq)` is unique, like a sample's, and is the
/// de-duplication id on the events stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The pack concerned.
    pub pack_id: PackId,
    /// The collector run that saw it.
    pub boot_id: BootId,
    /// Per-pack event sequence number within the run, from 1.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    /// The de-duplication id: `pack:boot:e<seq>`.
    pub fn msg_id(&self) -> String {
        format!("{}:{}:e{}", self.pack_id, self.boot_id, self.seq)
    }
}
