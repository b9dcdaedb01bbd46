//! A bank's charge limits, computed each second from its packs' latest
//! samples: the charge voltage (CVL), charge current (CCL) and discharge
//! current (DCL) an inverter may use. Pure: no I/O, time passed in.
//!
//! # The rules
//!
//! - A pack **counts** when its latest sample is fresh (read, believable)
//!   and younger than `stale_after_s`. Fewer counted packs than
//!   `min_online_packs`, or none, and both currents are zero: the inverter
//!   stops; the last good values are never kept.
//! - For charging, a counted pack takes its share out when its BMS has
//!   opened its charge switch or raises a charge-side protection alarm
//!   (cell or pack over-voltage, charge over-current, over- or
//!   under-temperature, short circuit, BMS fault); likewise for
//!   discharging with the discharge switch and the discharge-side alarms.
//!   A cell-imbalance alarm alone takes no share out: the cell-voltage
//!   taper already guards the high cell.
//! - Each remaining pack may take its rating (`max_charge_a` of its
//!   profile) times its derating (the smallest of the cell-voltage,
//!   temperature and SoC tapers, see [`curves`](super::curves)).
//! - **CCL = N × the smallest allowed current** of the N remaining packs,
//!   capped by the site. Packs in parallel do not share current evenly
//!   (the emptier, cooler or lower-resistance pack takes more), so the sum
//!   of the packs' limits could push one of them past its own; N × the
//!   smallest keeps every pack within its limit as long as the split is
//!   not worse than even, and is never more than the sum. DCL likewise.
//! - CVL is the absorption voltage until the bank has been full (every
//!   counted pack at `full_soc_pct`, cells within `balanced_within_v`)
//!   for `absorption_hold_s`, then the float voltage until a net
//!   discharge of `rebulk_discharge_ah`. It never exceeds the counted
//!   packs' cell count × the chemistry's maximum cell voltage.
//! - Decreases apply at once; increases ramp at `ramp_up_a_per_s`.

use std::time::{Duration, Instant};

use packgate_protocol::{AlarmFlags, DataQuality, PackId, PackReading};

use super::curves::{charge_factor, discharge_factor, Derating};
use super::rules::LimitRules;

/// Alarms that take a pack out of the charge current.
pub const CHARGE_BLOCKING: AlarmFlags = AlarmFlags(
    AlarmFlags::CELL_OVER_VOLTAGE.0
        | AlarmFlags::PACK_OVER_VOLTAGE.0
        | AlarmFlags::CHARGE_OVER_CURRENT.0
        | AlarmFlags::OVER_TEMPERATURE.0
        | AlarmFlags::UNDER_TEMPERATURE.0
        | AlarmFlags::SHORT_CIRCUIT.0
        | AlarmFlags::BMS_FAULT.0,
);

/// Alarms that take a pack out of the discharge current.
pub const DISCHARGE_BLOCKING: AlarmFlags = AlarmFlags(
    AlarmFlags::CELL_UNDER_VOLTAGE.0
        | AlarmFlags::PACK_UNDER_VOLTAGE.0
        | AlarmFlags::DISCHARGE_OVER_CURRENT.0
        | AlarmFlags::OVER_TEMPERATURE.0
        | AlarmFlags::UNDER_TEMPERATURE.0
        | AlarmFlags::SHORT_CIRCUIT.0
        | AlarmFlags::BMS_FAULT.0,
);

/// A gap between two updates longer than this restarts the ramps from
/// zero: whatever was sent before is too old to ramp from.
const RAMP_GAP: Duration = Duration::from_secs(5);

/// One pack as the limits see it.
#[derive(Debug, Clone, Copy)]
pub struct PackView<'a> {
    /// The pack.
    pub pack_id: &'a PackId,
    /// Its latest sample's values.
    pub reading: &'a PackReading,
    /// Its latest sample's quality.
    pub quality: DataQuality,
    /// How long ago its latest sample was taken.
    pub age: Duration,
    /// The charge current its profile allows, A.
    pub max_charge_a: f64,
    /// The discharge current its profile allows, A.
    pub max_discharge_a: f64,
}

/// Why a pack has no share in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// Its latest sample is stale, suspect or older than `stale_after_s`.
    NotCounted,
    /// Its BMS has opened the switch of this direction.
    SwitchOpen,
    /// It raises these protection alarms of this direction.
    Alarm(AlarmFlags),
}

/// A pack's share in one direction: the current it may take, and why
/// not its rating; or why it has none.
pub type Share = Result<(f64, Derating), Excluded>;

/// Why the bank sends zero currents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// No pack has a fresh sample younger than `stale_after_s`.
    NoFreshData,
    /// Fewer packs count than the bank requires.
    TooFewPacks {
        /// Packs that count.
        counted: usize,
        /// `min_online_packs`.
        required: usize,
    },
}

/// The limits before ramping, and how they came about.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// Charge current, A.
    pub charge_current_a: f64,
    /// Discharge current, A.
    pub discharge_current_a: f64,
    /// What limited the charge current most (`None` also when the site
    /// or nothing did).
    pub charge_derating: Derating,
    /// What limited the discharge current most.
    pub discharge_derating: Derating,
    /// Packs that count (fresh and young enough).
    pub packs_counted: usize,
    /// Set when both currents are zero for a safety reason.
    pub stop: Option<Stop>,
    /// Each pack's charge and discharge share, in the order given.
    pub shares: Vec<(PackId, Share, Share)>,
}

/// Whether `pack` counts under `rules`: its latest sample is fresh and no
/// older than `stale_after_s`.
pub fn counts(rules: &LimitRules, pack: &PackView<'_>) -> bool {
    pack.quality == DataQuality::Fresh && pack.age.as_secs_f64() <= rules.stale_after_s
}

fn f(value: f32) -> f64 {
    f64::from(value)
}

fn temperatures(reading: &PackReading) -> (f64, f64) {
    let sensors = &reading.temperatures_c.0;
    if sensors.is_empty() {
        // No sensor: the window's middle neither allows nor forbids more
        // than the other tapers; a pack without sensors is the profile's
        // business (plausibility), not a reason to stop.
        return (20.0, 20.0);
    }
    let min = sensors.iter().copied().fold(f32::INFINITY, f32::min);
    let max = sensors.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (f(min), f(max))
}

/// A pack's charge share.
fn charge_share(rules: &LimitRules, pack: &PackView<'_>) -> Share {
    if !counts(rules, pack) {
        return Err(Excluded::NotCounted);
    }
    let r = pack.reading;
    if !r.charge_enabled {
        return Err(Excluded::SwitchOpen);
    }
    let blocking = AlarmFlags(r.alarms.0 & CHARGE_BLOCKING.0);
    if !blocking.is_empty() {
        return Err(Excluded::Alarm(blocking));
    }
    let (min_c, max_c) = temperatures(r);
    let (factor, why) = charge_factor(rules, f(r.max_cell_v()), min_c, max_c, f(r.soc_pct));
    Ok((pack.max_charge_a.max(0.0) * factor, why))
}

/// A pack's discharge share.
fn discharge_share(rules: &LimitRules, pack: &PackView<'_>) -> Share {
    if !counts(rules, pack) {
        return Err(Excluded::NotCounted);
    }
    let r = pack.reading;
    if !r.discharge_enabled {
        return Err(Excluded::SwitchOpen);
    }
    let blocking = AlarmFlags(r.alarms.0 & DISCHARGE_BLOCKING.0);
    if !blocking.is_empty() {
        return Err(Excluded::Alarm(blocking));
    }
    let (min_c, max_c) = temperatures(r);
    let (factor, why) = discharge_factor(rules, f(r.min_cell_v()), min_c, max_c, f(r.soc_pct));
    Ok((pack.max_discharge_a.max(0.0) * factor, why))
}

/// N × the smallest share, capped by `site`; what limited it.
fn bank_current(shares: impl Iterator<Item = Share>, site: f64) -> (f64, Derating) {
    let mut n = 0usize;
    let mut smallest: Option<(f64, Derating)> = None;
    for (allowed, why) in shares.flatten() {
        n += 1;
        if smallest.is_none_or(|(least, _)| allowed < least) {
            smallest = Some((allowed, why));
        }
    }
    match smallest {
        Some((least, why)) => {
            let current = (n as f64 * least).min(site.max(0.0));
            if current.is_finite() {
                (current.max(0.0), why)
            } else {
                (0.0, why)
            }
        }
        None => (0.0, Derating::None),
    }
}

/// The limits of a bank of `packs` under `rules`, before ramping.
pub fn targets(rules: &LimitRules, packs: &[PackView<'_>]) -> Targets {
    let shares: Vec<(PackId, Share, Share)> = packs
        .iter()
        .map(|pack| {
            (
                pack.pack_id.clone(),
                charge_share(rules, pack),
                discharge_share(rules, pack),
            )
        })
        .collect();
    let packs_counted = packs.iter().filter(|pack| counts(rules, pack)).count();
    let stop = if packs_counted == 0 {
        Some(Stop::NoFreshData)
    } else if packs_counted < rules.min_online_packs {
        Some(Stop::TooFewPacks {
            counted: packs_counted,
            required: rules.min_online_packs,
        })
    } else {
        None
    };
    let (charge, charge_derating) =
        bank_current(shares.iter().map(|s| s.1), rules.site_max_charge_a);
    let (discharge, discharge_derating) =
        bank_current(shares.iter().map(|s| s.2), rules.site_max_discharge_a);
    let (charge_current_a, discharge_current_a) = match stop {
        Some(_) => (0.0, 0.0),
        None => (charge, discharge),
    };
    Targets {
        charge_current_a,
        discharge_current_a,
        charge_derating,
        discharge_derating,
        packs_counted,
        stop,
        shares,
    }
}

/// Which charge voltage the bank is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeStage {
    /// Bulk and absorption: the absorption voltage.
    Absorption,
    /// Full and balanced for long enough: the float voltage.
    Float,
}

/// What is sent to the inverter this second.
#[derive(Debug, Clone, PartialEq)]
pub struct BankLimits {
    /// Charge voltage limit (CVL), V.
    pub charge_voltage_v: f64,
    /// Charge current limit (CCL), A.
    pub charge_current_a: f64,
    /// Discharge current limit (DCL), A.
    pub discharge_current_a: f64,
    /// Discharge voltage limit, V.
    pub discharge_voltage_v: f64,
    /// The charge stage behind the CVL.
    pub stage: ChargeStage,
    /// The limits before ramping, with the reasons.
    pub targets: Targets,
}

/// The limits from one second to the next: the charge stage, and the
/// ramps of rising currents.
#[derive(Debug, Clone)]
pub struct LimitsController {
    rules: LimitRules,
    stage: ChargeStage,
    full_since: Option<Instant>,
    net_discharged_ah: f64,
    last: Option<(Instant, f64, f64)>,
}

impl LimitsController {
    /// A controller starting in absorption with both currents at zero.
    pub fn new(rules: LimitRules) -> Self {
        Self {
            rules,
            stage: ChargeStage::Absorption,
            full_since: None,
            net_discharged_ah: 0.0,
            last: None,
        }
    }

    /// The rules it follows.
    pub fn rules(&self) -> &LimitRules {
        &self.rules
    }

    /// Follows `rules` from the next update on (a site limit lowered or
    /// restored by a command); the charge stage and the ramps go on:
    /// a lower limit applies at once, a higher one ramps.
    pub fn set_rules(&mut self, rules: LimitRules) {
        self.rules = rules;
    }

    /// The limits at `now` for `packs`' latest samples.
    pub fn update(&mut self, packs: &[PackView<'_>], now: Instant) -> BankLimits {
        let targets = targets(&self.rules, packs);
        let counted: Vec<&PackView<'_>> = packs.iter().filter(|p| counts(&self.rules, p)).collect();
        let elapsed = self
            .last
            .map(|(at, _, _)| now.saturating_duration_since(at))
            .unwrap_or_default();
        self.advance_stage(&counted, now, elapsed);

        let (charge_current_a, discharge_current_a) = match self.last {
            Some((at, charge, discharge)) if now.saturating_duration_since(at) <= RAMP_GAP => {
                let step = self.rules.ramp_up_a_per_s * elapsed.as_secs_f64();
                (
                    ramp(charge, targets.charge_current_a, step),
                    ramp(discharge, targets.discharge_current_a, step),
                )
            }
            // First update, or after a long gap: ramp from zero.
            _ => (
                ramp(0.0, targets.charge_current_a, 0.0),
                ramp(0.0, targets.discharge_current_a, 0.0),
            ),
        };
        self.last = Some((now, charge_current_a, discharge_current_a));

        let configured = match self.stage {
            ChargeStage::Absorption => self.rules.absorption_voltage_v,
            ChargeStage::Float => self.rules.float_voltage_v,
        };
        let cell_cap = counted
            .iter()
            .map(|p| p.reading.cell_voltages_v.0.len())
            .filter(|cells| *cells > 0)
            .min()
            .map_or(f64::INFINITY, |cells| {
                cells as f64 * self.rules.chemistry.cell_max_v
            });
        BankLimits {
            charge_voltage_v: configured.min(cell_cap),
            charge_current_a,
            discharge_current_a,
            discharge_voltage_v: self.rules.discharge_voltage_v,
            stage: self.stage,
            targets,
        }
    }

    /// Absorption to float after the hold at full; back after the net
    /// discharge.
    fn advance_stage(&mut self, counted: &[&PackView<'_>], now: Instant, elapsed: Duration) {
        match self.stage {
            ChargeStage::Absorption => {
                if is_full(&self.rules, counted) {
                    let since = *self.full_since.get_or_insert(now);
                    if now.saturating_duration_since(since).as_secs_f64()
                        >= self.rules.absorption_hold_s
                    {
                        self.stage = ChargeStage::Float;
                        self.net_discharged_ah = 0.0;
                        self.full_since = None;
                    }
                } else {
                    self.full_since = None;
                }
            }
            ChargeStage::Float => {
                // Only a period a sample could cover: a gap is not a
                // discharge.
                if elapsed <= RAMP_GAP && !counted.is_empty() {
                    let current_a: f64 = counted.iter().map(|p| f(p.reading.current_a)).sum();
                    if current_a.is_finite() {
                        let ah = -current_a * elapsed.as_secs_f64() / 3600.0;
                        self.net_discharged_ah = (self.net_discharged_ah + ah).max(0.0);
                    }
                }
                if self.net_discharged_ah >= self.rules.rebulk_discharge_ah {
                    self.stage = ChargeStage::Absorption;
                    self.net_discharged_ah = 0.0;
                }
            }
        }
    }
}

/// Decreases at once, increases by at most `step`.
fn ramp(last: f64, target: f64, step: f64) -> f64 {
    if target <= last {
        target
    } else {
        target.min(last + step.max(0.0))
    }
}

/// Every counted pack at full SoC, and the bank's cells within the
/// balance spread.
fn is_full(rules: &LimitRules, counted: &[&PackView<'_>]) -> bool {
    if counted.is_empty() {
        return false;
    }
    let all_full = counted
        .iter()
        .all(|p| f(p.reading.soc_pct) >= rules.full_soc_pct);
    let cells = counted
        .iter()
        .flat_map(|p| p.reading.cell_voltages_v.0.iter().copied());
    let (low, high) = cells.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let balanced = high >= low && f(high - low) <= rules.balanced_within_v;
    all_full && balanced
}
