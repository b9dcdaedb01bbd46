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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::codec::{decode, encode};

    /// The layout the README gives an integrator, byte by byte: the
    /// envelope (version 2, kind 3), then each field in order.
    #[test]
    fn a_command_has_the_documented_wire_layout() {
        let mut bytes = vec![2, 3];
        bytes.extend([4]); // id: length, then UTF-8
        bytes.extend(b"c-17");
        bytes.extend([6]); // pack_id
        bytes.extend(b"sim-01");
        bytes.extend([22]); // setting
        bytes.extend(b"charge_current_limit_a");
        bytes.extend(40.5f64.to_le_bytes()); // value: 8 bytes, little-endian
        bytes.push(0); // origin: 0 = Cloud, 1 = Local
        bytes.extend([0xd0, 0x0f]); // issued_at_ms 1000: zigzag 2000, varint
        bytes.extend([0xf0, 0xab, 0x01]); // expires_at_ms 11000: zigzag 22000
        let command: Command = decode(&bytes).unwrap();
        assert_eq!(
            command,
            Command {
                id: CommandId("c-17".into()),
                pack_id: PackId::new("sim-01").unwrap(),
                setting: SettingName("charge_current_limit_a".into()),
                value: 40.5,
                origin: CommandOrigin::Cloud,
                issued_at_ms: 1_000,
                expires_at_ms: 11_000,
            }
        );
        assert_eq!(encode(&command), bytes);
    }

    #[test]
    fn a_reply_has_the_documented_wire_layout() {
        // Envelope (version 2, kind 4), command id, outcome variant
        // (0 Applied, 1 Rejected, 2 Failed, 3 TimedOut) and its field.
        let mut applied = vec![2, 4, 4];
        applied.extend(b"c-17");
        applied.push(0);
        applied.extend(40.0f64.to_le_bytes());
        assert_eq!(
            decode::<CommandReply>(&applied).unwrap(),
            CommandReply {
                command_id: CommandId("c-17".into()),
                outcome: CommandOutcome::Applied { read_back: 40.0 },
            }
        );
        let mut rejected = vec![2, 4, 4];
        rejected.extend(b"c-17");
        rejected.extend([1, 2]);
        rejected.extend(b"no");
        assert_eq!(
            decode::<CommandReply>(&rejected).unwrap().outcome,
            CommandOutcome::Rejected {
                reason: "no".into()
            }
        );
        let timed_out = [2, 4, 4, b'c', b'-', b'1', b'7', 3];
        assert_eq!(
            decode::<CommandReply>(&timed_out).unwrap().outcome,
            CommandOutcome::TimedOut
        );
    }
}
