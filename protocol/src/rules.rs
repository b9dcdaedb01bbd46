//! The rules of each message kind beyond its types, checked by
//! [`decode`](crate::decode): string caps, storable and physically
//! possible numbers (see [`crate::limits`]).

use crate::bank::{BankState, Extreme, PackShare, MAX_BANK_PACKS};
use crate::codec::{MessageKind, WireMessage};
use crate::limits::{
    check_f64, check_len, check_seq, RuleError, MAX_COMMAND_ID_LEN, MAX_INSTANCE_LEN,
    MAX_METRICS_PER_SNAPSHOT, MAX_METRIC_NAME_LEN, MAX_REASON_LEN, MAX_SERIAL_NUMBER_LEN,
    MAX_SETTING_NAME_LEN, MAX_TIMESTAMP_MS, MAX_VERSION_LEN, MAX_WORKER_NAME_LEN,
};
use crate::sample::{CELL_VOLTAGE_RANGE_V, MAX_CURRENT_A, MAX_PACK_VOLTAGE_V, TEMPERATURE_RANGE_C};
use crate::{
    Command, CommandOutcome, CommandReply, Event, EventKind, MetricsSnapshot, Sample, SampleError,
};

impl WireMessage for Sample {
    const KIND: MessageKind = MessageKind::Sample;
    fn decode_older(_version: u8, payload: &[u8]) -> postcard::Result<(Self, &[u8])> {
        // Only version 1 is older than a sample's layout (2).
        crate::sample_v1::take_sample_v1(payload)
    }
    fn check(&self) -> Result<(), RuleError> {
        self.validate().map_err(|error| match error.field() {
            Some(field) if !matches!(error, SampleError::ZeroSequence) => RuleError::OutOfRange {
                field,
                detail: error.to_string(),
            },
            _ => RuleError::Invalid(error.to_string()),
        })
    }
}

impl WireMessage for Event {
    const KIND: MessageKind = MessageKind::Event;
    fn check(&self) -> Result<(), RuleError> {
        check_seq("seq", self.seq)?;
        match &self.kind {
            EventKind::PackOffline { reason } => check_len("reason", reason, MAX_REASON_LEN),
            EventKind::PackOnlineIdentified { serial_number } => {
                check_len("serial_number", serial_number, MAX_SERIAL_NUMBER_LEN)
            }
            EventKind::AlarmRaised(_) | EventKind::AlarmCleared(_) | EventKind::PackOnline => {
                Ok(())
            }
        }
    }
}

impl WireMessage for Command {
    const KIND: MessageKind = MessageKind::Command;
    fn check(&self) -> Result<(), RuleError> {
        if self.id.0.is_empty() {
            return Err(RuleError::Invalid("the command id is empty".to_owned()));
        }
        check_len("id", &self.id.0, MAX_COMMAND_ID_LEN)?;
        check_len("setting", &self.setting.0, MAX_SETTING_NAME_LEN)?;
        check_f64("value", self.value, f64::MIN, f64::MAX)
    }
}

impl WireMessage for CommandReply {
    const KIND: MessageKind = MessageKind::CommandReply;
    fn check(&self) -> Result<(), RuleError> {
        check_len("command_id", &self.command_id.0, MAX_COMMAND_ID_LEN)?;
        match &self.outcome {
            CommandOutcome::Applied { read_back } => {
                check_f64("read_back", *read_back, f64::MIN, f64::MAX)
            }
            CommandOutcome::Rejected { reason } => check_len("reason", reason, MAX_REASON_LEN),
            CommandOutcome::Failed { error } => check_len("error", error, MAX_REASON_LEN),
            CommandOutcome::TimedOut => Ok(()),
        }
    }
}

impl WireMessage for MetricsSnapshot {
    const KIND: MessageKind = MessageKind::MetricsSnapshot;
    const VERSION: u8 = 3;
    fn decode_older(_version: u8, payload: &[u8]) -> postcard::Result<(Self, &[u8])> {
        // Versions 1 and 2 wrote the same layout, without notes.
        crate::metrics::take_snapshot_v2(payload)
    }
    fn check(&self) -> Result<(), RuleError> {
        check_len("worker", &self.worker, MAX_WORKER_NAME_LEN)?;
        check_len("instance", &self.instance, MAX_INSTANCE_LEN)?;
        check_len("version", &self.version, MAX_VERSION_LEN)?;
        for (field, n) in [("uptime_s", self.uptime_s), ("rss_bytes", self.rss_bytes)] {
            if i64::try_from(n).is_err() {
                return Err(RuleError::OutOfRange {
                    field,
                    detail: format!("{n} exceeds the largest storable integer"),
                });
            }
        }
        check_f64("cpu_s", self.cpu_s, 0.0, f64::MAX)?;
        for (field, count) in [
            ("counters", self.counters.len()),
            ("gauges", self.gauges.len()),
            ("latencies", self.latencies.len()),
            ("notes", self.notes.len()),
        ] {
            if count > MAX_METRICS_PER_SNAPSHOT {
                return Err(RuleError::Invalid(format!(
                    "{count} {field}; a snapshot carries at most {MAX_METRICS_PER_SNAPSHOT}"
                )));
            }
        }
        for (name, _) in &self.counters {
            check_len("counters", name, MAX_METRIC_NAME_LEN)?;
        }
        for (name, value) in &self.gauges {
            check_len("gauges", name, MAX_METRIC_NAME_LEN)?;
            check_f64("gauges", *value, f64::MIN, f64::MAX)?;
        }
        for latency in &self.latencies {
            check_len("latencies", &latency.name, MAX_METRIC_NAME_LEN)?;
            for value in [latency.p50_ms, latency.p99_ms, latency.max_ms] {
                check_f64("latencies", value, 0.0, f64::MAX)?;
            }
        }
        for (name, text) in &self.notes {
            check_len("notes", name, MAX_METRIC_NAME_LEN)?;
            check_len("notes", text, MAX_REASON_LEN)?;
        }
        Ok(())
    }
}

/// Largest bank current, A, either sign: every pack at the largest pack
/// current.
const MAX_BANK_CURRENT_A: f64 = MAX_CURRENT_A as f64 * MAX_BANK_PACKS as f64;

/// Checks that an `f32` field is finite and within `min..=max`.
fn check_f32(field: &'static str, value: f32, min: f64, max: f64) -> Result<(), RuleError> {
    check_f64(field, f64::from(value), min, max)
}

fn check_extreme(
    field: &'static str,
    extreme: Option<&Extreme>,
    range: (f32, f32),
) -> Result<(), RuleError> {
    match extreme {
        Some(e) => check_f32(field, e.value, f64::from(range.0), f64::from(range.1)),
        None => Ok(()),
    }
}

impl WireMessage for BankState {
    const KIND: MessageKind = MessageKind::BankState;
    const VERSION: u8 = 4;
    fn decode_older(_version: u8, payload: &[u8]) -> postcard::Result<(Self, &[u8])> {
        // Versions 1 to 3 wrote the same layout, without the overrides.
        crate::bank::take_state_v3(payload)
    }
    fn check(&self) -> Result<(), RuleError> {
        check_bank_counts(self)?;
        check_bank_readings(self)?;
        check_bank_limits(self)?;
        for pack in &self.packs {
            for share in [pack.charge, pack.discharge] {
                if let PackShare::Allowed { current_a, .. } = share {
                    check_f32("packs", current_a, 0.0, f64::from(MAX_CURRENT_A))?;
                }
            }
        }
        Ok(())
    }
}

/// The sequence, the time, and the packs listed agreeing with the counts.
fn check_bank_counts(state: &BankState) -> Result<(), RuleError> {
    check_seq("seq", state.seq)?;
    if !(0..=MAX_TIMESTAMP_MS).contains(&state.timestamp_ms) {
        return Err(RuleError::OutOfRange {
            field: "timestamp_ms",
            detail: format!(
                "{} is not within 0..={MAX_TIMESTAMP_MS}",
                state.timestamp_ms
            ),
        });
    }
    if state.packs.len() > MAX_BANK_PACKS {
        return Err(RuleError::Invalid(format!(
            "{} packs; a bank holds at most {MAX_BANK_PACKS}",
            state.packs.len()
        )));
    }
    let listed = state.packs.len();
    let online = state.packs.iter().filter(|p| p.counted).count();
    if usize::try_from(state.packs_total).ok() != Some(listed)
        || usize::try_from(state.packs_online).ok() != Some(online)
    {
        return Err(RuleError::Invalid(format!(
            "{} of {} packs online, but {online} of {listed} listed",
            state.packs_online, state.packs_total
        )));
    }
    Ok(())
}

/// The bank's voltage, current, charge, health and extremes.
fn check_bank_readings(state: &BankState) -> Result<(), RuleError> {
    let volts = f64::from(MAX_PACK_VOLTAGE_V);
    check_f32("voltage_v", state.voltage_v, -volts, volts)?;
    check_f32(
        "current_a",
        state.current_a,
        -MAX_BANK_CURRENT_A,
        MAX_BANK_CURRENT_A,
    )?;
    check_f32("soc_pct", state.soc_pct, 0.0, 100.0)?;
    if let Some(soh) = state.soh_pct {
        check_f32("soh_pct", soh, 0.0, 100.0)?;
    }
    check_extreme("min_cell", state.min_cell.as_ref(), CELL_VOLTAGE_RANGE_V)?;
    check_extreme("max_cell", state.max_cell.as_ref(), CELL_VOLTAGE_RANGE_V)?;
    check_extreme(
        "min_temperature",
        state.min_temperature.as_ref(),
        TEMPERATURE_RANGE_C,
    )?;
    check_extreme(
        "max_temperature",
        state.max_temperature.as_ref(),
        TEMPERATURE_RANGE_C,
    )
}

/// The bank's charge and discharge limits, and the overrides of them.
fn check_bank_limits(state: &BankState) -> Result<(), RuleError> {
    let volts = f64::from(MAX_PACK_VOLTAGE_V);
    check_f32("charge_voltage_v", state.charge_voltage_v, 0.0, volts)?;
    check_f32("discharge_voltage_v", state.discharge_voltage_v, 0.0, volts)?;
    check_f32(
        "charge_current_a",
        state.charge_current_a,
        0.0,
        MAX_BANK_CURRENT_A,
    )?;
    check_f32(
        "discharge_current_a",
        state.discharge_current_a,
        0.0,
        MAX_BANK_CURRENT_A,
    )?;
    let o = &state.overrides;
    for (field, value, most) in [
        (
            "overrides.site_max_charge_a",
            o.site_max_charge_a,
            MAX_BANK_CURRENT_A,
        ),
        (
            "overrides.site_max_discharge_a",
            o.site_max_discharge_a,
            MAX_BANK_CURRENT_A,
        ),
        (
            "overrides.absorption_voltage_v",
            o.absorption_voltage_v,
            volts,
        ),
    ] {
        if let Some(value) = value {
            check_f32(field, value, 0.0, most)?;
        }
    }
    Ok(())
}
