//! A desired setting as the cloud's bucket holds it, and its key.

use packgate_protocol::PackId;
use serde::{Deserialize, Serialize};

/// The value of a key of the desired-settings bucket: a JSON object, or a
/// bare number (what `nats kv put PACKGATE_DESIRED site-7.sim-01.charge_current_limit_a 40`
/// writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredValue {
    /// The value, in the setting's unit (as named in the setting).
    pub value: f64,
    /// Who set it, free text, shown in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// After this instant, milliseconds since the Unix epoch, the value is
    /// no longer applied (what was written stays as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
}

/// Why a value in the bucket is not a desired value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredValueError {
    /// Neither a number nor a desired-value object.
    #[error("not a number nor a JSON object with a \"value\": {0}")]
    Parse(String),
    /// A value that is not a finite number.
    #[error("the value is not a finite number")]
    NotFinite,
}

impl DesiredValue {
    /// A value with neither author nor expiry.
    pub fn plain(value: f64) -> Self {
        Self {
            value,
            author: None,
            expires_at_ms: None,
        }
    }

    /// Reads a value of the bucket.
    pub fn parse(bytes: &[u8]) -> Result<Self, DesiredValueError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| DesiredValueError::Parse(e.to_string()))?
            .trim();
        let parsed = if text.starts_with('{') {
            serde_json::from_str::<DesiredValue>(text)
                .map_err(|e| DesiredValueError::Parse(e.to_string()))?
        } else {
            Self::plain(
                text.parse::<f64>()
                    .map_err(|e| DesiredValueError::Parse(format!("{text:?}: {e}")))?,
            )
        };
        if !parsed.value.is_finite() {
            return Err(DesiredValueError::NotFinite);
        }
        Ok(parsed)
    }

    /// The JSON the bucket holds for it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.value.to_string())
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }
}

/// The pack and setting of key `<gateway_id>.<pack>.<setting>`, when the
/// key is this gateway's and well formed.
pub fn parse_key(gateway_id: &str, key: &str) -> Option<(PackId, String)> {
    let rest = key.strip_prefix(gateway_id)?.strip_prefix('.')?;
    let (pack, setting) = rest.split_once('.')?;
    if setting.is_empty() || setting.contains('.') {
        return None;
    }
    Some((PackId::new(pack).ok()?, setting.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_bare_number_or_an_object_is_a_desired_value() {
        assert_eq!(
            DesiredValue::parse(b"40").unwrap(),
            DesiredValue::plain(40.0)
        );
        assert_eq!(
            DesiredValue::parse(br#"{"value": 40.5, "author": "ops", "expires_at_ms": 5}"#)
                .unwrap(),
            DesiredValue {
                value: 40.5,
                author: Some("ops".into()),
                expires_at_ms: Some(5),
            }
        );
        assert!(DesiredValue::parse(b"forty").is_err());
        assert!(DesiredValue::parse(br#"{"value": 1, "colour": "red"}"#).is_err());
        assert_eq!(
            DesiredValue::parse(b"NaN"),
            Err(DesiredValueError::NotFinite)
        );
        let value = DesiredValue::parse(br#"{"value": 7, "author": "a"}"#).unwrap();
        assert_eq!(
            DesiredValue::parse(value.to_json().as_bytes()).unwrap(),
            value
        );
        assert!(DesiredValue {
            expires_at_ms: Some(10),
            ..DesiredValue::plain(1.0)
        }
        .expired(10));
    }

    #[test]
    fn keys_name_the_gateway_the_pack_and_the_setting() {
        let (pack, setting) = parse_key("site-7", "site-7.sim-01.charge_current_limit_a").unwrap();
        assert_eq!(pack.as_str(), "sim-01");
        assert_eq!(setting, "charge_current_limit_a");
        assert_eq!(parse_key("site-7", "site-70.sim-01.x"), None);
        assert_eq!(parse_key("site-7", "site-7.sim-01"), None);
        assert_eq!(parse_key("site-7", "site-7.sim-01.a.b"), None);
    }
}
