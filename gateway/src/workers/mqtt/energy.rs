//! Energy into and out of a pack, integrated from its samples, for Home
//! Assistant's energy entities (`total_increasing`: they start again from
//! zero when the gateway restarts, which Home Assistant expects of such a
//! counter). Pure.

use packgate_protocol::{DataQuality, Sample};

/// The longest gap between two samples integrated: across a longer one
/// (a pack offline, a restart) nothing is assumed.
const MAX_GAP_S: f64 = 10.0;

/// Energy counted since the worker started, kilowatt-hours.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Energy {
    /// Into the pack (current positive).
    pub charged_kwh: f64,
    /// Out of the pack.
    pub discharged_kwh: f64,
}

/// Instantaneous power of a sample, watts, positive while charging.
fn power_w(sample: &Sample) -> f64 {
    f64::from(sample.reading.pack_voltage_v) * f64::from(sample.reading.current_a)
}

impl Energy {
    /// Adds the energy between `previous` and `sample` of the same pack
    /// (the mean of their powers over the time between them). Stale and
    /// suspect samples, a gap over ten seconds, time going backwards or
    /// another collector run add nothing.
    pub fn add(&mut self, previous: &Sample, sample: &Sample) {
        let fresh = |s: &Sample| s.quality == DataQuality::Fresh;
        if !fresh(previous) || !fresh(sample) || previous.boot_id != sample.boot_id {
            return;
        }
        let dt_s = (sample.timestamp_ms - previous.timestamp_ms) as f64 / 1000.0;
        if !(dt_s > 0.0 && dt_s <= MAX_GAP_S) {
            return;
        }
        let kwh = (power_w(previous) + power_w(sample)) / 2.0 * dt_s / 3.6e6;
        if kwh.is_finite() {
            if kwh >= 0.0 {
                self.charged_kwh += kwh;
            } else {
                self.discharged_kwh -= kwh;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use packgate_protocol::{BootId, ClockQuality, PackId, PackReading};

    use super::*;

    fn sample(ms: i64, v: f32, a: f32, quality: DataQuality) -> Sample {
        Sample {
            pack_id: PackId::new("p").unwrap(),
            boot_id: BootId(1),
            seq: 1,
            timestamp_ms: ms,
            quality,
            reading: PackReading {
                pack_voltage_v: v,
                current_a: a,
                ..PackReading::default()
            },
            clock: ClockQuality::Trusted,
        }
    }

    #[test]
    fn an_hour_at_one_kilowatt_is_one_kilowatt_hour() {
        let mut e = Energy::default();
        let mut previous = sample(0, 50.0, 20.0, DataQuality::Fresh);
        for i in 1..=3600 {
            let next = sample(i * 1000, 50.0, 20.0, DataQuality::Fresh);
            e.add(&previous, &next);
            previous = next;
        }
        assert!((e.charged_kwh - 1.0).abs() < 1e-9, "{e:?}");
        assert_eq!(e.discharged_kwh, 0.0);
        e.add(
            &previous,
            &sample(3_601_000, 50.0, -20.0, DataQuality::Fresh),
        );
        // Half a second of +1 kW less half of -1 kW: nothing either way.
        assert!((e.charged_kwh - 1.0).abs() < 1e-9);
        let before = e;
        e.add(
            &sample(0, 50.0, -36.0, DataQuality::Fresh),
            &sample(2_000, 50.0, -36.0, DataQuality::Fresh),
        );
        assert!((e.discharged_kwh - before.discharged_kwh - 0.001).abs() < 1e-12);
    }

    #[test]
    fn gaps_stale_samples_and_time_going_back_add_nothing() {
        let mut e = Energy::default();
        let a = sample(0, 50.0, 20.0, DataQuality::Fresh);
        e.add(&a, &sample(11_000, 50.0, 20.0, DataQuality::Fresh));
        e.add(&a, &sample(1_000, 50.0, 20.0, DataQuality::Stale));
        e.add(&a, &sample(1_000, 50.0, 20.0, DataQuality::Suspect));
        e.add(&sample(5_000, 50.0, 20.0, DataQuality::Fresh), &a);
        let mut other_run = sample(1_000, 50.0, 20.0, DataQuality::Fresh);
        other_run.boot_id = BootId(2);
        e.add(&a, &other_run);
        assert_eq!(e, Energy::default());
    }
}
