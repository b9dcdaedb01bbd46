//! From the packs' latest samples to a bank's state: the totals and
//! extremes over the counted packs, and the limits of the
//! [`LimitsController`](crate::bank::LimitsController) in wire form. Pure:
//! no I/O, the time and the limits passed in.

use packgate_protocol::{
    AlarmFlags, BankId, BankPack, BankState, BankStop, BootId, ChargeStage, Derating, Extreme,
    PackShare, SiteOverrides, SocWeighting,
};

use crate::bank::{self, counts, BankLimits, Excluded, LimitRules, PackView, Share};

/// One pack of a bank as the state sees it.
#[derive(Debug, Clone, Copy)]
pub struct PackInput<'a> {
    /// What the limits see of it: its latest sample (a stale placeholder
    /// when none has arrived), its age and its ratings.
    pub view: PackView<'a>,
    /// Its capacity, Ah, when known.
    pub capacity_ah: Option<f64>,
    /// The sequence number of the sample in `view` (0: none yet).
    pub sample_seq: u64,
}

/// The totals and extremes of the counted packs.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    /// Packs that count.
    pub packs_online: u32,
    /// Their mean voltage, V (0 with none).
    pub voltage_v: f32,
    /// Their summed current, A.
    pub current_a: f32,
    /// Their SoC, weighted as `soc_weighting` says, % (0 with none).
    pub soc_pct: f32,
    /// How the SoC weighs them.
    pub soc_weighting: SocWeighting,
    /// Their SoH, weighted like the SoC, over those that report one.
    pub soh_pct: Option<f32>,
    /// The lowest cell.
    pub min_cell: Option<Extreme>,
    /// The highest cell.
    pub max_cell: Option<Extreme>,
    /// The coldest sensor.
    pub min_temperature: Option<Extreme>,
    /// The hottest sensor.
    pub max_temperature: Option<Extreme>,
    /// The alarms of every pack whose latest sample is no older than the
    /// stale age, whatever its quality.
    pub alarms: AlarmFlags,
}

/// The extreme of `current` and `candidate` that `better` prefers; ties
/// keep the first (the earlier pack in the bank's order).
fn pick(
    current: Option<Extreme>,
    candidate: Extreme,
    better: fn(f32, f32) -> bool,
) -> Option<Extreme> {
    match current {
        Some(held) if !better(candidate.value, held.value) => Some(held),
        _ => Some(candidate),
    }
}

/// `values` with their 1-based index, as extremes of `pack`.
fn extremes<'a>(pack: &'a PackInput<'_>, values: &'a [f32]) -> impl Iterator<Item = Extreme> + 'a {
    values.iter().enumerate().map(move |(i, value)| Extreme {
        pack_id: pack.view.pack_id.clone(),
        index: u8::try_from(i + 1).unwrap_or(u8::MAX),
        value: *value,
    })
}

/// A weighted mean of `(weight, value)`; `None` when the weights add up
/// to nothing.
fn weighted(items: impl Iterator<Item = (f64, f64)>) -> Option<f64> {
    let (sum, weights) = items.fold((0.0, 0.0), |(s, w), (weight, value)| {
        (s + weight * value, w + weight)
    });
    (weights > 0.0 && sum.is_finite()).then(|| sum / weights)
}

/// The totals and extremes of `packs` under `rules`.
pub fn totals(rules: &LimitRules, packs: &[PackInput<'_>]) -> Totals {
    let counted: Vec<&PackInput<'_>> = packs.iter().filter(|p| counts(rules, &p.view)).collect();
    let n = counted.len();
    let soc_weighting = if counted
        .iter()
        .all(|p| p.capacity_ah.is_some_and(|c| c > 0.0))
    {
        SocWeighting::Capacity
    } else {
        SocWeighting::Equal
    };
    let weight = |p: &PackInput<'_>| match soc_weighting {
        SocWeighting::Capacity => p.capacity_ah.unwrap_or(0.0),
        SocWeighting::Equal => 1.0,
    };
    let soc_pct = weighted(
        counted
            .iter()
            .map(|p| (weight(p), f64::from(p.view.reading.soc_pct))),
    );
    let soh_pct = weighted(counted.iter().filter_map(|p| {
        p.view
            .reading
            .soh_pct
            .map(|soh| (weight(p), f64::from(soh)))
    }));
    let voltage_sum: f64 = counted
        .iter()
        .map(|p| f64::from(p.view.reading.pack_voltage_v))
        .sum();
    let current_a: f64 = counted
        .iter()
        .map(|p| f64::from(p.view.reading.current_a))
        .sum();
    let mut totals = Totals {
        packs_online: u32::try_from(n).unwrap_or(u32::MAX),
        voltage_v: if n == 0 {
            0.0
        } else {
            (voltage_sum / n as f64) as f32
        },
        current_a: current_a as f32,
        soc_pct: soc_pct.unwrap_or(0.0).clamp(0.0, 100.0) as f32,
        soc_weighting,
        soh_pct: soh_pct.map(|soh| soh.clamp(0.0, 100.0) as f32),
        min_cell: None,
        max_cell: None,
        min_temperature: None,
        max_temperature: None,
        alarms: AlarmFlags::NONE,
    };
    let lower = |a: f32, b: f32| a < b;
    let higher = |a: f32, b: f32| a > b;
    for pack in &counted {
        let reading = pack.view.reading;
        for cell in extremes(pack, &reading.cell_voltages_v.0) {
            totals.min_cell = pick(totals.min_cell.take(), cell.clone(), lower);
            totals.max_cell = pick(totals.max_cell.take(), cell, higher);
        }
        for sensor in extremes(pack, &reading.temperatures_c.0) {
            totals.min_temperature = pick(totals.min_temperature.take(), sensor.clone(), lower);
            totals.max_temperature = pick(totals.max_temperature.take(), sensor, higher);
        }
    }
    totals.alarms = packs
        .iter()
        .filter(|p| p.view.age.as_secs_f64() <= rules.stale_after_s)
        .fold(AlarmFlags::NONE, |all, p| all.union(p.view.reading.alarms));
    totals
}

/// The wire form of a derating.
pub(super) fn derating(d: bank::Derating) -> Derating {
    match d {
        bank::Derating::None => Derating::None,
        bank::Derating::CellVoltage => Derating::CellVoltage,
        bank::Derating::Temperature => Derating::Temperature,
        bank::Derating::StateOfCharge => Derating::StateOfCharge,
    }
}

/// The wire form of a pack's share.
fn share(s: Share) -> PackShare {
    match s {
        Ok((current_a, why)) => PackShare::Allowed {
            current_a: current_a as f32,
            derating: derating(why),
        },
        Err(Excluded::NotCounted) => PackShare::NotCounted,
        Err(Excluded::SwitchOpen) => PackShare::SwitchOpen,
        Err(Excluded::Alarm(alarms)) => PackShare::Alarm(alarms),
    }
}

/// The wire form of a stop.
fn stop(s: bank::Stop) -> BankStop {
    match s {
        bank::Stop::NoFreshData => BankStop::NoFreshData,
        bank::Stop::TooFewPacks { counted, required } => BankStop::TooFewPacks {
            counted: u32::try_from(counted).unwrap_or(u32::MAX),
            required: u32::try_from(required).unwrap_or(u32::MAX),
        },
    }
}

/// Who computed a state, and when.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// The bank.
    pub bank_id: BankId,
    /// The worker's run.
    pub boot_id: BootId,
    /// The state's sequence number.
    pub seq: u64,
    /// Wall-clock time, ms since the Unix epoch.
    pub timestamp_ms: i64,
}

/// The state of the bank of `packs` (in the bank's order) under `rules`,
/// whose limits this second are `limits`.
pub fn bank_state(
    stamp: Stamp,
    rules: &LimitRules,
    packs: &[PackInput<'_>],
    limits: &BankLimits,
) -> BankState {
    let t = totals(rules, packs);
    let shares = &limits.targets.shares;
    let pack_entries = packs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (charge, discharge) = shares
                .get(i)
                .map_or((PackShare::NotCounted, PackShare::NotCounted), |s| {
                    (share(s.1), share(s.2))
                });
            BankPack {
                pack_id: p.view.pack_id.clone(),
                sample_seq: p.sample_seq,
                counted: counts(rules, &p.view),
                alarms: p.view.reading.alarms,
                charge,
                discharge,
            }
        })
        .collect::<Vec<_>>();
    BankState {
        bank_id: stamp.bank_id,
        boot_id: stamp.boot_id,
        seq: stamp.seq,
        timestamp_ms: stamp.timestamp_ms,
        packs_total: u32::try_from(pack_entries.len()).unwrap_or(u32::MAX),
        packs_online: t.packs_online,
        voltage_v: t.voltage_v,
        current_a: t.current_a,
        soc_pct: t.soc_pct,
        soc_weighting: t.soc_weighting,
        soh_pct: t.soh_pct,
        min_cell: t.min_cell,
        max_cell: t.max_cell,
        min_temperature: t.min_temperature,
        max_temperature: t.max_temperature,
        alarms: t.alarms,
        charge_voltage_v: limits.charge_voltage_v as f32,
        charge_current_a: limits.charge_current_a as f32,
        discharge_current_a: limits.discharge_current_a as f32,
        discharge_voltage_v: limits.discharge_voltage_v as f32,
        stage: match limits.stage {
            bank::ChargeStage::Absorption => ChargeStage::Absorption,
            bank::ChargeStage::Float => ChargeStage::Float,
        },
        charge_derating: derating(limits.targets.charge_derating),
        discharge_derating: derating(limits.targets.discharge_derating),
        stop: limits.targets.stop.map(stop),
        packs: pack_entries,
        overrides: SiteOverrides::default(),
    }
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
