//! Commands to packs and their replies (the control path).

use serde::{Deserialize, Serialize};

use crate::ids::PackId;

/// Caller-chosen unique id of a command; a repeated id is answered with the
/// stored result and never written twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CommandId(pub String);

/// Name of a writable setting in the pack's profile, such as
/// `charge_current_limit_a`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SettingName(pub String);

/// Who asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOrigin {
    /// Through the cloud link.
    Cloud,
    /// On the box, by `packgate command`.
    Local,
}

/// A request to change one setting of one pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Unique id, for idempotency.
    pub id: CommandId,
    /// Target pack.
    pub pack_id: PackId,
    /// Setting to write.
    pub setting: SettingName,
    /// Value in the setting's unit (as named in the setting).
    pub value: f64,
    /// Who asked.
    pub origin: CommandOrigin,
    /// When it was issued, milliseconds since the Unix epoch.
    pub issued_at_ms: i64,
    /// After this instant it must not be applied, milliseconds since the
    /// Unix epoch.
    pub expires_at_ms: i64,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandOutcome {
    /// Written and verified: the value read back from the pack.
    Applied {
        /// Value read back after the write.
        read_back: f64,
    },
    /// Refused before anything was written.
    Rejected {
        /// Why.
        reason: String,
    },
    /// The write or its verification failed.
    Failed {
        /// The error.
        error: String,
    },
    /// No answer within the command's deadline.
    TimedOut,
}

/// The answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandReply {
    /// The command answered.
    pub command_id: CommandId,
    /// Its outcome.
    pub outcome: CommandOutcome,
}
