//! The bank's totals and state from its packs' latest samples: sums and
//! weighted means over the counted packs, the extremes with the pack that
//! holds them, the alarms, and the limits in wire form.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use packgate_protocol::{
    AlarmFlags, BalancingState, BankId, BootId, CellVoltages, DataQuality, PackId, PackReading,
    Temperatures,
};

use super::*;
use crate::bank::LimitsController;

/// A pack as it was last read.
struct Pack {
    id: PackId,
    reading: PackReading,
    quality: DataQuality,
    age: Duration,
    capacity_ah: Option<f64>,
    seq: u64,
}

impl Pack {
    /// 16 cells at 3.30 V, two sensors at 25 °C, 50 %, rated 100 A.
    fn new(name: &str, seq: u64) -> Self {
        Self {
            id: PackId::new(name).unwrap(),
            reading: PackReading {
                pack_voltage_v: 52.8,
                current_a: 0.0,
                soc_pct: 50.0,
                soh_pct: Some(100.0),
                cell_voltages_v: CellVoltages(vec![3.30; 16]),
                temperatures_c: Temperatures(vec![25.0, 25.0]),
                balancing: BalancingState(0),
                alarms: AlarmFlags::NONE,
                charge_enabled: true,
                discharge_enabled: true,
            },
            quality: DataQuality::Fresh,
            age: Duration::from_millis(400),
            capacity_ah: Some(100.0),
            seq,
        }
    }

    fn input(&self) -> PackInput<'_> {
        PackInput {
            view: PackView {
                pack_id: &self.id,
                reading: &self.reading,
                quality: self.quality,
                age: self.age,
                max_charge_a: 100.0,
                max_discharge_a: 100.0,
            },
            capacity_ah: self.capacity_ah,
            sample_seq: self.seq,
        }
    }
}

fn inputs(packs: &[Pack]) -> Vec<PackInput<'_>> {
    packs.iter().map(Pack::input).collect()
}

fn rules() -> LimitRules {
    LimitRules {
        site_max_charge_a: 1_000.0,
        site_max_discharge_a: 1_000.0,
        ramp_up_a_per_s: 10_000.0,
        ..LimitRules::default()
    }
}

fn three() -> Vec<Pack> {
    let mut packs = vec![
        Pack::new("p1", 11),
        Pack::new("p2", 12),
        Pack::new("p3", 13),
    ];
    let [a, b, c] = &mut packs[..] else {
        unreachable!()
    };
    (
        a.reading.current_a,
        b.reading.current_a,
        c.reading.current_a,
    ) = (-10.5, 20.0, 30.25);
    (
        a.reading.pack_voltage_v,
        b.reading.pack_voltage_v,
        c.reading.pack_voltage_v,
    ) = (52.7, 52.8, 52.9);
    (a.reading.soc_pct, b.reading.soc_pct, c.reading.soc_pct) = (40.0, 70.0, 100.0);
    (a.reading.soh_pct, b.reading.soh_pct, c.reading.soh_pct) = (Some(90.0), None, Some(100.0));
    (a.capacity_ah, b.capacity_ah, c.capacity_ah) = (Some(100.0), Some(200.0), Some(100.0));
    a.reading.cell_voltages_v.0[4] = 3.21;
    c.reading.cell_voltages_v.0[15] = 3.41;
    b.reading.temperatures_c.0[1] = 31.5;
    c.reading.temperatures_c.0[0] = 18.0;
    packs
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-3
}

#[test]
fn totals_sum_the_currents_weigh_the_soc_by_capacity_and_name_the_extremes() {
    let packs = three();
    let t = totals(&rules(), &inputs(&packs));
    assert_eq!(t.packs_online, 3);
    assert!(close(t.current_a, 39.75), "{}", t.current_a);
    assert!(close(t.voltage_v, 52.8), "{}", t.voltage_v);
    // (100 × 40 + 200 × 70 + 100 × 100) / 400
    assert!(close(t.soc_pct, 70.0), "{}", t.soc_pct);
    assert_eq!(t.soc_weighting, SocWeighting::Capacity);
    // Only p1 and p3 report a SoH: (100 × 90 + 100 × 100) / 200.
    assert!(close(t.soh_pct.unwrap(), 95.0));
    let named = |e: &Option<packgate_protocol::Extreme>| {
        let e = e.as_ref().unwrap();
        (e.pack_id.as_str().to_owned(), e.index, e.value)
    };
    assert_eq!(named(&t.min_cell), ("p1".into(), 5, 3.21));
    assert_eq!(named(&t.max_cell), ("p3".into(), 16, 3.41));
    assert_eq!(named(&t.min_temperature), ("p3".into(), 1, 18.0));
    assert_eq!(named(&t.max_temperature), ("p2".into(), 2, 31.5));
    assert_eq!(t.alarms, AlarmFlags::NONE);
}

#[test]
fn a_tie_names_the_first_pack_in_the_banks_order() {
    let packs = vec![Pack::new("a", 1), Pack::new("b", 1)];
    let t = totals(&rules(), &inputs(&packs));
    let max = t.max_cell.unwrap();
    assert_eq!((max.pack_id.as_str(), max.index), ("a", 1));
}

#[test]
fn packs_that_do_not_count_are_out_of_the_totals_but_young_alarms_stay() {
    let mut packs = three();
    // p2 did not answer its last poll; p3's last sample is too old.
    packs[1].quality = DataQuality::Stale;
    packs[1].reading.alarms = AlarmFlags::CELL_IMBALANCE;
    packs[2].age = Duration::from_secs(11);
    packs[2].reading.alarms = AlarmFlags::OVER_TEMPERATURE;
    let t = totals(&rules(), &inputs(&packs));
    assert_eq!(t.packs_online, 1);
    assert!(close(t.current_a, -10.5));
    assert!(close(t.soc_pct, 40.0));
    assert_eq!(t.max_cell.unwrap().pack_id.as_str(), "p1");
    // The stale pack's alarm is current enough; the old one's is not.
    assert_eq!(t.alarms, AlarmFlags::CELL_IMBALANCE);
    // None counted: zeros, no extremes.
    packs[0].quality = DataQuality::Suspect;
    let t = totals(&rules(), &inputs(&packs));
    assert_eq!((t.packs_online, t.current_a, t.soc_pct), (0, 0.0, 0.0));
    assert!(t.min_cell.is_none() && t.max_temperature.is_none() && t.soh_pct.is_none());
}

#[test]
fn an_unknown_capacity_weighs_the_packs_equally() {
    let mut packs = three();
    packs[1].capacity_ah = None;
    let t = totals(&rules(), &inputs(&packs));
    assert_eq!(t.soc_weighting, SocWeighting::Equal);
    assert!(close(t.soc_pct, 70.0));
    packs[0].reading.soc_pct = 10.0;
    let t = totals(&rules(), &inputs(&packs));
    assert!(close(t.soc_pct, 60.0), "{}", t.soc_pct);
}

fn stamp(seq: u64) -> Stamp {
    Stamp {
        bank_id: BankId::new("house").unwrap(),
        boot_id: BootId(9),
        seq,
        timestamp_ms: 1_700_000_000_000,
    }
}

/// The README's worked example: three packs of 100 A, one with its highest
/// cell at 3.55 V (half-way down its 3.45-3.65 V taper): 3 × 50 A.
#[test]
fn one_high_cell_halves_every_packs_share_of_the_charge_current() {
    let mut packs = three();
    for pack in &mut packs {
        pack.reading.soc_pct = 60.0;
        pack.reading.current_a = 0.0;
    }
    packs[1].reading.cell_voltages_v.0[7] = 3.55;
    let mut controller = LimitsController::new(rules());
    let start = Instant::now();
    let views: Vec<PackView<'_>> = inputs(&packs).iter().map(|i| i.view).collect();
    controller.update(&views, start);
    let limits = controller.update(&views, start + Duration::from_secs(1));
    let state = bank_state(stamp(2), &rules(), &inputs(&packs), &limits);
    assert!(
        close(state.charge_current_a, 150.0),
        "{}",
        state.charge_current_a
    );
    assert_eq!(state.charge_derating, Derating::CellVoltage);
    assert!(close(state.discharge_current_a, 300.0));
    assert_eq!(state.discharge_derating, Derating::None);
    assert_eq!(state.charge_voltage_v, 55.2);
    assert_eq!(state.stage, ChargeStage::Absorption);
    assert_eq!(state.stop, None);
    let entry = state.pack(&PackId::new("p2").unwrap()).unwrap();
    assert_eq!(entry.sample_seq, 12);
    assert!(entry.counted);
    match entry.charge {
        PackShare::Allowed {
            current_a,
            derating,
        } => {
            assert!(close(current_a, 50.0));
            assert_eq!(derating, Derating::CellVoltage);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        state
            .max_cell
            .as_ref()
            .map(|e| (e.pack_id.as_str(), e.index)),
        Some(("p2", 8))
    );
    assert_eq!((state.packs_total, state.packs_online), (3, 3));
    assert_eq!(state.msg_id(), "house:0000000000000009:b2");
    packgate_protocol::WireMessage::check(&state).unwrap();

    // With the README's site limits of 200 A: the high cell still rules the
    // charge side, the site the discharge side.
    let site = LimitRules {
        site_max_charge_a: 200.0,
        site_max_discharge_a: 200.0,
        ..rules()
    };
    let mut controller = LimitsController::new(site);
    controller.update(&views, start);
    let limits = controller.update(&views, start + Duration::from_secs(1));
    let state = bank_state(stamp(2), &site, &inputs(&packs), &limits);
    assert!(close(state.charge_current_a, 150.0));
    assert_eq!(state.charge_derating, Derating::CellVoltage);
    assert!(close(state.discharge_current_a, 200.0));
    assert_eq!(state.discharge_derating, Derating::None);
}

#[test]
fn an_over_temperature_pack_leaves_both_currents_and_is_named() {
    let mut packs = three();
    packs[2].reading.alarms = AlarmFlags::OVER_TEMPERATURE;
    packs[2].reading.charge_enabled = false;
    packs[2].reading.discharge_enabled = false;
    let mut controller = LimitsController::new(rules());
    let start = Instant::now();
    let views: Vec<PackView<'_>> = inputs(&packs).iter().map(|i| i.view).collect();
    controller.update(&views, start);
    let limits = controller.update(&views, start + Duration::from_secs(1));
    let state = bank_state(stamp(2), &rules(), &inputs(&packs), &limits);
    assert!(
        close(state.charge_current_a, 200.0),
        "{}",
        state.charge_current_a
    );
    assert!(close(state.discharge_current_a, 200.0));
    assert_eq!(state.alarms, AlarmFlags::OVER_TEMPERATURE);
    let hot = &state.packs[2];
    assert_eq!(hot.alarms, AlarmFlags::OVER_TEMPERATURE);
    assert!(hot.counted, "it answers: it counts, but takes no share");
    assert_eq!(hot.charge, PackShare::SwitchOpen);
}

#[test]
fn with_every_pack_stale_both_currents_are_zero_and_the_stop_says_why() {
    let mut packs = three();
    for pack in &mut packs {
        pack.quality = DataQuality::Stale;
    }
    let mut controller = LimitsController::new(rules());
    let views: Vec<PackView<'_>> = inputs(&packs).iter().map(|i| i.view).collect();
    let limits = controller.update(&views, Instant::now());
    let state = bank_state(stamp(1), &rules(), &inputs(&packs), &limits);
    assert_eq!(
        (state.charge_current_a, state.discharge_current_a),
        (0.0, 0.0)
    );
    assert_eq!(state.stop, Some(packgate_protocol::BankStop::NoFreshData));
    assert_eq!(state.packs_online, 0);
    assert!(state
        .packs
        .iter()
        .all(|p| p.charge == PackShare::NotCounted));
    packgate_protocol::WireMessage::check(&state).unwrap();
}
