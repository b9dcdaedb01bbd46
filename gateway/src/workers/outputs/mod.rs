//! Digital outputs: an alarm relay (or buzzer) and a status LED driven by
//! pack events.
//!
//! - [`OutputController`] is a pure state machine: fed with pack events, it
//!   says whether the relay is tripped and what the LED shows.
//! - [`OutputDriver`] applies those states to any embedded-hal 1.0
//!   [`OutputPin`](embedded_hal::digital::OutputPin) (active-low handled
//!   here, so a pin is always driven at its electrical level).
//! - [`cdev::CdevOutputPin`] is the pin on a Linux GPIO character device
//!   (`/dev/gpiochipN`, a line offset); [`fake::RecordingPin`] records the
//!   levels it was set to, for tests.

pub mod cdev;
mod controller;
mod driver;
pub mod fake;
mod feed;
mod worker;

pub use crate::config::{LedConfig, OutputsConfig, OutputsConfigError, PinConfig, RelayConfig};
pub use controller::{led_is_lit, LedMode, OutputController, OutputState};
pub use driver::OutputDriver;
pub use feed::{run_outputs, RESET_SUBJECT};
pub use worker::{OutputsMetrics, OutputsWorker};

/// Why the outputs could not be set up or driven.
#[derive(Debug, thiserror::Error)]
pub enum OutputsError {
    /// A configuration value is wrong.
    #[error(transparent)]
    Config(#[from] OutputsConfigError),
    /// A GPIO line could not be requested or set.
    #[error("GPIO {chip} line {line}: {source}")]
    Gpio {
        /// The character device.
        chip: String,
        /// The line offset.
        line: u32,
        /// The driver's error.
        #[source]
        source: gpio_cdev::Error,
    },
    /// Setting a pin failed.
    #[error("setting the {output} output failed: {reason}")]
    Pin {
        /// Which output: `alarm_relay` or `status_led`.
        output: &'static str,
        /// The pin's error, as text (pins' error types differ).
        reason: String,
    },
}
