//! A recording [`OutputPin`] for tests.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use embedded_hal::digital::{ErrorType, OutputPin};

/// An output pin that records every level it is set to (true: high).
/// Clones share the record, so a test keeps one clone and hands the other
/// to the code under test.
#[derive(Debug, Clone, Default)]
pub struct RecordingPin {
    levels: Arc<Mutex<Vec<bool>>>,
}

impl RecordingPin {
    /// A pin that has not been set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every level set so far, oldest first.
    pub fn levels(&self) -> Vec<bool> {
        self.levels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The last level set, `None` before the first.
    pub fn level(&self) -> Option<bool> {
        self.levels().last().copied()
    }

    fn push(&self, high: bool) {
        self.levels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(high);
    }
}

impl ErrorType for RecordingPin {
    type Error = Infallible;
}

impl OutputPin for RecordingPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.push(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.push(true);
        Ok(())
    }
}
