//! Things that happen to a pack, as opposed to what it measures.

use serde::{Deserialize, Serialize};

use crate::ids::{BootId, PackId};
use crate::limits::{truncate, MAX_REASON_LEN, MAX_SERIAL_NUMBER_LEN};
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
    /// The pack answers again (or answered for the first time), and its
    /// driver read its serial number: what [`EventKind::PackOnline`] says,
    /// with the unit that answered, so a swapped pack shows.
    ///
    /// A variant of its own, added last, so the events written before it
    /// existed (and every event of a driver without serial numbers) keep
    /// their encoding and still decode.
    PackOnlineIdentified {
        /// The serial number as the pack reports it.
        serial_number: String,
    },
}

impl EventKind {
    /// The event that a pack answers again: with its serial number when the
    /// driver read one, cut to
    /// [`MAX_SERIAL_NUMBER_LEN`](crate::limits::MAX_SERIAL_NUMBER_LEN).
    pub fn pack_online(serial_number: Option<String>) -> Self {
        match serial_number {
            Some(serial_number) => EventKind::PackOnlineIdentified {
                serial_number: truncate(serial_number, MAX_SERIAL_NUMBER_LEN),
            },
            None => EventKind::PackOnline,
        }
    }

    /// The event that a pack stopped answering, with the last error cut to
    /// [`MAX_REASON_LEN`](crate::limits::MAX_REASON_LEN).
    pub fn pack_offline(reason: String) -> Self {
        EventKind::PackOffline {
            reason: truncate(reason, MAX_REASON_LEN),
        }
    }

    /// Whether the event says the pack answers (again).
    pub fn is_pack_online(&self) -> bool {
        matches!(
            self,
            EventKind::PackOnline | EventKind::PackOnlineIdentified { .. }
        )
    }

    /// Stable lower-case name of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::AlarmRaised(_) => "alarm_raised",
            EventKind::AlarmCleared(_) => "alarm_cleared",
            EventKind::PackOnline | EventKind::PackOnlineIdentified { .. } => "pack_online",
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
