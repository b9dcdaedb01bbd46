//! The scenarios that matter on a real site, each through the bank
//! limits.

use super::*;

#[test]
fn healthy_packs_in_parallel_share_their_ratings_up_to_the_site_limit() {
    let packs = bank(3);
    let t = targets(&rules(), &views(&packs));
    assert_eq!((t.charge_current_a, t.discharge_current_a), (300.0, 300.0));
    assert_eq!(t.packs_counted, 3);
    let site = LimitRules {
        site_max_charge_a: 80.0,
        ..rules()
    };
    assert_eq!(targets(&site, &views(&packs)).charge_current_a, 80.0);
}

#[test]
fn one_high_cell_holds_the_whole_bank_to_that_packs_share() {
    let mut packs = bank(3);
    // Half-way up the 3.45-3.65 V taper: that pack may take 50 A.
    packs[1].reading.cell_voltages_v.0[7] = 3.55;
    let t = targets(&rules(), &views(&packs));
    assert!(approx(t.charge_current_a, 150.0), "{}", t.charge_current_a);
    assert_eq!(t.charge_derating, Derating::CellVoltage);
    // Discharge is not limited by a high cell.
    assert_eq!(t.discharge_current_a, 300.0);
}

#[test]
fn an_over_temperature_pack_takes_its_share_out_at_once() {
    let mut packs = bank(3);
    let mut controller = LimitsController::new(rules());
    let start = Instant::now();
    // Ramped up to full over a minute.
    let mut limits = controller.update(&views(&packs), start);
    for s in 1..=60 {
        limits = controller.update(&views(&packs), start + Duration::from_secs(s));
    }
    assert_eq!(limits.charge_current_a, 300.0);
    packs[2].reading.alarms = AlarmFlags::OVER_TEMPERATURE;
    let limits = controller.update(&views(&packs), start + Duration::from_secs(61));
    assert_eq!(limits.charge_current_a, 200.0);
    assert_eq!(limits.discharge_current_a, 200.0);
    assert_eq!(
        limits.targets.shares[2].1,
        Err(Excluded::Alarm(AlarmFlags::OVER_TEMPERATURE))
    );
}

#[test]
fn a_pack_that_drops_offline_is_out_after_the_stale_age_and_too_few_stop_the_bank() {
    let rules = LimitRules {
        min_online_packs: 2,
        ..rules()
    };
    let mut packs = bank(3);
    packs[0].age = Duration::from_secs(9);
    assert_eq!(targets(&rules, &views(&packs)).charge_current_a, 300.0);
    packs[0].age = Duration::from_secs(11);
    let t = targets(&rules, &views(&packs));
    assert_eq!(t.charge_current_a, 200.0);
    assert_eq!(t.shares[0].1, Err(Excluded::NotCounted));
    packs[1].quality = DataQuality::Stale;
    let t = targets(&rules, &views(&packs));
    assert_eq!((t.charge_current_a, t.discharge_current_a), (0.0, 0.0));
    assert_eq!(
        t.stop,
        Some(Stop::TooFewPacks {
            counted: 1,
            required: 2
        })
    );
    for pack in &mut packs {
        pack.quality = DataQuality::Suspect;
    }
    let t = targets(&rules, &views(&packs));
    assert_eq!(t.stop, Some(Stop::NoFreshData));
    assert_eq!((t.charge_current_a, t.discharge_current_a), (0.0, 0.0));
}

#[test]
fn a_cold_morning_allows_discharge_and_no_charge_until_it_warms() {
    let mut packs = bank(2);
    packs[0].reading.temperatures_c = Temperatures(vec![-3.0, 1.0]);
    let t = targets(&rules(), &views(&packs));
    assert_eq!(t.charge_current_a, 0.0);
    assert_eq!(t.charge_derating, Derating::Temperature);
    assert_eq!(t.discharge_current_a, 200.0);
    // 2.5 °C: half-way up the 0-5 °C taper.
    packs[0].reading.temperatures_c = Temperatures(vec![2.5, 4.0]);
    let t = targets(&rules(), &views(&packs));
    assert!(approx(t.charge_current_a, 100.0), "{}", t.charge_current_a);
}

#[test]
fn a_pack_whose_bms_opened_its_charge_switch_only_leaves_the_charge_side() {
    let mut packs = bank(2);
    packs[0].reading.charge_enabled = false;
    let t = targets(&rules(), &views(&packs));
    assert_eq!(t.charge_current_a, 100.0);
    assert_eq!(t.discharge_current_a, 200.0);
    assert_eq!(t.shares[0].1, Err(Excluded::SwitchOpen));
}

#[test]
fn near_empty_discharge_tapers_to_zero() {
    let mut packs = bank(2);
    for pack in &mut packs {
        pack.reading.soc_pct = 7.5;
    }
    let t = targets(&rules(), &views(&packs));
    assert!(
        approx(t.discharge_current_a, 100.0),
        "{}",
        t.discharge_current_a
    );
    for pack in &mut packs {
        pack.reading.soc_pct = 5.0;
    }
    assert_eq!(targets(&rules(), &views(&packs)).discharge_current_a, 0.0);
}

#[test]
fn absorption_drops_to_float_after_the_hold_and_returns_after_a_discharge() {
    let rules = LimitRules {
        absorption_hold_s: 600.0,
        rebulk_discharge_ah: 10.0,
        ..rules()
    };
    let mut controller = LimitsController::new(rules);
    let mut packs = bank(2);
    for pack in &mut packs {
        pack.reading.soc_pct = 100.0;
        pack.reading.cell_voltages_v = CellVoltages(vec![3.40; 16]);
    }
    let start = Instant::now();
    let at = |s: u64| start + Duration::from_secs(s);
    assert_eq!(
        controller.update(&views(&packs), at(0)).stage,
        ChargeStage::Absorption
    );
    // Full but one cell 50 mV off: not balanced, the hold does not run.
    packs[0].reading.cell_voltages_v.0[3] = 3.45;
    assert_eq!(
        controller.update(&views(&packs), at(1)).stage,
        ChargeStage::Absorption
    );
    packs[0].reading.cell_voltages_v.0[3] = 3.40;
    let mut limits = controller.update(&views(&packs), at(2));
    for s in 3..=601 {
        limits = controller.update(&views(&packs), at(s));
    }
    assert_eq!(limits.stage, ChargeStage::Absorption, "held 599 s only");
    limits = controller.update(&views(&packs), at(602));
    assert_eq!(limits.stage, ChargeStage::Float);
    assert_eq!(limits.charge_voltage_v, 54.0);

    // Discharging 60 A for 5 minutes: 5 Ah, still float.
    for pack in &mut packs {
        pack.reading.current_a = -30.0;
        pack.reading.soc_pct = 97.0;
    }
    let mut s = 602;
    for _ in 0..300 {
        s += 1;
        limits = controller.update(&views(&packs), at(s));
    }
    assert_eq!(limits.stage, ChargeStage::Float);
    // Another 5 minutes: 10 Ah, absorption again.
    for _ in 0..300 {
        s += 1;
        limits = controller.update(&views(&packs), at(s));
    }
    assert_eq!(limits.stage, ChargeStage::Absorption);
    assert_eq!(limits.charge_voltage_v, 55.2);
}

#[test]
fn the_charge_voltage_never_exceeds_what_the_cells_may_hold() {
    let rules = LimitRules {
        absorption_voltage_v: 60.0,
        float_voltage_v: 54.0,
        ..rules()
    };
    let mut controller = LimitsController::new(rules);
    let packs = bank(1);
    let limits = controller.update(&views(&packs), Instant::now());
    assert!(approx(limits.charge_voltage_v, 16.0 * 3.65));
}

#[test]
fn after_a_long_gap_the_ramp_starts_again_from_zero() {
    let packs = bank(1);
    let mut controller = LimitsController::new(rules());
    let start = Instant::now();
    let mut limits = controller.update(&views(&packs), start);
    assert_eq!(limits.charge_current_a, 0.0);
    for s in 1..=30 {
        limits = controller.update(&views(&packs), start + Duration::from_secs(s));
    }
    assert_eq!(limits.charge_current_a, 100.0);
    let limits = controller.update(&views(&packs), start + Duration::from_secs(60));
    assert_eq!(limits.charge_current_a, 0.0);
}
