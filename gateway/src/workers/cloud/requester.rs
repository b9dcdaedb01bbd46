//! The cloud side of a command, as an application in the cloud sends it:
//! `packgate cloud command` uses it, and it is the reference for an
//! integrator's own client. It connects to the cloud with the `[cloud]`
//! identity and TLS settings, sends an encoded `Command` (origin `Cloud`)
//! to `packgate.<gateway_id>.control` by request-reply, and decodes the
//! `CommandReply`.

use std::time::Duration;

use async_nats::RequestErrorKind;
use packgate_protocol::{decode, encode, Command, CommandReply};

use super::{control_subject, link, CloudError, CloudLinkFault};
use crate::config::CloudConfig;

/// One connection to the cloud of `config`, as an application there
/// makes it (no reconnection): for the commands that act on the cloud.
pub(crate) async fn connect_once(config: &CloudConfig) -> Result<async_nats::Client, CloudError> {
    config.validate()?;
    config.check_files()?;
    let options = link::identity(config).await?;
    let urls = link::shown_urls(&config.urls);
    let per_url = u32::try_from(config.urls.len()).unwrap_or(u32::MAX);
    let connect = options.connect(config.urls.clone());
    match tokio::time::timeout(
        config.request_timeout() * per_url.saturating_add(1),
        connect,
    )
    .await
    {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(CloudError::Connect {
            urls,
            reason: CloudLinkFault::classify(&error).to_string(),
        }),
        Err(_) => Err(CloudError::Connect {
            urls,
            reason: CloudLinkFault::Timeout.to_string(),
        }),
    }
}

/// Sends `command` to the gateway `config.gateway_id` through the cloud of
/// `config` and waits up to `wait` for its reply.
pub async fn request_command(
    config: &CloudConfig,
    command: &Command,
    wait: Duration,
) -> Result<CommandReply, CloudError> {
    let client = connect_once(config).await?;
    let subject = control_subject(&config.gateway_id);
    let request = async_nats::Request::new()
        .payload(encode(command).into())
        .timeout(Some(wait));
    let sent = tokio::time::timeout(
        wait + Duration::from_secs(1),
        client.send_request(subject.clone(), request),
    )
    .await;
    let reply = match sent {
        Ok(Ok(reply)) => reply,
        Ok(Err(error)) if error.kind() == RequestErrorKind::NoResponders => {
            return Err(CloudError::NoGateway { subject })
        }
        Ok(Err(error)) => {
            return Err(CloudError::Request {
                subject,
                reason: error.to_string(),
            })
        }
        Err(_) => {
            return Err(CloudError::Request {
                subject,
                reason: format!("no reply within {wait:?}"),
            })
        }
    };
    let _ = tokio::time::timeout(config.request_timeout(), client.drain()).await;
    decode::<CommandReply>(&reply.payload).map_err(|error| CloudError::Reply {
        reason: error.to_string(),
    })
}
