//! The cloud side of desired settings, as a cloud tool uses them: set,
//! read and delete a gateway's keys in the bucket, with the gateway's last
//! report on each. `packgate desired` uses it.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::TryStreamExt;
use packgate_protocol::names::cloud::{desired_key, desired_report_subject};

use super::value::{parse_key, DesiredValue};
use crate::config::CloudConfig;
use crate::workers::cloud::requester::connect_once;
use crate::workers::cloud::CloudError;

/// One desired setting of a gateway, as the bucket holds it, with the
/// gateway's last report on it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredEntry {
    /// The gateway.
    pub gateway_id: String,
    /// The pack.
    pub pack: String,
    /// The setting.
    pub setting: String,
    /// What the cloud wants.
    pub value: DesiredValue,
    /// The key's revision in the bucket.
    pub revision: u64,
    /// The gateway's last report on this setting (JSON), if any.
    pub report: Option<serde_json::Value>,
}

fn failed(reason: impl std::fmt::Display) -> CloudError {
    CloudError::Desired {
        reason: reason.to_string(),
    }
}

/// The bucket of `config`, on a connection of its own.
async fn bucket(config: &CloudConfig) -> Result<(jetstream::Context, kv::Store), CloudError> {
    let client = connect_once(config).await?;
    let js = jetstream::new(client);
    let timeout = config.request_timeout();
    let store = tokio::time::timeout(timeout, js.get_key_value(&config.desired_bucket))
        .await
        .map_err(|_| failed(format!("no answer within {timeout:?}")))?
        .map_err(|e| failed(format!("the bucket {}: {e}", config.desired_bucket)))?;
    Ok((js, store))
}

/// Sets the desired value of `setting` of `pack` on each of `gateways`;
/// the new revision of each key.
pub async fn set_desired(
    config: &CloudConfig,
    gateways: &[String],
    pack: &str,
    setting: &str,
    value: &DesiredValue,
) -> Result<Vec<(String, u64)>, CloudError> {
    let (_, store) = bucket(config).await?;
    let timeout = config.request_timeout();
    let mut revisions = Vec::with_capacity(gateways.len());
    for gateway in gateways {
        let key = desired_key(gateway, pack, setting);
        let revision = tokio::time::timeout(timeout, store.put(&key, value.to_json().into()))
            .await
            .map_err(|_| failed(format!("{key}: no answer within {timeout:?}")))?
            .map_err(|e| failed(format!("{key}: {e}")))?;
        revisions.push((key, revision));
    }
    Ok(revisions)
}

/// Deletes the desired value of `setting` of `pack` on `gateway`: the
/// gateway stops enforcing it.
pub async fn delete_desired(
    config: &CloudConfig,
    gateway: &str,
    pack: &str,
    setting: &str,
) -> Result<(), CloudError> {
    let (_, store) = bucket(config).await?;
    let key = desired_key(gateway, pack, setting);
    let timeout = config.request_timeout();
    tokio::time::timeout(timeout, store.delete(&key))
        .await
        .map_err(|_| failed(format!("{key}: no answer within {timeout:?}")))?
        .map_err(|e| failed(format!("{key}: {e}")))
}

/// Every desired setting of `gateway` (only those of `pack` when given),
/// with the gateway's last report on each, in key order.
pub async fn list_desired(
    config: &CloudConfig,
    gateway: &str,
    pack: Option<&str>,
) -> Result<Vec<DesiredEntry>, CloudError> {
    let (js, store) = bucket(config).await?;
    let timeout = config.request_timeout();
    let keys: Vec<String> = tokio::time::timeout(timeout * 4, async {
        store
            .keys()
            .await
            .map_err(failed)?
            .try_collect::<Vec<String>>()
            .await
            .map_err(failed)
    })
    .await
    .map_err(|_| failed(format!("listing keys: no answer within {:?}", timeout * 4)))??;
    let cloud_stream = tokio::time::timeout(timeout, js.get_stream(&config.stream_name))
        .await
        .ok()
        .and_then(Result::ok);
    let mut entries = Vec::new();
    let mut keys: Vec<String> = keys
        .into_iter()
        .filter(|k: &String| parse_key(gateway, k).is_some())
        .collect();
    keys.sort();
    for key in keys {
        let Some((pack_id, setting)) = parse_key(gateway, &key) else {
            continue;
        };
        if pack.is_some_and(|p| p != pack_id.as_str()) {
            continue;
        }
        let entry = tokio::time::timeout(timeout, store.entry(&key))
            .await
            .map_err(|_| failed(format!("{key}: no answer within {timeout:?}")))?
            .map_err(|e| failed(format!("{key}: {e}")))?;
        let Some(entry) = entry else { continue };
        if !matches!(entry.operation, kv::Operation::Put) {
            continue;
        }
        let value = DesiredValue::parse(&entry.value).map_err(|e| failed(format!("{key}: {e}")))?;
        let report = match &cloud_stream {
            Some(stream) => {
                let subject = desired_report_subject(gateway, pack_id.as_str(), &setting);
                tokio::time::timeout(
                    Duration::from_secs(2).min(timeout),
                    stream.get_last_raw_message_by_subject(&subject),
                )
                .await
                .ok()
                .and_then(Result::ok)
                .and_then(|m| serde_json::from_slice(&m.payload).ok())
            }
            None => None,
        };
        entries.push(DesiredEntry {
            gateway_id: gateway.to_owned(),
            pack: pack_id.as_str().to_owned(),
            setting,
            value,
            revision: entry.revision,
            report,
        });
    }
    Ok(entries)
}
