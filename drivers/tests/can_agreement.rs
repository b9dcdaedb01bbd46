//! The simulator's Pylontech encoder and packgate's decoder agree: many
//! simulated readings, framed by the sim, decoded by the driver's state,
//! equal the originals within the protocol's resolution.
// Test helpers panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use packgate_drivers::can::{CanFrame, CanPackState};
use packgate_protocol::{AlarmFlags, DataQuality, PackReading};
use packgate_sim::serve::can_frames::{bms_frames, BmsLimits};
use packgate_sim::{LoadProfile, SimPack, SimPackConfig};

fn decode(reading: &PackReading, limits: &BmsLimits) -> PackReading {
    let now = Instant::now();
    let mut state = CanPackState::new(reading.cell_voltages_v.0.len() as u8);
    for (id, data) in bms_frames(reading, limits) {
        let frame = CanFrame::standard(id, &data).unwrap();
        state.feed(&frame, now).unwrap();
    }
    let (decoded, quality) = state.sample(now, Duration::from_secs(1)).unwrap();
    assert_eq!(quality, DataQuality::Fresh);
    let l = state.limits().unwrap();
    assert!((f64::from(l.charge_current_limit_a) - limits.charge_current_limit_a).abs() <= 0.05);
    assert!(
        (f64::from(l.discharge_current_limit_a) - limits.discharge_current_limit_a).abs() <= 0.05
    );
    assert_eq!(state.manufacturer(), Some("PGSIM"));
    decoded
}

fn assert_agree(sim: &PackReading, got: &PackReading) {
    got.validate().unwrap();
    let near = |a: f32, b: f32, tol: f32, what: &str| {
        assert!((a - b).abs() <= tol, "{what}: {a} vs {b}\n{sim:?}\n{got:?}");
    };
    near(got.soc_pct, sim.soc_pct, 0.5 + 1e-3, "soc");
    near(
        got.soh_pct.unwrap(),
        sim.soh_pct.unwrap(),
        0.5 + 1e-3,
        "soh",
    );
    near(
        got.pack_voltage_v,
        sim.pack_voltage_v,
        0.005 + 1e-3,
        "voltage",
    );
    near(got.current_a, sim.current_a, 0.05 + 1e-3, "current");
    near(
        got.temperatures_c.0[0],
        sim.max_temperature_c(),
        0.05 + 1e-3,
        "temperature",
    );
    near(
        got.min_cell_v(),
        sim.min_cell_v(),
        0.0005 + 1e-4,
        "min cell",
    );
    near(
        got.max_cell_v(),
        sim.max_cell_v(),
        0.0005 + 1e-4,
        "max cell",
    );
    let min_t = sim
        .temperatures_c
        .0
        .iter()
        .copied()
        .fold(f32::INFINITY, f32::min);
    near(
        got.temperatures_c.0[1],
        min_t,
        0.5 + 1e-3,
        "min temperature",
    );
    near(
        got.temperatures_c.0[2],
        sim.max_temperature_c(),
        0.5 + 1e-3,
        "max temperature",
    );
    assert_eq!(got.alarms, sim.alarms);
    assert_eq!(got.charge_enabled, sim.charge_enabled);
    assert_eq!(got.discharge_enabled, sim.discharge_enabled);
}

#[test]
fn can_encoder_and_decoder_agree_over_many_simulated_readings() {
    let mut checked = 0;
    let mut alarmed = 0;
    for seed in 0..20u64 {
        let config = SimPackConfig {
            cells: 8 + (seed as usize % 9),
            initial_soc_pct: (seed * 5) as f64,
            ambient_c: -10.0 + seed as f64 * 2.5,
            load: LoadProfile::default(),
            seed,
            ..SimPackConfig::default()
        };
        let pack = SimPack::new(&config);
        for _ in 0..100 {
            let reading = pack.advance(60.0);
            let limits = BmsLimits::for_pack(&pack, reading.cell_voltages_v.0.len());
            assert_agree(&reading, &decode(&reading, &limits));
            checked += 1;
            alarmed += usize::from(!reading.alarms.is_empty());
        }
    }
    assert_eq!(checked, 2000);
    assert!(alarmed > 0, "some readings should carry alarms");
}

#[test]
fn can_every_alarm_flag_survives_the_round_trip() {
    let pack = SimPack::new(&SimPackConfig::default());
    let base = pack.reading();
    let limits = BmsLimits::for_pack(&pack, base.cell_voltages_v.0.len());
    for (flag, name) in AlarmFlags::ALL {
        let mut r = base.clone();
        r.alarms = *flag;
        assert_eq!(decode(&r, &limits).alarms, *flag, "{name}");
    }
    let mut all = base.clone();
    all.alarms = AlarmFlags::ALL
        .iter()
        .fold(AlarmFlags::NONE, |acc, (f, _)| acc.union(*f));
    assert_eq!(decode(&all, &limits).alarms, all.alarms);
}
