//! [`SimPack`]: a shared handle to one simulated pack, so a driver (or a
//! device server) polls it while a test or the simulator CLI injects
//! faults.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use packgate_protocol::PackReading;

use crate::config::SimPackConfig;
use crate::faults::Faults;
use crate::load::LoadProfile;
use crate::model::{PackModel, SettingError};

#[derive(Debug)]
struct Inner {
    model: PackModel,
    faults: Faults,
    /// When [`SimPack::advance_to`] last moved the model.
    last_advance: Option<Instant>,
}

/// A cheap-to-clone handle to one simulated pack: its [`PackModel`], its
/// injected [`Faults`] and the instant of its last timed advance. Clones
/// share the pack. The lock is never held across an await by this crate,
/// and a poisoned lock is recovered rather than panicking.
#[derive(Debug, Clone)]
pub struct SimPack {
    inner: Arc<Mutex<Inner>>,
}

impl SimPack {
    /// A healthy pack built from `config` (see [`PackModel::new`]).
    pub fn new(config: &SimPackConfig) -> Self {
        Self::from_model(PackModel::new(config))
    }

    /// A healthy pack around an existing model.
    pub fn from_model(model: PackModel) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                model,
                faults: Faults::default(),
                last_advance: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the injected faults (an over-temperature fault reaches the
    /// physics at once; the others are for whoever answers polls).
    pub fn set_faults(&self, faults: Faults) {
        let mut inner = self.lock();
        inner
            .model
            .set_over_temperature_fault(faults.over_temperature);
        inner.faults = faults;
    }

    /// The injected faults.
    pub fn faults(&self) -> Faults {
        self.lock().faults
    }

    /// Advances the physics by `dt_s` seconds and returns the new reading.
    pub fn advance(&self, dt_s: f64) -> PackReading {
        let mut inner = self.lock();
        inner.model.step(dt_s);
        inner.model.reading()
    }

    /// Advances the physics by the time since the previous `advance_to`
    /// (nothing on the first call, or if `now` is not later) and returns
    /// the new reading. Every poller of this pack shares that clock, so two
    /// of them never count the same time twice.
    pub fn advance_to(&self, now: Instant) -> PackReading {
        let mut inner = self.lock();
        let dt_s = inner.last_advance.map_or(0.0, |last| {
            now.saturating_duration_since(last).as_secs_f64()
        });
        if inner.last_advance.is_none_or(|last| now > last) {
            inner.last_advance = Some(now);
        }
        inner.model.step(dt_s);
        inner.model.reading()
    }

    /// The present reading, without moving time.
    pub fn reading(&self) -> PackReading {
        self.lock().model.reading()
    }

    /// Writes a setting and returns the value read back (see
    /// [`PackModel::set_setting`]).
    pub fn apply_setting(&self, name: &str, value: f64) -> Result<f64, SettingError> {
        self.lock().model.set_setting(name, value)
    }

    /// The present value of a setting, `None` if there is no such setting.
    pub fn setting(&self, name: &str) -> Option<f64> {
        self.lock().model.setting(name)
    }

    /// Replaces the load profile (see [`PackModel::set_load`]).
    pub fn set_load(&self, profile: LoadProfile) {
        self.lock().model.set_load(profile);
    }

    /// Runs `f` on the model under the lock, for inspection or changes the
    /// handle has no method for. Keep `f` short; it must not block.
    pub fn with_model<R>(&self, f: impl FnOnce(&mut PackModel) -> R) -> R {
        f(&mut self.lock().model)
    }
}
