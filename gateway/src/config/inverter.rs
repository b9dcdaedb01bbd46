//! `[banks.inverter]`: the bank's CAN link to its inverter, which it is
//! told about as one low-voltage CAN BMS in the Pylontech/SMA frame set.

use std::path::PathBuf;
use std::time::Duration;

use packgate_drivers::can::inverter::NAME_LEN;
use packgate_drivers::can::slcan::Bitrate;
use packgate_drivers::can::{DEFAULT_CAN_BITRATE_BPS, DEFAULT_SLCAN_SERIAL_BAUD};
use serde::{Deserialize, Serialize};

/// The adapter the inverter's CAN bus is reached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InverterLinkKind {
    /// An slcan USB-CAN adapter on a serial port (`port`).
    Slcan,
    /// A SocketCAN interface (`interface`; built with the `socketcan`
    /// feature).
    Socketcan,
}

/// The CAN link from a bank to its inverter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InverterConfig {
    /// `slcan` (with `port`) or `socketcan` (with `interface`).
    pub kind: InverterLinkKind,
    /// slcan: the adapter's serial device, such as `/dev/ttyACM0`.
    #[serde(default)]
    pub port: Option<PathBuf>,
    /// slcan: serial baud rate (USB adapters ignore it).
    #[serde(default = "default_baud_rate")]
    pub baud_rate: u32,
    /// slcan: CAN bitrate, bits per second; the Pylontech protocol runs at
    /// 500 kbit/s.
    #[serde(default = "default_bitrate_bps")]
    pub bitrate_bps: u32,
    /// socketcan: the interface, such as `can0`.
    #[serde(default)]
    pub interface: Option<String>,
    /// Time between two bursts of the six frames, milliseconds.
    #[serde(default = "default_send_interval_ms")]
    pub send_interval_ms: u64,
    /// Seconds without a fresh bank state after which the link sends a
    /// last burst of zero currents and then nothing, so the inverter falls
    /// into its own safe state.
    #[serde(default = "default_stop_after_s")]
    pub stop_after_s: f64,
    /// The name sent in 0x35E (ASCII, at most 8 characters).
    #[serde(default = "default_name")]
    pub name: String,
    /// Limit of every open, command and frame write, milliseconds.
    #[serde(default = "default_write_timeout_ms")]
    pub write_timeout_ms: u64,
    /// Longest wait between attempts to reopen a lost adapter,
    /// milliseconds.
    #[serde(default = "default_reconnect_backoff_max_ms")]
    pub reconnect_backoff_max_ms: u64,
}

fn default_baud_rate() -> u32 {
    DEFAULT_SLCAN_SERIAL_BAUD
}
fn default_bitrate_bps() -> u32 {
    DEFAULT_CAN_BITRATE_BPS
}
fn default_send_interval_ms() -> u64 {
    1000
}
fn default_stop_after_s() -> f64 {
    10.0
}
fn default_name() -> String {
    "packgate".to_owned()
}
fn default_write_timeout_ms() -> u64 {
    500
}
fn default_reconnect_backoff_max_ms() -> u64 {
    30_000
}

impl InverterConfig {
    /// An slcan link on `port` with every default.
    pub fn slcan(port: impl Into<PathBuf>) -> Self {
        Self {
            kind: InverterLinkKind::Slcan,
            port: Some(port.into()),
            baud_rate: default_baud_rate(),
            bitrate_bps: default_bitrate_bps(),
            interface: None,
            send_interval_ms: default_send_interval_ms(),
            stop_after_s: default_stop_after_s(),
            name: default_name(),
            write_timeout_ms: default_write_timeout_ms(),
            reconnect_backoff_max_ms: default_reconnect_backoff_max_ms(),
        }
    }

    /// Time between two bursts.
    pub fn send_interval(&self) -> Duration {
        Duration::from_millis(self.send_interval_ms)
    }

    /// How long a bank state is good for.
    pub fn stop_after(&self) -> Duration {
        Duration::from_secs_f64(self.stop_after_s.clamp(0.0, 3600.0))
    }

    /// The first problem of the link's settings: the key under `inverter`
    /// and why.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        match self.kind {
            InverterLinkKind::Slcan => {
                if self.port.as_ref().is_none_or(|p| p.as_os_str().is_empty()) {
                    return Some(("port", "an slcan link needs the adapter's port".into()));
                }
                if self.interface.is_some() {
                    return Some(("interface", "only a socketcan link has an interface".into()));
                }
                if Bitrate::from_bps(self.bitrate_bps).is_none() {
                    return Some((
                        "bitrate_bps",
                        format!("{} bit/s is not an slcan bitrate", self.bitrate_bps),
                    ));
                }
                if self.baud_rate == 0 {
                    return Some(("baud_rate", "above 0".into()));
                }
            }
            InverterLinkKind::Socketcan => {
                if self.interface.as_ref().is_none_or(|i| i.is_empty()) {
                    return Some(("interface", "a socketcan link needs its interface".into()));
                }
                if self.port.is_some() {
                    return Some(("port", "only an slcan link has a port".into()));
                }
            }
        }
        if !(100..=10_000).contains(&self.send_interval_ms) {
            return Some((
                "send_interval_ms",
                format!("{} is out of range: 100 to 10000", self.send_interval_ms),
            ));
        }
        let interval_s = self.send_interval_ms as f64 / 1000.0;
        if !(self.stop_after_s.is_finite()
            && self.stop_after_s >= interval_s
            && self.stop_after_s <= 3600.0)
        {
            return Some((
                "stop_after_s",
                format!(
                    "{} is out of range: from send_interval_ms ({interval_s} s) to 3600",
                    self.stop_after_s
                ),
            ));
        }
        if self.name.is_empty()
            || self.name.len() > NAME_LEN
            || !self.name.chars().all(|c| (' '..='~').contains(&c))
        {
            return Some((
                "name",
                format!(
                    "{:?}: 1 to {NAME_LEN} printable ASCII characters",
                    self.name
                ),
            ));
        }
        if !(10..=10_000).contains(&self.write_timeout_ms) {
            return Some((
                "write_timeout_ms",
                format!("{} is out of range: 10 to 10000", self.write_timeout_ms),
            ));
        }
        if !(100..=600_000).contains(&self.reconnect_backoff_max_ms) {
            return Some((
                "reconnect_backoff_max_ms",
                format!(
                    "{} is out of range: 100 to 600000",
                    self.reconnect_backoff_max_ms
                ),
            ));
        }
        None
    }
}
