//! The in-process simulated driver: a [`SimPack`] behind the
//! [`PackDriver`] trait, with the pack's injected faults showing up as a
//! real transport's would (no answer, a late answer).

use std::time::Duration;

use futures_util::future::BoxFuture;
use packgate_protocol::{PackId, PackReading};
use packgate_sim::{SettingError, SimPack};

use crate::{DeviceException, DriverError, DriverResult, PackDriver, Polled, ValidatedSetting};

/// Drives a simulated pack in this process. Each poll advances the pack's
/// physics by the time elapsed since its previous timed advance, measured
/// with [`tokio::time::Instant`] so tests with a paused clock are exact.
#[derive(Debug, Clone)]
pub struct SimDriver {
    pack_id: PackId,
    pack: SimPack,
}

impl SimDriver {
    /// A driver for `pack`, known to the gateway as `pack_id`.
    pub fn new(pack_id: PackId, pack: SimPack) -> Self {
        Self { pack_id, pack }
    }

    /// The simulated pack, to inject faults or inspect it.
    pub fn pack(&self) -> &SimPack {
        &self.pack
    }

    /// Behaves like the link under the pack's present faults: never
    /// returns while the pack is unresponsive (the caller's timeout ends
    /// the wait), sleeps the configured delay otherwise. The pack's lock
    /// is not held across either wait.
    async fn link(&self) {
        let faults = self.pack.faults();
        if faults.unresponsive {
            std::future::pending::<()>().await;
        }
        if faults.response_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.response_delay_ms)).await;
        }
    }

    async fn read(&self) -> PackReading {
        self.link().await;
        let now = tokio::time::Instant::now().into_std();
        self.pack.advance_to(now)
    }

    async fn write(&self, setting: &ValidatedSetting) -> DriverResult<f64> {
        self.link().await;
        let name = setting.name.0.as_str();
        match self.pack.apply_setting(name, setting.value) {
            Ok(read_back) => Ok(Ok(read_back)),
            Err(SettingError::Unknown(name)) => Err(DriverError::UnsupportedSetting(name)),
            // The simulated BMS refuses the value as a real one would.
            Err(e @ SettingError::OutOfRange { .. }) => Ok(Err(DeviceException {
                code: DeviceException::ILLEGAL_DATA_VALUE,
                message: e.to_string(),
            })),
        }
    }
}

impl PackDriver for SimDriver {
    /// The simulated pack is in this process: there is no wire.
    type Link = ();

    fn pack_id(&self) -> &PackId {
        &self.pack_id
    }

    fn poll<'a>(&'a mut self, _link: &'a mut ()) -> BoxFuture<'a, DriverResult<Polled>> {
        Box::pin(async move { Ok(Ok(Polled::fresh(self.read().await))) })
    }

    fn apply_setting<'a>(
        &'a mut self,
        _link: &'a mut (),
        setting: &'a ValidatedSetting,
    ) -> BoxFuture<'a, DriverResult<f64>> {
        Box::pin(self.write(setting))
    }

    fn plausibility(&self) -> crate::plausible::PlausibilityLimits {
        crate::plausible::PlausibilityLimits {
            max_current_a: Some(packgate_sim::MAX_CURRENT_A as f32),
            cells_complete: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use packgate_protocol::{DataQuality, SettingName};
    use packgate_sim::{
        Faults, LoadProfile, SimPackConfig, CHARGE_CURRENT_LIMIT_A, DISCHARGE_CURRENT_LIMIT_A,
    };
    use tokio::time::{timeout, Instant};

    fn driver(load: LoadProfile) -> SimDriver {
        let config = SimPackConfig {
            load,
            ..SimPackConfig::default()
        };
        SimDriver::new(PackId::new("sim-1").unwrap(), SimPack::new(&config))
    }

    async fn poll_within(d: &mut SimDriver, limit: Duration) -> Result<PackReading, DriverError> {
        match timeout(limit, d.poll(&mut ())).await {
            Ok(polled) => polled.map(|p| p.unwrap().reading),
            Err(_) => Err(DriverError::Timeout(limit)),
        }
    }

    /// One poll's reading, which must be fresh.
    async fn read(d: &mut SimDriver) -> PackReading {
        let polled = d.poll(&mut ()).await.unwrap().unwrap();
        assert_eq!(polled.quality, DataQuality::Fresh);
        polled.reading
    }

    #[tokio::test(start_paused = true)]
    async fn poll_returns_a_valid_reading_advanced_by_elapsed_time() {
        let mut d = driver(LoadProfile::Constant { current_a: 36.0 });
        assert_eq!(d.pack_id().as_str(), "sim-1");
        let first = read(&mut d).await;
        first.validate().unwrap();
        assert_eq!(first.soc_pct, 60.0, "the first poll advances nothing");
        assert_eq!(first.cell_voltages_v.0.len(), 16);

        tokio::time::sleep(Duration::from_secs(100)).await;
        let r = read(&mut d).await;
        r.validate().unwrap();
        // 36 A for 100 s is 1 Ah: 1 % of 100 Ah.
        assert!((r.soc_pct - 61.0).abs() < 1e-3, "{}", r.soc_pct);
        assert_eq!(r.current_a, 36.0);
    }

    #[tokio::test(start_paused = true)]
    async fn unresponsive_pack_times_out_then_answers_after_the_fault_clears() {
        let mut d = driver(LoadProfile::default());
        read(&mut d).await;
        d.pack().set_faults(Faults {
            unresponsive: true,
            ..Faults::default()
        });
        let limit = Duration::from_secs(2);
        let started = Instant::now();
        assert_eq!(
            poll_within(&mut d, limit).await,
            Err(DriverError::Timeout(limit))
        );
        assert_eq!(started.elapsed(), limit);
        let write = ValidatedSetting {
            name: SettingName(CHARGE_CURRENT_LIMIT_A.into()),
            value: 20.0,
        };
        assert!(timeout(limit, d.apply_setting(&mut (), &write))
            .await
            .is_err());
        // The pack's lock was not left held by the abandoned futures.
        d.pack().set_faults(Faults::default());
        let r = poll_within(&mut d, limit).await.unwrap();
        r.validate().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_answer_arrives_after_the_delay() {
        let mut d = driver(LoadProfile::default());
        d.pack().set_faults(Faults {
            response_delay_ms: 750,
            ..Faults::default()
        });
        assert!(timeout(Duration::from_millis(500), d.poll(&mut ()))
            .await
            .is_err());
        let started = Instant::now();
        let r = read(&mut d).await;
        assert_eq!(started.elapsed(), Duration::from_millis(750));
        r.validate().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn charge_current_limit_is_applied_and_read_back() {
        let mut d = driver(LoadProfile::Constant { current_a: 60.0 });
        read(&mut d).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(read(&mut d).await.current_a, 60.0);

        let write = ValidatedSetting {
            name: SettingName(CHARGE_CURRENT_LIMIT_A.into()),
            value: 15.0,
        };
        assert_eq!(d.apply_setting(&mut (), &write).await, Ok(Ok(15.0)));
        assert_eq!(d.pack().setting(CHARGE_CURRENT_LIMIT_A), Some(15.0));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(read(&mut d).await.current_a, 15.0);

        let write = ValidatedSetting {
            name: SettingName(DISCHARGE_CURRENT_LIMIT_A.into()),
            value: 30.0,
        };
        assert_eq!(d.apply_setting(&mut (), &write).await, Ok(Ok(30.0)));
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_or_refused_settings_are_errors() {
        let mut d = driver(LoadProfile::default());
        let unknown = ValidatedSetting {
            name: SettingName("soc_pct".into()),
            value: 50.0,
        };
        assert_eq!(
            d.apply_setting(&mut (), &unknown).await,
            Err(DriverError::UnsupportedSetting("soc_pct".into()))
        );
        let refused = ValidatedSetting {
            name: SettingName(CHARGE_CURRENT_LIMIT_A.into()),
            value: -5.0,
        };
        let err = d
            .apply_setting(&mut (), &refused)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code, 0x03, "{err:?}");
    }
}
