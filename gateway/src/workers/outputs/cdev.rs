//! Output pins on Linux GPIO character devices (`/dev/gpiochipN`).
//!
//! The line is requested as an output for as long as the pin lives (the
//! kernel releases it when the process exits, leaving the line where it
//! was), through the character device's ioctls (gpio-cdev, no unsafe
//! here). The process needs write access to the chip: on Raspberry Pi OS
//! the `gpio` group.

use embedded_hal::digital::{ErrorKind, ErrorType, OutputPin};
use gpio_cdev::{Chip, LineHandle, LineRequestFlags};
use packgate_protocol::PackId;

use super::{OutputController, OutputDriver, OutputsError};
use crate::config::{OutputsConfig, PinConfig};

/// The name the lines are requested under (`gpioinfo` shows it).
const CONSUMER: &str = "packgate";

/// A GPIO line held as an output.
#[derive(Debug)]
pub struct CdevOutputPin {
    handle: LineHandle,
}

/// A failed write to a GPIO line.
#[derive(Debug, thiserror::Error)]
#[error("GPIO write: {0}")]
pub struct CdevPinError(#[from] gpio_cdev::Error);

impl embedded_hal::digital::Error for CdevPinError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

impl CdevOutputPin {
    /// Requests `pin`'s line as an output, at first at the level that
    /// makes it inactive (high for an active-low pin).
    pub fn open(pin: &PinConfig) -> Result<Self, OutputsError> {
        let gpio_error = |source| OutputsError::Gpio {
            chip: pin.chip.display().to_string(),
            line: pin.line,
            source,
        };
        let mut chip = Chip::new(&pin.chip).map_err(gpio_error)?;
        let handle = chip
            .get_line(pin.line)
            .and_then(|line| {
                line.request(LineRequestFlags::OUTPUT, u8::from(pin.active_low), CONSUMER)
            })
            .map_err(gpio_error)?;
        Ok(Self { handle })
    }
}

impl ErrorType for CdevOutputPin {
    type Error = CdevPinError;
}

impl OutputPin for CdevOutputPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        Ok(self.handle.set_value(0)?)
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        Ok(self.handle.set_value(1)?)
    }
}

/// The configured outputs on GPIO character devices, driven for `packs`;
/// `None` when neither a relay nor an LED is configured.
pub fn open_outputs(
    config: &OutputsConfig,
    packs: impl IntoIterator<Item = PackId>,
) -> Result<Option<OutputDriver<CdevOutputPin, CdevOutputPin>>, OutputsError> {
    config.validate()?;
    if config.alarm_relay.is_none() && config.status_led.is_none() {
        return Ok(None);
    }
    let controller = match &config.alarm_relay {
        Some(relay) => OutputController::new(
            relay.trip_mask()?,
            relay.latching,
            relay.trip_on_offline,
            packs,
        ),
        None => OutputController::new(packgate_protocol::AlarmFlags::NONE, false, false, packs),
    };
    let relay = config
        .alarm_relay
        .as_ref()
        .map(|relay| CdevOutputPin::open(&relay.pin).map(|pin| (pin, relay.pin.active_low)))
        .transpose()?;
    let led = config
        .status_led
        .as_ref()
        .map(|led| {
            CdevOutputPin::open(&led.pin).map(|pin| (pin, led.pin.active_low, led.blink_period_ms))
        })
        .transpose()?;
    OutputDriver::new(controller, relay, led).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workers::outputs::RelayConfig;

    #[test]
    fn no_outputs_configured_opens_nothing() {
        let packs = [PackId::new("a").unwrap()];
        assert!(open_outputs(&OutputsConfig::default(), packs)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_missing_chip_is_an_error_naming_chip_and_line() {
        let pin = PinConfig {
            chip: "/dev/gpiochip-absent".into(),
            line: 17,
            active_low: true,
        };
        let config = OutputsConfig {
            alarm_relay: Some(RelayConfig::new(pin)),
            status_led: None,
        };
        let err = open_outputs(&config, []).unwrap_err().to_string();
        assert!(err.contains("/dev/gpiochip-absent line 17"), "{err}");
    }
}
