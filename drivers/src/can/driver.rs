//! [`CanPackDriver`]: a BMS that broadcasts Pylontech frames, behind the
//! [`PackDriver`] trait.
//!
//! A background task owns the link: it receives frames, feeds them into a
//! [`CanPackState`] (latest value per id, fixed size, so no queue can grow),
//! and reopens the link with exponential backoff when it fails. A poll
//! reads the state:
//!
//! - every frame behind the reading arrived within `stale_after_ms`: the
//!   reading, [`DataQuality::Fresh`];
//! - otherwise the poll waits up to `poll_wait_ms` for that to become true,
//!   then returns the reading marked [`DataQuality::Stale`] as long as
//!   *some* frame arrived within `stale_after_ms` (the missing ones keep
//!   their last values);
//! - nothing at all within `stale_after_ms` (or never a complete reading):
//!   [`DriverError::Transport`] while the link is down, else
//!   [`DriverError::Timeout`].
//!
//! [`PackDriver::poll`] returns the reading with its quality, fresh or
//! partially stale; [`CanPackDriver::poll_detailed`] adds the stale ids.
//! The BMS protocol is read-only: every setting is
//! [`DriverError::UnsupportedSetting`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::BoxFuture;
use packgate_protocol::{DataQuality, PackId, PackReading};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, timeout_at, Instant};

use super::slcan::Bitrate;
use super::state::CanPackState;
use super::transport::{CanConnector, SlcanSerialConnector, TransportError};
use crate::{DriverError, DriverResult, PackDriver, Polled, ValidatedSetting};

/// Where the frames come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CanTransportConfig {
    /// An slcan USB-CAN adapter on a serial port.
    Slcan {
        /// Serial port path.
        path: String,
        /// Serial line rate (USB adapters ignore it).
        #[serde(default = "default_serial_baud")]
        serial_baud: u32,
        /// CAN bitrate, bits per second (one of slcan's `S0`..`S8`).
        #[serde(default = "default_bitrate_bps")]
        bitrate_bps: u32,
    },
    /// A SocketCAN interface (needs the `socketcan` feature).
    Socketcan {
        /// Interface name (`can0`, `vcan0`).
        interface: String,
    },
}

/// Serial line rate of an slcan adapter unless configured (USB adapters
/// ignore it).
pub const DEFAULT_SLCAN_SERIAL_BAUD: u32 = 115_200;

/// CAN bitrate unless configured, bits per second: what Pylontech-protocol
/// BMSs and inverters use.
pub const DEFAULT_CAN_BITRATE_BPS: u32 = 500_000;

fn default_serial_baud() -> u32 {
    DEFAULT_SLCAN_SERIAL_BAUD
}

fn default_bitrate_bps() -> u32 {
    DEFAULT_CAN_BITRATE_BPS
}

/// Configuration of one CAN pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanDriverConfig {
    /// Cells in series, for the average cell voltage when the BMS sends no
    /// `0x373` (see [`CanPackState`]); 0 = unknown.
    pub cells_in_series: u8,
    /// A frame older than this is stale, milliseconds (a Pylontech BMS
    /// sends every ~1 s).
    #[serde(default = "default_stale_after_ms")]
    pub stale_after_ms: u64,
    /// Longest a poll waits for a fresh reading, milliseconds.
    #[serde(default = "default_poll_wait_ms")]
    pub poll_wait_ms: u64,
    /// Limit of every open, command and write, milliseconds.
    #[serde(default = "default_io_timeout_ms")]
    pub io_timeout_ms: u64,
    /// Longest wait between reconnect attempts, milliseconds.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// The link.
    pub transport: CanTransportConfig,
}

fn default_stale_after_ms() -> u64 {
    2500
}
fn default_poll_wait_ms() -> u64 {
    500
}
fn default_io_timeout_ms() -> u64 {
    1000
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

/// First wait before a reconnect.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// One poll with its quality.
#[derive(Debug, Clone, PartialEq)]
pub struct CanPoll {
    /// The reading.
    pub reading: PackReading,
    /// Fresh, or stale when some frame behind it is older than the window.
    pub quality: DataQuality,
    /// The ids whose last frame is older than the window.
    pub stale_ids: Vec<u16>,
}

/// Counters of the link and the decoder.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CanDriverStats {
    /// Frames decoded and kept.
    pub frames_decoded: u64,
    /// Frames that did not decode (unknown id, short).
    pub frames_rejected: u64,
    /// Whether a link is open now.
    pub link_up: bool,
    /// Links opened so far.
    pub connects: u64,
    /// The last link failure.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    state: CanPackState,
    stats: CanDriverStats,
}

#[derive(Debug)]
struct Inner {
    shared: Mutex<Shared>,
    notify: Notify,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A Pylontech-protocol BMS on a CAN bus; see the [module docs](self).
#[derive(Debug)]
pub struct CanPackDriver {
    pack_id: PackId,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
    stale_after: Duration,
    poll_wait: Duration,
}

fn connector_for(config: &CanDriverConfig) -> Result<Box<dyn CanConnector>, DriverError> {
    let io_timeout = Duration::from_millis(config.io_timeout_ms);
    match &config.transport {
        CanTransportConfig::Slcan {
            path,
            serial_baud,
            bitrate_bps,
        } => {
            let bitrate = Bitrate::from_bps(*bitrate_bps).ok_or_else(|| {
                DriverError::Transport(format!("{bitrate_bps} bit/s is not an slcan bitrate"))
            })?;
            Ok(Box::new(SlcanSerialConnector {
                path: path.clone(),
                serial_baud: *serial_baud,
                bitrate,
                io_timeout,
            }))
        }
        #[cfg(feature = "socketcan")]
        CanTransportConfig::Socketcan { interface } => {
            Ok(Box::new(super::socketcan::SocketCanConnector {
                interface: interface.clone(),
            }))
        }
        #[cfg(not(feature = "socketcan"))]
        CanTransportConfig::Socketcan { interface } => Err(DriverError::Transport(format!(
            "{interface}: packgate was built without the socketcan feature"
        ))),
    }
}

impl CanPackDriver {
    /// Starts the driver `config` describes (spawns its receive task: call
    /// inside a tokio runtime).
    pub fn new(pack_id: PackId, config: &CanDriverConfig) -> Result<Self, DriverError> {
        Ok(Self::with_connector(
            pack_id,
            config,
            connector_for(config)?,
        ))
    }

    /// Starts a driver on `connector` (`config.transport` is not used).
    pub fn with_connector(
        pack_id: PackId,
        config: &CanDriverConfig,
        connector: Box<dyn CanConnector>,
    ) -> Self {
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                state: CanPackState::new(config.cells_in_series),
                stats: CanDriverStats::default(),
            }),
            notify: Notify::new(),
        });
        let task = tokio::spawn(receive_loop(
            connector,
            Arc::clone(&inner),
            Duration::from_millis(config.io_timeout_ms.max(1)),
            Duration::from_millis(config.max_backoff_ms).max(MIN_BACKOFF),
        ));
        Self {
            pack_id,
            inner,
            task,
            stale_after: Duration::from_millis(config.stale_after_ms),
            poll_wait: Duration::from_millis(config.poll_wait_ms),
        }
    }

    /// The link's and decoder's counters.
    pub fn stats(&self) -> CanDriverStats {
        let shared = self.inner.lock();
        CanDriverStats {
            frames_decoded: shared.state.frames_decoded(),
            frames_rejected: shared.state.frames_rejected(),
            ..shared.stats.clone()
        }
    }

    /// The present reading with its quality, or an error; see the
    /// [module docs](self).
    pub async fn poll_detailed(&mut self) -> Result<CanPoll, DriverError> {
        let deadline = Instant::now() + self.poll_wait;
        loop {
            let notified = self.inner.notify.notified();
            if let Some(poll) = self.evaluate() {
                if poll.quality == DataQuality::Fresh {
                    return Ok(poll);
                }
            }
            if timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        match self.evaluate() {
            Some(poll) => Ok(poll),
            None => {
                let shared = self.inner.lock();
                match (&shared.stats.link_up, &shared.stats.last_error) {
                    (false, Some(e)) => Err(DriverError::Transport(e.clone())),
                    _ => Err(DriverError::Timeout(self.stale_after)),
                }
            }
        }
    }

    /// The reading if some frame arrived within the window.
    fn evaluate(&self) -> Option<CanPoll> {
        let now = Instant::now().into_std();
        let shared = self.inner.lock();
        if !shared.state.received_within(now, self.stale_after) {
            return None;
        }
        let (reading, quality) = shared.state.sample(now, self.stale_after)?;
        Some(CanPoll {
            reading,
            quality,
            stale_ids: shared.state.stale_ids(now, self.stale_after),
        })
    }
}

impl Drop for CanPackDriver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive_loop(
    mut connector: Box<dyn CanConnector>,
    inner: Arc<Inner>,
    io_timeout: Duration,
    max_backoff: Duration,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let error = match timeout(io_timeout * 4, connector.connect()).await {
            Err(_) => TransportError::Timeout(io_timeout * 4),
            Ok(Err(e)) => e,
            Ok(Ok(mut link)) => {
                {
                    let mut shared = inner.lock();
                    shared.stats.link_up = true;
                    shared.stats.connects += 1;
                }
                backoff = MIN_BACKOFF;
                loop {
                    match link.recv(io_timeout).await {
                        Ok(frame) => {
                            let now = Instant::now().into_std();
                            let _ = inner.lock().state.feed(&frame, now);
                            inner.notify.notify_waiters();
                        }
                        Err(e) if e.is_fatal() => break e,
                        Err(_) => {}
                    }
                }
            }
        };
        {
            let mut shared = inner.lock();
            shared.stats.link_up = false;
            shared.stats.last_error = Some(error.to_string());
        }
        inner.notify.notify_waiters();
        sleep(backoff).await;
        backoff = (backoff * 2).min(max_backoff);
    }
}

impl PackDriver for CanPackDriver {
    /// The driver's own receive task holds the CAN link.
    type Link = ();

    fn pack_id(&self) -> &PackId {
        &self.pack_id
    }

    /// The reading of [`CanPackDriver::poll_detailed`] with its quality:
    /// stale when some frame behind it was older than `stale_after_ms`.
    fn poll<'a>(&'a mut self, _link: &'a mut ()) -> BoxFuture<'a, DriverResult<Polled>> {
        Box::pin(async move {
            let poll = self.poll_detailed().await?;
            Ok(Ok(Polled {
                reading: poll.reading,
                quality: poll.quality,
                serial_number: None,
            }))
        })
    }

    fn apply_setting<'a>(
        &'a mut self,
        _link: &'a mut (),
        setting: &'a ValidatedSetting,
    ) -> BoxFuture<'a, DriverResult<f64>> {
        let name = setting.name.0.clone();
        Box::pin(async move { Err(DriverError::UnsupportedSetting(name)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_with_defaults() {
        let c: CanDriverConfig = toml::from_str(
            "cells_in_series = 16\n[transport]\nkind = \"slcan\"\npath = \"/dev/ttyACM0\"\n",
        )
        .unwrap();
        assert_eq!(c.stale_after_ms, 2500);
        assert_eq!(
            c.transport,
            CanTransportConfig::Slcan {
                path: "/dev/ttyACM0".into(),
                serial_baud: 115_200,
                bitrate_bps: 500_000
            }
        );
        let s: CanDriverConfig = toml::from_str(
            "cells_in_series = 0\n[transport]\nkind = \"socketcan\"\ninterface = \"can0\"\n",
        )
        .unwrap();
        assert!(matches!(s.transport, CanTransportConfig::Socketcan { .. }));
        assert!(toml::from_str::<CanDriverConfig>("cells_in_series = 1\nbogus = 1\n").is_err());
    }

    #[tokio::test]
    async fn a_missing_port_is_a_transport_error_and_settings_are_refused() {
        let config = CanDriverConfig {
            cells_in_series: 16,
            stale_after_ms: 100,
            poll_wait_ms: 300,
            io_timeout_ms: 100,
            max_backoff_ms: 1000,
            transport: CanTransportConfig::Slcan {
                path: "/dev/packgate-no-such-port".into(),
                serial_baud: 115_200,
                bitrate_bps: 500_000,
            },
        };
        let mut d = CanPackDriver::new(PackId::new("can-1").unwrap(), &config).unwrap();
        let err = d.poll(&mut ()).await.unwrap_err();
        assert!(matches!(err, DriverError::Transport(_)), "{err:?}");
        assert!(!d.stats().link_up);
        let setting = ValidatedSetting {
            name: packgate_protocol::SettingName("charge_current_limit_a".into()),
            value: 10.0,
        };
        assert_eq!(
            d.apply_setting(&mut (), &setting).await,
            Err(DriverError::UnsupportedSetting(
                "charge_current_limit_a".into()
            ))
        );
        let bad = CanDriverConfig {
            transport: CanTransportConfig::Slcan {
                path: "x".into(),
                serial_baud: 1,
                bitrate_bps: 333,
            },
            ..config
        };
        assert!(CanPackDriver::new(PackId::new("can-2").unwrap(), &bad).is_err());
    }
}
