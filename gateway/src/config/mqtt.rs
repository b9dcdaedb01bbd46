//! The `[mqtt]` section: the owner's MQTT broker (Home Assistant's, usually)
//! that the mqtt worker announces the packs to (Home Assistant discovery)
//! and publishes their state on.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::secret::Secret;

/// The mqtt worker. Off unless configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Whether `packgate run` starts it.
    pub enabled: bool,
    /// The broker's host name or address.
    pub host: String,
    /// The broker's port (1883, or 8883 with TLS).
    pub port: u16,
    /// User name, with `password`.
    pub username: Option<String>,
    /// Password of `username` (never printed).
    pub password: Option<Secret>,
    /// Talk TLS to the broker.
    pub tls: bool,
    /// PEM file of the CA certificates the broker's certificate is checked
    /// against (with `tls`); the system roots when absent.
    pub tls_ca_file: Option<PathBuf>,
    /// This gateway's name in topics and in Home Assistant: one topic
    /// level of letters, digits, `-` and `_`.
    pub gateway_name: String,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// Root of packgate's own topics: `<base_topic>/<gateway_name>/...`.
    pub base_topic: String,
    /// Let Home Assistant change the packs' writable settings (as `number`
    /// entities), through the validated and audited control path.
    pub allow_setting_changes: bool,
    /// MQTT keep-alive, seconds.
    pub keep_alive_s: u16,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 1883,
            username: None,
            password: None,
            tls: false,
            tls_ca_file: None,
            gateway_name: "packgate".into(),
            discovery_prefix: "homeassistant".into(),
            base_topic: "packgate".into(),
            allow_setting_changes: false,
            keep_alive_s: 30,
        }
    }
}

/// A rule of the `[mqtt]` section that a value breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct MqttConfigError {
    /// The dotted key at fault.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

/// Whether `level` is one MQTT topic level packgate writes: letters,
/// digits, `-` and `_` (no `/`, `+`, `#`).
fn is_topic_level(level: &str) -> bool {
    !level.is_empty()
        && level.len() <= 64
        && level
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl MqttConfig {
    /// Checks the section (only when enabled: a disabled section may hold
    /// anything).
    pub fn validate(&self) -> Result<(), MqttConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let bad = |key, reason: &str| {
            Err(MqttConfigError {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.host.trim().is_empty() {
            return bad("mqtt.host", "must name the broker");
        }
        if self.port == 0 {
            return bad("mqtt.port", "must be 1 to 65535");
        }
        for (key, level) in [
            ("mqtt.gateway_name", &self.gateway_name),
            ("mqtt.discovery_prefix", &self.discovery_prefix),
            ("mqtt.base_topic", &self.base_topic),
        ] {
            if !is_topic_level(level) {
                return bad(key, "must be one topic level: letters, digits, '-' and '_'");
            }
        }
        if self.password.is_some() && self.username.is_none() {
            return bad("mqtt.password", "needs mqtt.username");
        }
        if self.tls_ca_file.is_some() && !self.tls {
            return bad("mqtt.tls_ca_file", "needs mqtt.tls = true");
        }
        if !(5..=3600).contains(&self.keep_alive_s) {
            return bad("mqtt.keep_alive_s", "must be 5 to 3600");
        }
        Ok(())
    }
}
