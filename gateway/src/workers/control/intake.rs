//! What arrives on the control subject, read as far as it can be: a
//! command (even one whose value is not a finite number, so that it is
//! refused and audited with its id), or an unreadable request with its id
//! where the bytes begin with a readable one.

use packgate_protocol::{decode, Command, CommandId, DecodeError, MessageKind, WireMessage};
use serde::{Deserialize, Serialize};

/// Longest id taken from a request that did not decode; a longer one is
/// not trusted as an audit key.
const MAX_SALVAGED_ID_BYTES: usize = 128;

/// A command decoded without the codec's check of its value: validation
/// refuses a non-finite value itself, with the command's id, and audits it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
struct Unchecked(Command);

impl WireMessage for Unchecked {
    const KIND: MessageKind = MessageKind::Command;
}

/// A request on the control subject.
#[derive(Debug)]
pub(super) enum Request {
    /// A command, to be validated.
    Command(Command),
    /// Bytes that are not a command.
    Unreadable {
        /// The id they begin with, if one could be read.
        id: Option<CommandId>,
        /// Why they are not a command.
        error: DecodeError,
    },
}

/// Reads a request's payload.
pub(super) fn read(payload: &[u8]) -> Request {
    match decode::<Unchecked>(payload) {
        Ok(Unchecked(command)) => Request::Command(command),
        Err(error) => Request::Unreadable {
            id: salvage_id(payload),
            error,
        },
    }
}

/// The id at the start of a command envelope that did not decode (the id
/// is a command's first field), if it is short and not empty.
fn salvage_id(payload: &[u8]) -> Option<CommandId> {
    let [version, kind, rest @ ..] = payload else {
        return None;
    };
    if *version != <Command as WireMessage>::VERSION || *kind != MessageKind::Command as u8 {
        return None;
    }
    let (id, _) = postcard::take_from_bytes::<CommandId>(rest).ok()?;
    (!id.0.is_empty() && id.0.len() <= MAX_SALVAGED_ID_BYTES).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use packgate_protocol::{encode, CommandOrigin, PackId, SettingName};

    fn command(id: &str, value: f64) -> Command {
        Command {
            id: CommandId(id.into()),
            pack_id: PackId::new("sim-01").unwrap(),
            setting: SettingName("charge_current_limit_a".into()),
            value,
            origin: CommandOrigin::Local,
            issued_at_ms: 1,
            expires_at_ms: 2,
        }
    }

    #[test]
    fn a_non_finite_value_still_reads_as_a_command() {
        for value in [f64::NAN, f64::INFINITY, 3.5] {
            let Request::Command(read) = read(&encode(&command("x", value))) else {
                panic!("not read");
            };
            assert_eq!(read.id.0, "x");
        }
    }

    #[test]
    fn the_id_of_a_truncated_command_is_kept_when_short() {
        let bytes = encode(&command("abc", 1.0));
        let Request::Unreadable { id, .. } = read(&bytes[..bytes.len() - 3]) else {
            panic!("read");
        };
        assert_eq!(id, Some(CommandId("abc".into())));
        let long = "x".repeat(MAX_SALVAGED_ID_BYTES + 1);
        let bytes = encode(&command(&long, 1.0));
        let Request::Unreadable { id, .. } = read(&bytes[..bytes.len() - 3]) else {
            panic!("read");
        };
        assert_eq!(id, None);
        let Request::Unreadable { id, .. } = read(b"garbage") else {
            panic!("read");
        };
        assert_eq!(id, None);
    }
}
