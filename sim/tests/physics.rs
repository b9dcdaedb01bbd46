//! The pack model's physics, protection, settings and determinism, through
//! the public API.

// A test crate: its helpers panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use packgate_protocol::{AlarmFlags, PackReading};
use packgate_sim::{
    Faults, LoadProfile, LoadStep, PackModel, SettingError, SimPack, SimPackConfig,
    CHARGE_CURRENT_LIMIT_A, CHARGE_SWITCH_ON, DISCHARGE_CURRENT_LIMIT_A, DISCHARGE_SWITCH_ON,
};
use proptest::prelude::*;

fn constant(current_a: f64, initial_soc_pct: f64) -> SimPackConfig {
    SimPackConfig {
        initial_soc_pct,
        load: LoadProfile::Constant { current_a },
        ..SimPackConfig::default()
    }
}

/// Steps `model` by `dt_s` until `done` holds or `max_s` passes; returns
/// the simulated seconds taken.
fn run_until(
    model: &mut PackModel,
    dt_s: f64,
    max_s: f64,
    done: impl Fn(&PackReading) -> bool,
) -> Option<f64> {
    let mut t = 0.0;
    while t < max_s {
        model.step(dt_s);
        t += dt_s;
        let r = model.reading();
        r.validate().unwrap();
        if done(&r) {
            return Some(t);
        }
    }
    None
}

fn assert_sane(r: &PackReading, cells: usize) {
    r.validate().unwrap();
    assert!((0.0..=100.0).contains(&r.soc_pct), "{r:?}");
    assert!(
        r.cell_voltages_v.0.iter().all(|v| (0.5..5.0).contains(v)),
        "{r:?}"
    );
    assert!(
        r.temperatures_c
            .0
            .iter()
            .all(|t| (-60.0..120.0).contains(t)),
        "{r:?}"
    );
    let sum: f32 = r.cell_voltages_v.0.iter().sum();
    assert!((r.pack_voltage_v - sum).abs() < 1e-3);
    if r.current_a > 0.0 {
        assert!(r.charge_enabled, "charging through an open switch: {r:?}");
    }
    if r.current_a < 0.0 {
        assert!(
            r.discharge_enabled,
            "discharging through an open switch: {r:?}"
        );
    }
    assert_eq!(u64::from(r.balancing.0) >> cells, 0);
    assert_eq!(r.cell_voltages_v.0.len(), cells);
}

#[test]
fn same_seed_same_readings_different_seeds_differ() {
    let base = SimPackConfig::default();
    let run = |config: &SimPackConfig| {
        let mut m = PackModel::new(config);
        (0..500)
            .map(|i| {
                m.step(0.5 + f64::from(i % 7) * 3.0);
                m.reading()
            })
            .collect::<Vec<_>>()
    };
    let a = run(&base.clone().with_seed(11));
    let b = run(&base.clone().with_seed(11));
    let c = run(&base.clone().with_seed(12));
    assert_eq!(a, b);
    assert_ne!(a, c);
    // The spread alone already tells the seeds apart.
    assert_ne!(
        PackModel::new(&base.for_pack_index(0))
            .reading()
            .cell_voltages_v,
        PackModel::new(&base.for_pack_index(1))
            .reading()
            .cell_voltages_v
    );
}

#[test]
fn soc_follows_the_coulomb_count() {
    let mut m = PackModel::new(&constant(10.0, 60.0));
    for _ in 0..3600 {
        m.step(1.0);
    }
    let r = m.reading();
    assert!((r.soc_pct - 70.0).abs() < 1e-3, "{}", r.soc_pct);
    assert_eq!(r.current_a, 10.0);

    let mut m = PackModel::new(&constant(-20.0, 60.0));
    m.step(1800.0);
    let r = m.reading();
    assert!((r.soc_pct - 50.0).abs() < 1e-3, "{}", r.soc_pct);
    assert_eq!(r.current_a, -20.0);
    assert!((m.elapsed_s() - 1800.0).abs() < 1e-6);

    // SoH shrinks the usable capacity: 10 Ah out of 80 usable is 12.5 %.
    let mut m = PackModel::new(&SimPackConfig {
        soh_pct: 80.0,
        ..constant(-10.0, 60.0)
    });
    m.step(3600.0);
    let r = m.reading();
    assert!((r.soc_pct - 47.5).abs() < 1e-3, "{}", r.soc_pct);
    assert_eq!(r.soh_pct, Some(80.0));
}

#[test]
fn terminal_voltage_rises_while_charging_and_sags_while_discharging() {
    let rest = PackModel::new(&constant(0.0, 50.0)).reading();
    let mut charging = PackModel::new(&constant(50.0, 50.0));
    charging.step(1.0);
    let mut discharging = PackModel::new(&constant(-50.0, 50.0));
    discharging.step(1.0);
    assert!(charging.reading().pack_voltage_v > rest.pack_voltage_v + 0.2);
    assert!(discharging.reading().pack_voltage_v < rest.pack_voltage_v - 0.2);
    // 16 LFP cells at mid charge sit on the plateau, ~52.6 V.
    assert!((52.0..53.5).contains(&rest.pack_voltage_v), "{rest:?}");
}

#[test]
fn scripted_load_is_followed() {
    let mut m = PackModel::new(&SimPackConfig {
        load: LoadProfile::Scripted {
            steps: vec![
                LoadStep {
                    duration_s: 60.0,
                    current_a: 30.0,
                },
                LoadStep {
                    duration_s: 60.0,
                    current_a: -15.0,
                },
            ],
            repeat: false,
        },
        ..SimPackConfig::default()
    });
    m.step(30.0);
    assert_eq!(m.reading().current_a, 30.0);
    m.step(60.0);
    assert_eq!(m.reading().current_a, -15.0);
    m.step(60.0);
    assert_eq!(m.reading().current_a, 0.0);
    // 30 A for 60 s and -15 A for 60 s: +0.25 Ah of 100.
    assert!((m.reading().soc_pct - 60.25).abs() < 1e-3);
}

#[test]
fn full_pack_opens_charge_and_recovers_with_hysteresis() {
    let mut m = PackModel::new(&constant(50.0, 90.0));
    let t = run_until(&mut m, 1.0, 4.0 * 3600.0, |r| !r.charge_enabled).unwrap();
    assert!(t > 300.0, "tripped too early: {t}");
    let r = m.reading();
    assert!(r.alarms.contains(AlarmFlags::CELL_OVER_VOLTAGE));
    assert!(r.discharge_enabled);
    assert_eq!(r.current_a, 0.0, "the charger must be cut off");
    assert_eq!(r.soc_pct, 100.0, "the BMS recalibrates to full");
    assert!(r.max_cell_v() < 3.65 && r.max_cell_v() > 3.40, "{r:?}");

    // Hours at rest with the charger still asking: stays open, balances.
    let mut balanced = false;
    for _ in 0..3600 {
        m.step(2.0);
        let r = m.reading();
        assert!(!r.charge_enabled);
        assert_eq!(r.current_a, 0.0);
        balanced |= r.balancing.count() > 0;
    }
    assert!(balanced, "the top cells should have been bled");

    // A little discharge is not enough to close the switch again...
    m.set_load(LoadProfile::Constant { current_a: -20.0 });
    m.step(30.0);
    let r = m.reading();
    assert_eq!(r.current_a, -20.0);
    assert!(!r.charge_enabled);
    assert_eq!(r.balancing.count(), 0, "no balancing while discharging");
    // ...but enough of it is.
    run_until(&mut m, 1.0, 3.0 * 3600.0, |r| r.charge_enabled).unwrap();
    let r = m.reading();
    assert!(!r.alarms.contains(AlarmFlags::CELL_OVER_VOLTAGE));
    assert!(r.soc_pct < 100.0 && r.soc_pct > 80.0, "{r:?}");
}

#[test]
fn empty_pack_opens_discharge_and_recovers_with_hysteresis() {
    let mut m = PackModel::new(&constant(-50.0, 15.0));
    run_until(&mut m, 1.0, 4.0 * 3600.0, |r| !r.discharge_enabled).unwrap();
    let r = m.reading();
    assert!(r.alarms.contains(AlarmFlags::CELL_UNDER_VOLTAGE));
    assert!(r.charge_enabled);
    assert_eq!(r.current_a, 0.0);
    assert_eq!(r.soc_pct, 0.0);
    m.step(3600.0);
    assert!(!m.reading().discharge_enabled, "no recovery at rest");

    m.set_load(LoadProfile::Constant { current_a: 20.0 });
    m.step(10.0);
    assert!(!m.reading().discharge_enabled, "inside the hysteresis band");
    assert_eq!(m.reading().current_a, 20.0);
    run_until(&mut m, 1.0, 3.0 * 3600.0, |r| r.discharge_enabled).unwrap();
    assert_eq!(m.reading().alarms, AlarmFlags::NONE);
}

#[test]
fn over_temperature_fault_opens_both_and_clears_after_cooling() {
    let pack = SimPack::new(&constant(-30.0, 60.0));
    let r = pack.advance(10.0);
    assert_eq!(r.alarms, AlarmFlags::NONE);
    assert!(r.max_temperature_c() < 30.0);

    pack.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    assert!(pack.faults().over_temperature);
    let r = pack.advance(600.0);
    assert!(r.max_temperature_c() > 55.0, "{r:?}");
    assert!(r.alarms.contains(AlarmFlags::OVER_TEMPERATURE));
    assert!(!r.charge_enabled && !r.discharge_enabled);
    assert_eq!(r.current_a, 0.0);

    pack.set_faults(Faults::default());
    let r = pack.advance(60.0);
    assert!(r.alarms.contains(AlarmFlags::OVER_TEMPERATURE), "still hot");
    let mut cleared = None;
    for minute in 0..(12 * 60) {
        let r = pack.advance(60.0);
        r.validate().unwrap();
        if r.discharge_enabled {
            cleared = Some(minute);
            break;
        }
    }
    let minute = cleared.unwrap();
    assert!(minute > 10, "cooled implausibly fast: {minute} min");
    let r = pack.reading();
    assert!(r.max_temperature_c() < 50.0);
    assert!(r.charge_enabled);
    assert!(!r.alarms.contains(AlarmFlags::OVER_TEMPERATURE));
    let r = pack.advance(12.0 * 3600.0);
    assert!(r.max_temperature_c() < 35.0, "{r:?}");
}

#[test]
fn current_heats_the_pack_and_it_cools_back() {
    let mut m = PackModel::new(&constant(-100.0, 90.0));
    let cold = m.reading().max_temperature_c();
    m.step(1800.0);
    let hot = m.reading();
    assert!(hot.max_temperature_c() > cold + 1.0, "{cold} -> {hot:?}");
    let sensors = &hot.temperatures_c.0;
    assert!(sensors.iter().any(|t| *t != sensors[0]), "sensors differ");
    m.set_load(LoadProfile::Constant { current_a: 0.0 });
    m.step(24.0 * 3600.0);
    assert!((m.reading().max_temperature_c() - 25.0).abs() < 1.0);
}

#[test]
fn current_limits_clamp_the_load_and_read_back() {
    let mut m = PackModel::new(&constant(50.0, 50.0));
    m.step(1.0);
    assert_eq!(m.reading().current_a, 50.0);
    assert_eq!(m.set_setting(CHARGE_CURRENT_LIMIT_A, 10.0), Ok(10.0));
    assert_eq!(m.setting(CHARGE_CURRENT_LIMIT_A), Some(10.0));
    m.step(1.0);
    assert_eq!(m.reading().current_a, 10.0);

    m.set_load(LoadProfile::Constant { current_a: -80.0 });
    assert_eq!(m.set_setting(DISCHARGE_CURRENT_LIMIT_A, 25.5), Ok(25.5));
    m.step(1.0);
    assert_eq!(m.reading().current_a, -25.5);

    assert_eq!(
        m.set_setting("soc_pct", 1.0),
        Err(SettingError::Unknown("soc_pct".into()))
    );
    assert!(matches!(
        m.set_setting(CHARGE_CURRENT_LIMIT_A, -1.0),
        Err(SettingError::OutOfRange { .. })
    ));
    assert!(m.set_setting(CHARGE_CURRENT_LIMIT_A, f64::NAN).is_err());
    assert_eq!(m.setting(CHARGE_CURRENT_LIMIT_A), Some(10.0));
    assert_eq!(m.setting("nope"), None);

    let pack = SimPack::new(&constant(40.0, 50.0));
    assert_eq!(pack.apply_setting(CHARGE_CURRENT_LIMIT_A, 5.0), Ok(5.0));
    assert_eq!(pack.setting(CHARGE_CURRENT_LIMIT_A), Some(5.0));
    assert_eq!(pack.advance(1.0).current_a, 5.0);
}

#[test]
fn a_switch_held_open_stops_its_current_and_reads_back() {
    let mut m = PackModel::new(&constant(30.0, 50.0));
    m.step(1.0);
    assert!(m.reading().charge_enabled);
    assert_eq!(m.set_setting(CHARGE_SWITCH_ON, 0.0), Ok(0.0));
    assert_eq!(m.setting(CHARGE_SWITCH_ON), Some(0.0));
    m.step(1.0);
    let r = m.reading();
    assert!(!r.charge_enabled && r.discharge_enabled);
    assert_eq!(r.current_a, 0.0);
    // Discharging still flows with the charge switch open.
    m.set_load(LoadProfile::Constant { current_a: -12.0 });
    m.step(1.0);
    assert_eq!(m.reading().current_a, -12.0);
    assert_eq!(m.set_setting(DISCHARGE_SWITCH_ON, 0.0), Ok(0.0));
    m.step(1.0);
    assert_eq!(m.reading().current_a, 0.0);
    assert!(!m.reading().discharge_enabled);
    // Only 0 and 1; a refused value changes nothing.
    assert!(m.set_setting(CHARGE_SWITCH_ON, 0.5).is_err());
    assert!(m.set_setting(CHARGE_SWITCH_ON, f64::NAN).is_err());
    assert_eq!(m.setting(CHARGE_SWITCH_ON), Some(0.0));
    assert_eq!(m.set_setting(DISCHARGE_SWITCH_ON, 1.0), Ok(1.0));
    m.step(1.0);
    assert_eq!(m.reading().current_a, -12.0);
}

#[test]
fn random_walk_cycles_the_pack_over_a_long_run() {
    let mut m = PackModel::new(&SimPackConfig::default().with_seed(5));
    let (mut lo, mut hi) = (100.0f32, 0.0f32);
    let (mut charged, mut discharged) = (false, false);
    for _ in 0..(14 * 24 * 60) {
        m.step(60.0);
        let r = m.reading();
        assert_sane(&r, 16);
        lo = lo.min(r.soc_pct);
        hi = hi.max(r.soc_pct);
        charged |= r.current_a > 1.0;
        discharged |= r.current_a < -1.0;
    }
    assert!(charged && discharged);
    assert!(lo < 20.0 && hi > 80.0, "soc stayed within {lo}..{hi}");
}

#[test]
fn odd_steps_are_harmless() {
    let mut m = PackModel::new(&SimPackConfig::default());
    let before = m.reading();
    for dt in [0.0, -5.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        m.step(dt);
    }
    assert_eq!(m.reading(), before);
    assert_eq!(m.elapsed_s(), 0.0);
    let started = std::time::Instant::now();
    m.step(30.0 * 24.0 * 3600.0);
    m.step(1e300);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_sane(&m.reading(), 16);
}

#[test]
fn advance_to_counts_time_between_calls_once() {
    let pack = SimPack::new(&constant(36.0, 50.0));
    let t0 = std::time::Instant::now();
    let first = pack.advance_to(t0);
    assert_eq!(first.soc_pct, 50.0, "the first call advances nothing");
    let r = pack.advance_to(t0 + std::time::Duration::from_secs(100));
    assert!((r.soc_pct - 51.0).abs() < 1e-3, "{}", r.soc_pct);
    // An older instant advances nothing and does not move the clock back.
    let again = pack.advance_to(t0 + std::time::Duration::from_secs(50));
    assert_eq!(again.soc_pct, r.soc_pct);
    let clone = pack.clone();
    let r = clone.advance_to(t0 + std::time::Duration::from_secs(200));
    assert!((r.soc_pct - 52.0).abs() < 1e-3, "{}", r.soc_pct);
    assert_eq!(pack.with_model(|m| m.elapsed_s()).round(), 200.0);
}

fn arb_load() -> impl Strategy<Value = LoadProfile> {
    prop_oneof![
        (-300.0f64..300.0).prop_map(|current_a| LoadProfile::Constant { current_a }),
        (0.0f64..200.0, 0.0f64..200.0).prop_map(|(c, d)| LoadProfile::RandomWalk {
            max_charge_a: c,
            max_discharge_a: d
        }),
        (
            prop::collection::vec((1.0f64..5000.0, -200.0f64..200.0), 1..5),
            any::<bool>()
        )
            .prop_map(|(steps, repeat)| LoadProfile::Scripted {
                steps: steps
                    .into_iter()
                    .map(|(duration_s, current_a)| LoadStep {
                        duration_s,
                        current_a
                    })
                    .collect(),
                repeat,
            }),
    ]
}

fn arb_config() -> impl Strategy<Value = SimPackConfig> {
    (
        any::<u64>(),
        1usize..=32,
        1usize..=16,
        1.0f64..400.0,
        0.0f64..=100.0,
        50.0f64..=100.0,
        -30.0f64..45.0,
        arb_load(),
    )
        .prop_map(
            |(seed, cells, temperature_sensors, capacity_ah, soc, soh, ambient, load)| {
                SimPackConfig {
                    cells,
                    temperature_sensors,
                    capacity_ah,
                    initial_soc_pct: soc,
                    soh_pct: soh,
                    ambient_c: ambient,
                    load,
                    seed,
                    ..SimPackConfig::default()
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_reading_validates(
        config in arb_config(),
        steps in prop::collection::vec(
            prop_oneof![0.0f64..5.0, 5.0f64..600.0, 600.0f64..20_000.0], 1..60),
        faults in prop::collection::vec(any::<bool>(), 60),
    ) {
        prop_assert!(config.validate().is_ok());
        let pack = SimPack::new(&config);
        assert_sane(&pack.reading(), config.cells);
        for (dt, hot) in steps.iter().zip(faults) {
            pack.set_faults(Faults { over_temperature: hot, ..Faults::default() });
            let r = pack.advance(*dt);
            assert_sane(&r, config.cells);
        }
    }

    #[test]
    fn deterministic_for_any_seed(seed in any::<u64>(), dts in prop::collection::vec(0.0f64..120.0, 1..40)) {
        let config = SimPackConfig::default().with_seed(seed);
        let (mut a, mut b) = (PackModel::new(&config), PackModel::new(&config));
        for dt in dts {
            a.step(dt);
            b.step(dt);
            prop_assert_eq!(a.reading(), b.reading());
        }
    }
}
