//! The `[outputs]` section of the configuration.

use std::path::PathBuf;

use packgate_protocol::AlarmFlags;
use serde::{Deserialize, Serialize};

/// A value of the `[outputs]` section is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outputs.{key}: {reason}")]
pub struct OutputsConfigError {
    /// The key, under `outputs`.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The digital outputs; each is optional, and none is the default.
///
/// ```toml
/// [outputs.alarm_relay]
/// pin = { chip = "/dev/gpiochip0", line = 17, active_low = true }
/// trip_on = ["over_temperature", "short_circuit"]
/// latching = true
///
/// [outputs.status_led]
/// pin = { line = 27 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputsConfig {
    /// The alarm relay or buzzer; absent: no relay.
    pub alarm_relay: Option<RelayConfig>,
    /// The status LED; absent: no LED.
    pub status_led: Option<LedConfig>,
}

/// One GPIO line of a Linux GPIO character device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinConfig {
    /// The character device; on a Raspberry Pi the header's GPIOs are on
    /// `/dev/gpiochip0` (gpiochip4 on a Pi 5).
    #[serde(default = "default_chip")]
    pub chip: PathBuf,
    /// The line offset on that chip: on a Raspberry Pi, the BCM GPIO
    /// number (GPIO17 is line 17, header pin 11).
    pub line: u32,
    /// Whether the output is on when the line is low, as on most relay
    /// boards with an opto-coupled input.
    #[serde(default)]
    pub active_low: bool,
}

fn default_chip() -> PathBuf {
    PathBuf::from("/dev/gpiochip0")
}

/// The alarm relay (or buzzer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// The GPIO line.
    pub pin: PinConfig,
    /// Alarm names (as `packgate query` shows them, such as
    /// `over_temperature`) that trip the relay when any pack raises them.
    /// Default: every alarm except `cell_imbalance`.
    #[serde(default = "default_trip_on")]
    pub trip_on: Vec<String>,
    /// Whether a trip holds after the alarms clear, until an operator resets
    /// it (true, the default); false releases the relay when every tripping
    /// alarm has cleared.
    #[serde(default = "default_true")]
    pub latching: bool,
    /// Whether a pack going offline trips the relay too (a pack that is not
    /// watched is not known to be safe).
    #[serde(default)]
    pub trip_on_offline: bool,
}

fn default_true() -> bool {
    true
}

fn default_trip_on() -> Vec<String> {
    AlarmFlags::ALL
        .iter()
        .filter(|(flag, _)| *flag != AlarmFlags::CELL_IMBALANCE)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

impl RelayConfig {
    /// A relay on `pin` with the defaults: every alarm but cell imbalance,
    /// latching, not tripped by an offline pack.
    pub fn new(pin: PinConfig) -> Self {
        Self {
            pin,
            trip_on: default_trip_on(),
            latching: true,
            trip_on_offline: false,
        }
    }

    /// The alarm flags named by `trip_on`.
    pub fn trip_mask(&self) -> Result<AlarmFlags, OutputsConfigError> {
        if self.trip_on.is_empty() {
            return Err(OutputsConfigError {
                key: "alarm_relay.trip_on".into(),
                reason: "names no alarm; leave the relay out instead".into(),
            });
        }
        self.trip_on
            .iter()
            .try_fold(AlarmFlags::NONE, |mask, name| {
                AlarmFlags::ALL
                    .iter()
                    .find(|(_, known)| *known == name)
                    .map(|(flag, _)| mask.union(*flag))
                    .ok_or_else(|| OutputsConfigError {
                        key: "alarm_relay.trip_on".into(),
                        reason: format!(
                            "unknown alarm {name:?}; known: {}",
                            AlarmFlags::ALL
                                .iter()
                                .map(|(_, n)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
            })
    }
}

/// The status LED: steady on while every pack is online and no alarm is
/// raised, blinking otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedConfig {
    /// The GPIO line.
    pub pin: PinConfig,
    /// One on-and-off cycle of the blinking, milliseconds.
    #[serde(default = "default_blink_period_ms")]
    pub blink_period_ms: u64,
}

fn default_blink_period_ms() -> u64 {
    1_000
}

impl OutputsConfig {
    /// Checks names and ranges.
    pub fn validate(&self) -> Result<(), OutputsConfigError> {
        if let Some(relay) = &self.alarm_relay {
            relay.trip_mask()?;
        }
        if let Some(led) = &self.status_led {
            if led.blink_period_ms < 100 {
                return Err(OutputsConfigError {
                    key: "status_led.blink_period_ms".into(),
                    reason: "must be at least 100".into(),
                });
            }
            if let Some(relay) = &self.alarm_relay {
                if relay.pin == led.pin
                    || (relay.pin.chip == led.pin.chip && relay.pin.line == led.pin.line)
                {
                    return Err(OutputsConfigError {
                        key: "status_led.pin".into(),
                        reason: "is the alarm relay's line".into(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OutputsConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn empty_means_no_outputs_and_defaults_fill_in() {
        assert_eq!(parse("").unwrap(), OutputsConfig::default());
        let config =
            parse("[alarm_relay]\npin = { line = 17 }\n[status_led]\npin = { line = 27 }\n")
                .unwrap();
        let relay = config.alarm_relay.as_ref().unwrap();
        assert_eq!(relay.pin.chip, PathBuf::from("/dev/gpiochip0"));
        assert!(relay.latching && !relay.pin.active_low && !relay.trip_on_offline);
        let mask = relay.trip_mask().unwrap();
        assert!(mask.contains(AlarmFlags::OVER_TEMPERATURE));
        assert!(!mask.contains(AlarmFlags::CELL_IMBALANCE));
        assert_eq!(config.status_led.unwrap().blink_period_ms, 1_000);
    }

    #[test]
    fn unknown_keys_and_alarm_names_are_rejected() {
        assert!(parse("[alarm_relay]\npin = { line = 1, polarity = 2 }\n").is_err());
        let config = parse("[alarm_relay]\npin = { line = 1 }\ntrip_on = [\"too_hot\"]\n").unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("too_hot") && err.contains("over_temperature"),
            "{err}"
        );
        let config = parse("[alarm_relay]\npin = { line = 1 }\ntrip_on = []\n").unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn relay_and_led_cannot_share_a_line() {
        let config = parse(
            "[alarm_relay]\npin = { line = 5 }\n[status_led]\npin = { line = 5, active_low = true }\n",
        )
        .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("outputs.status_led.pin"), "{err}");
    }
}
