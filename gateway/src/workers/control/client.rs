//! Sending a command to the control worker: for `packgate command` and the
//! cloud worker.

use std::time::Duration;

use async_nats::RequestErrorKind;
use packgate_protocol::{decode, encode, names, Command, CommandReply, DecodeError};

/// Why a command got no usable reply. A reply that says rejected, failed or
/// timed out is a reply, not an error.
#[derive(Debug, thiserror::Error)]
pub enum ControlClientError {
    /// No control worker subscribes to the control subject.
    #[error(
        "no control worker is running (nobody serves {})",
        names::CONTROL_SUBJECT
    )]
    NoControlWorker,
    /// No reply within the timeout; the command may still be applied (send
    /// it again with the same id to learn its outcome).
    #[error("no reply from the control worker within {0:?}")]
    TimedOut(Duration),
    /// The request could not be sent.
    #[error("cannot send the command: {0}")]
    Request(String),
    /// The reply did not decode.
    #[error("malformed reply from the control worker: {0}")]
    MalformedReply(#[from] DecodeError),
    /// The reply is for another command.
    #[error("the reply is for command {found:?}, not {expected:?}")]
    WrongReply {
        /// The id sent.
        expected: String,
        /// The id in the reply.
        found: String,
    },
}

/// A setting's value for people: at most six significant digits, without
/// trailing zeros (`61.3`, not `61.300000000000004`; `1500`, not `1500.0`).
pub fn format_value(value: f64) -> String {
    if !value.is_finite() || value == 0.0 {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor();
    // Whole digits beyond the sixth are kept, never rounded away.
    let decimals = (5.0 - magnitude).clamp(0.0, 12.0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Sends `command` to the control worker and waits up to `timeout` for its
/// reply. Give the command's deadline (default 5 s) plus a margin; a
/// repeat of the same command (same id) is answered with the first reply.
pub async fn send_command(
    client: &async_nats::Client,
    command: &Command,
    timeout: Duration,
) -> Result<CommandReply, ControlClientError> {
    let request = async_nats::Request::new()
        .payload(encode(command).into())
        .timeout(Some(timeout));
    let sent = tokio::time::timeout(
        timeout,
        client.send_request(names::CONTROL_SUBJECT, request),
    )
    .await;
    let message = match sent {
        Err(_) => return Err(ControlClientError::TimedOut(timeout)),
        Ok(Err(error)) => {
            return Err(match error.kind() {
                RequestErrorKind::NoResponders => ControlClientError::NoControlWorker,
                RequestErrorKind::TimedOut => ControlClientError::TimedOut(timeout),
                _ => ControlClientError::Request(error.to_string()),
            })
        }
        Ok(Ok(message)) => message,
    };
    let reply = decode::<CommandReply>(&message.payload)?;
    if reply.command_id != command.id {
        return Err(ControlClientError::WrongReply {
            expected: command.id.0.clone(),
            found: reply.command_id.0,
        });
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::format_value;

    #[test]
    fn values_are_shown_to_six_significant_digits() {
        assert_eq!(format_value(61.300000000000004), "61.3");
        assert_eq!(format_value(21.0), "21");
        assert_eq!(format_value(1500.0), "1500");
        assert_eq!(format_value(-5.0), "-5");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(0.000123456789), "0.000123457");
        assert_eq!(format_value(1234567.0), "1234567");
        assert_eq!(format_value(3.25), "3.25");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "inf");
    }
}
