//! The bank limits' invariants, by property, and the scenarios that
//! matter on a real site.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use packgate_protocol::{
    AlarmFlags, BalancingState, CellVoltages, DataQuality, PackId, PackReading, Temperatures,
};
use proptest::prelude::*;

use super::limits::{CHARGE_BLOCKING, DISCHARGE_BLOCKING};
use super::*;

/// A pack as it is read: what the limits see of it.
#[derive(Debug, Clone)]
struct Pack {
    id: PackId,
    reading: PackReading,
    quality: DataQuality,
    age: Duration,
    max_charge_a: f64,
    max_discharge_a: f64,
}

impl Pack {
    /// A healthy 16-cell LFP pack at 50 %, 25 °C, rated 100 A each way.
    fn healthy(name: &str) -> Self {
        Self {
            id: PackId::new(name).unwrap(),
            reading: PackReading {
                pack_voltage_v: 52.8,
                current_a: 0.0,
                soc_pct: 50.0,
                soh_pct: Some(98.0),
                cell_voltages_v: CellVoltages(vec![3.30; 16]),
                temperatures_c: Temperatures(vec![25.0, 25.0]),
                balancing: BalancingState(0),
                alarms: AlarmFlags::NONE,
                charge_enabled: true,
                discharge_enabled: true,
            },
            quality: DataQuality::Fresh,
            age: Duration::from_millis(500),
            max_charge_a: 100.0,
            max_discharge_a: 100.0,
        }
    }

    fn view(&self) -> PackView<'_> {
        PackView {
            pack_id: &self.id,
            reading: &self.reading,
            quality: self.quality,
            age: self.age,
            max_charge_a: self.max_charge_a,
            max_discharge_a: self.max_discharge_a,
        }
    }
}

fn views(packs: &[Pack]) -> Vec<PackView<'_>> {
    packs.iter().map(Pack::view).collect()
}

fn rules() -> LimitRules {
    LimitRules {
        site_max_charge_a: 1_000.0,
        site_max_discharge_a: 1_000.0,
        ..LimitRules::default()
    }
}

fn bank(n: usize) -> Vec<Pack> {
    (1..=n)
        .map(|i| Pack::healthy(&format!("pack-{i}")))
        .collect()
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-3
}

// ---- properties ----

fn arb_pack(index: usize) -> impl Strategy<Value = Pack> {
    (
        (2.4f32..3.9, 0f32..0.4),
        (-30f32..75.0, 0f32..20.0),
        0f32..=100.0,
        // Mostly no alarm, sometimes one: random bits would block nearly
        // every pack and leave the limits untested.
        prop_oneof![4 => Just(0u32), 1 => (0u32..11).prop_map(|bit| 1 << bit)],
        prop_oneof![
            4 => Just((true, true)),
            1 => (any::<bool>(), any::<bool>())
        ],
        prop_oneof![
            4 => Just(DataQuality::Fresh),
            1 => Just(DataQuality::Stale),
            1 => Just(DataQuality::Suspect)
        ],
        prop_oneof![4 => 0u64..10_000, 1 => 0u64..30_000],
        (0f64..300.0, 0f64..300.0),
    )
        .prop_map(
            move |(
                (low_cell, spread),
                (low_t, t_spread),
                soc,
                alarms,
                (chg, dsg),
                quality,
                age_ms,
                (max_c, max_d),
            )| {
                let mut pack = Pack::healthy(&format!("pack-{index}"));
                let mut cells = vec![low_cell + spread / 2.0; 16];
                cells[0] = low_cell;
                cells[15] = low_cell + spread;
                pack.reading.cell_voltages_v = CellVoltages(cells);
                pack.reading.temperatures_c = Temperatures(vec![low_t, low_t + t_spread]);
                pack.reading.soc_pct = soc;
                pack.reading.alarms = AlarmFlags(alarms);
                pack.reading.charge_enabled = chg;
                pack.reading.discharge_enabled = dsg;
                pack.quality = quality;
                pack.age = Duration::from_millis(age_ms);
                pack.max_charge_a = max_c;
                pack.max_discharge_a = max_d;
                pack
            },
        )
}

fn arb_bank() -> impl Strategy<Value = Vec<Pack>> {
    (1usize..6).prop_flat_map(|n| (0..n).map(arb_pack).collect::<Vec<_>>())
}

fn arb_rules() -> impl Strategy<Value = LimitRules> {
    (0f64..2_000.0, 0f64..2_000.0, 1usize..3).prop_map(|(charge, discharge, min_online)| {
        LimitRules {
            site_max_charge_a: charge,
            site_max_discharge_a: discharge,
            min_online_packs: min_online,
            ..LimitRules::default()
        }
    })
}

proptest! {
    #[test]
    fn limits_never_exceed_a_site_or_pack_limit_and_are_never_negative(
        packs in arb_bank(),
        rules in arb_rules(),
    ) {
        let t = targets(&rules, &views(&packs));
        for (current, site) in [
            (t.charge_current_a, rules.site_max_charge_a),
            (t.discharge_current_a, rules.site_max_discharge_a),
        ] {
            prop_assert!(current.is_finite() && current >= 0.0, "{current}");
            prop_assert!(current <= site + 1e-9, "{current} > site {site}");
        }
        // Never more than the sum of the counted packs' ratings, and
        // never more than N x any one pack's allowed share.
        let charge_shares: Vec<f64> = t.shares.iter().filter_map(|s| s.1.ok()).map(|s| s.0).collect();
        let rated: f64 = packs.iter().map(|p| p.max_charge_a).sum();
        prop_assert!(t.charge_current_a <= rated + 1e-9);
        for share in &charge_shares {
            prop_assert!(t.charge_current_a <= charge_shares.len() as f64 * share + 1e-9);
        }
        let discharge_shares: Vec<f64> = t.shares.iter().filter_map(|s| s.2.ok()).map(|s| s.0).collect();
        for share in &discharge_shares {
            prop_assert!(t.discharge_current_a <= discharge_shares.len() as f64 * share + 1e-9);
        }
    }

    #[test]
    fn every_safety_condition_means_zero(packs in arb_bank(), rules in arb_rules()) {
        let t = targets(&rules, &views(&packs));
        let counted = packs
            .iter()
            .filter(|p| p.quality == DataQuality::Fresh && p.age.as_secs_f64() <= rules.stale_after_s)
            .count();
        if counted < rules.min_online_packs.max(1) {
            prop_assert_eq!((t.charge_current_a, t.discharge_current_a), (0.0, 0.0));
            prop_assert!(t.stop.is_some());
        }
        // No pack may take charge: zero charge.
        let any_may_charge = packs.iter().any(|p| {
            p.quality == DataQuality::Fresh
                && p.age.as_secs_f64() <= rules.stale_after_s
                && p.reading.charge_enabled
                && p.reading.alarms.0 & CHARGE_BLOCKING.0 == 0
        });
        if !any_may_charge {
            prop_assert_eq!(t.charge_current_a, 0.0);
        }
        let any_may_discharge = packs.iter().any(|p| {
            p.quality == DataQuality::Fresh
                && p.age.as_secs_f64() <= rules.stale_after_s
                && p.reading.discharge_enabled
                && p.reading.alarms.0 & DISCHARGE_BLOCKING.0 == 0
        });
        if !any_may_discharge {
            prop_assert_eq!(t.discharge_current_a, 0.0);
        }
        // Charging below freezing or at the hot limit: zero charge.
        let frozen_or_hot = packs.iter().any(|p| {
            let ts = &p.reading.temperatures_c.0;
            ts.iter().any(|t| f64::from(*t) <= rules.chemistry.charge_min_c
                || f64::from(*t) >= rules.chemistry.charge_max_c)
        });
        let frozen_pack_counts = packs.iter().any(|p| {
            p.quality == DataQuality::Fresh
                && p.age.as_secs_f64() <= rules.stale_after_s
                && p.reading.charge_enabled
                && p.reading.alarms.0 & CHARGE_BLOCKING.0 == 0
                && p.reading.temperatures_c.0.iter().any(|t| f64::from(*t) <= rules.chemistry.charge_min_c
                    || f64::from(*t) >= rules.chemistry.charge_max_c)
        });
        if frozen_or_hot && frozen_pack_counts {
            prop_assert_eq!(t.charge_current_a, 0.0);
        }
    }

    #[test]
    fn a_higher_cell_a_hotter_pack_or_a_lower_cell_never_raises_a_limit(
        packs in arb_bank(),
        which in 0usize..6,
        cell_rise in 0f32..0.5,
        heat in 0f32..30.0,
    ) {
        let rules = rules();
        let which = which % packs.len();
        let before = targets(&rules, &views(&packs));

        let mut higher = packs.clone();
        higher[which].reading.cell_voltages_v.0[15] += cell_rise;
        let after = targets(&rules, &views(&higher));
        prop_assert!(after.charge_current_a <= before.charge_current_a + 1e-9);

        // Warmer where it is already warm enough: never more current.
        let warm = packs[which].reading.temperatures_c.0.iter().all(|t| {
            f64::from(*t) >= rules.chemistry.charge_cold_full_c
        });
        let mut hotter = packs.clone();
        for t in &mut hotter[which].reading.temperatures_c.0 {
            *t += heat;
        }
        let after = targets(&rules, &views(&hotter));
        if warm {
            prop_assert!(after.charge_current_a <= before.charge_current_a + 1e-9);
            prop_assert!(after.discharge_current_a <= before.discharge_current_a + 1e-9);
        }
        // Colder where it is not hot: never more current either.
        let cool = packs[which].reading.temperatures_c.0.iter().all(|t| {
            f64::from(*t) <= rules.chemistry.charge_hot_taper_c
        });
        let mut colder = packs.clone();
        for t in &mut colder[which].reading.temperatures_c.0 {
            *t -= heat;
        }
        let after = targets(&rules, &views(&colder));
        if cool {
            prop_assert!(after.charge_current_a <= before.charge_current_a + 1e-9);
            prop_assert!(after.discharge_current_a <= before.discharge_current_a + 1e-9);
        }

        let mut lower = packs.clone();
        lower[which].reading.cell_voltages_v.0[0] -= cell_rise;
        let after = targets(&rules, &views(&lower));
        prop_assert!(after.discharge_current_a <= before.discharge_current_a + 1e-9);
    }

    #[test]
    fn rising_limits_ramp_and_falling_ones_drop_at_once(
        sequence in proptest::collection::vec(arb_bank(), 2..12),
    ) {
        let rules = rules();
        let mut controller = LimitsController::new(rules);
        let start = Instant::now();
        let mut last = (0.0, 0.0);
        for (second, packs) in sequence.iter().enumerate() {
            let now = start + Duration::from_secs(second as u64);
            let limits = controller.update(&views(packs), now);
            let t = &limits.targets;
            prop_assert!(limits.charge_current_a <= t.charge_current_a + 1e-9);
            prop_assert!(limits.discharge_current_a <= t.discharge_current_a + 1e-9);
            if second > 0 {
                prop_assert!(limits.charge_current_a <= last.0 + rules.ramp_up_a_per_s + 1e-9);
                prop_assert!(limits.discharge_current_a <= last.1 + rules.ramp_up_a_per_s + 1e-9);
            }
            if t.charge_current_a <= last.0 {
                prop_assert!(approx(limits.charge_current_a, t.charge_current_a));
            }
            prop_assert!(limits.charge_voltage_v <= rules.absorption_voltage_v);
            last = (limits.charge_current_a, limits.discharge_current_a);
        }
    }
}

#[path = "limits_scenario_tests.rs"]
mod scenarios;
