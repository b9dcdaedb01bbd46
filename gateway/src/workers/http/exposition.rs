//! The Prometheus text exposition of what the HTTP worker holds: every
//! pack's latest sample, every bank's latest state and every worker's
//! latest metrics snapshot. Pure: state in, text out.
//!
//! Names follow Prometheus's conventions: base units (volts, amperes,
//! seconds, degrees Celsius as Prometheus's own exporters use them),
//! ratios 0-1, `_total` for counters. The current is positive while the
//! pack charges.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use packgate_protocol::{
    AlarmFlags, BankId, BankState, DataQuality, MetricsSnapshot, PackId, Sample,
};

/// What is exposed: the latest sample of each pack, the latest snapshot
/// of each worker instance.
#[derive(Debug, Default, Clone)]
pub struct Exposed {
    /// By pack.
    pub samples: BTreeMap<PackId, Sample>,
    /// By worker and instance.
    pub snapshots: BTreeMap<(String, String), MetricsSnapshot>,
    /// By bank: the latest state of each.
    pub banks: BTreeMap<BankId, BankState>,
}

/// The exposition being written: each family's `# HELP` and `# TYPE`
/// once, before its samples.
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }
}

/// A label value with `\`, `"` and line feeds escaped, as the format asks.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: Prometheus's spellings of the non-finite ones.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

/// A metric name from `parts`: lower case, anything but `[a-z0-9_]` as
/// `_`, so a counter name from a snapshot can never break the format.
fn metric_name(parts: &[&str]) -> String {
    let joined = parts.join("_");
    joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// One gauge family over every pack, `value` picking the pack's value (or
/// none) from its sample.
fn per_pack(
    out: &mut Out,
    exposed: &Exposed,
    name: &str,
    help: &str,
    value: impl Fn(&Sample) -> Option<f64>,
) {
    out.family(name, "gauge", help);
    for (pack, sample) in &exposed.samples {
        if let Some(v) = value(sample) {
            out.sample(name, &[("pack", pack.as_str())], v);
        }
    }
}

fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

/// A per-pack gauge family: name, help, and the pack's value (or none)
/// from its sample.
type PackFamily = (&'static str, &'static str, fn(&Sample) -> Option<f64>);

/// The gauges of one value per pack, in exposition order.
const PACK_FAMILIES: [PackFamily; 8] = [
    (
        "packgate_battery_voltage_volts",
        "Pack terminal voltage.",
        |s| Some(f64::from(s.reading.pack_voltage_v)),
    ),
    (
        "packgate_battery_current_amperes",
        "Pack current: positive while charging, negative while discharging.",
        |s| Some(f64::from(s.reading.current_a)),
    ),
    (
        "packgate_battery_state_of_charge_ratio",
        "State of charge, 0 to 1.",
        |s| Some(f64::from(s.reading.soc_pct) / 100.0),
    ),
    (
        "packgate_battery_state_of_health_ratio",
        "State of health, 0 to 1; absent where the BMS does not report it.",
        |s| s.reading.soh_pct.map(|soh| f64::from(soh) / 100.0),
    ),
    (
        "packgate_battery_charge_enabled",
        "1 while the BMS allows charging.",
        |s| Some(flag(s.reading.charge_enabled)),
    ),
    (
        "packgate_battery_discharge_enabled",
        "1 while the BMS allows discharging.",
        |s| Some(flag(s.reading.discharge_enabled)),
    ),
    (
        "packgate_battery_reading_fresh",
        "1 when the last sample was read in its poll; 0 when stale (the pack did not answer) or suspect (not believable).",
        |s| Some(flag(s.quality == DataQuality::Fresh)),
    ),
    (
        "packgate_last_sample_timestamp_seconds",
        "When the pack's last sample was taken, seconds since the Unix epoch.",
        |s| Some(s.timestamp_ms as f64 / 1000.0),
    ),
];

/// Every pack's values, then its sensors, cells and alarms.
fn packs(out: &mut Out, exposed: &Exposed) {
    for (name, help, value) in PACK_FAMILIES {
        per_pack(out, exposed, name, help, value);
    }
    per_pack_and_index(
        out,
        exposed,
        ("packgate_battery_temperature_celsius", "sensor"),
        "Temperature of each of the pack's sensors, from 1.",
        |s| s.reading.temperatures_c.0.as_slice(),
    );
    per_pack_and_index(
        out,
        exposed,
        ("packgate_cell_voltage_volts", "cell"),
        "Voltage of each series cell, from 1.",
        |s| s.reading.cell_voltages_v.0.as_slice(),
    );
    let name = "packgate_battery_alarm";
    out.family(
        name,
        "gauge",
        "1 while the alarm is active on the pack, 0 otherwise.",
    );
    for (pack, sample) in &exposed.samples {
        for (alarm, text) in AlarmFlags::ALL {
            let on = sample.reading.alarms.contains(*alarm);
            out.sample(name, &[("pack", pack.as_str()), ("alarm", text)], flag(on));
        }
    }
}

/// One gauge family of a value per pack and index (counted from 1, under
/// the label `index_label` of `(name, index_label)`), `values` picking
/// the pack's values from its sample.
fn per_pack_and_index(
    out: &mut Out,
    exposed: &Exposed,
    (name, index_label): (&str, &str),
    help: &str,
    values: impl Fn(&Sample) -> &[f32],
) {
    out.family(name, "gauge", help);
    for (pack, sample) in &exposed.samples {
        for (i, v) in values(sample).iter().enumerate() {
            let index = (i + 1).to_string();
            out.sample(
                name,
                &[("pack", pack.as_str()), (index_label, &index)],
                f64::from(*v),
            );
        }
    }
}

/// One instance's latency summary: median, 99th percentile and largest,
/// seconds, and the observations counted.
type Quantiles<'a> = (&'a str, [f64; 3], u64);

/// A process-wide family: name, help, and its value from a snapshot.
type ProcessFamily = (&'static str, &'static str, fn(&MetricsSnapshot) -> f64);

/// The workers' snapshots regrouped by family name across instances.
#[derive(Default)]
struct WorkerFamilies<'a> {
    counters: BTreeMap<String, Vec<(&'a str, u64)>>,
    gauges: BTreeMap<String, Vec<(&'a str, f64)>>,
    latencies: BTreeMap<String, Vec<Quantiles<'a>>>,
    process: Vec<(&'a MetricsSnapshot, &'a str)>,
}

impl<'a> WorkerFamilies<'a> {
    fn of(exposed: &'a Exposed) -> Self {
        let mut families = Self::default();
        for ((worker, instance), s) in &exposed.snapshots {
            for (name, value) in &s.counters {
                let key = metric_name(&["packgate", worker, name, "total"]);
                families
                    .counters
                    .entry(key)
                    .or_default()
                    .push((instance, *value));
            }
            for (name, value) in &s.gauges {
                let key = metric_name(&["packgate", worker, name]);
                families
                    .gauges
                    .entry(key)
                    .or_default()
                    .push((instance, *value));
            }
            for l in &s.latencies {
                let key = metric_name(&["packgate", worker, &l.name, "seconds"]);
                let quantiles = [l.p50_ms / 1e3, l.p99_ms / 1e3, l.max_ms / 1e3];
                families
                    .latencies
                    .entry(key)
                    .or_default()
                    .push((instance, quantiles, l.count));
            }
            families.process.push((s, instance));
        }
        families
    }
}

/// Each worker's counters, gauges and latency summaries, one family per
/// name across instances.
fn workers(out: &mut Out, exposed: &Exposed) {
    let families = WorkerFamilies::of(exposed);
    for (name, values) in &families.counters {
        out.family(
            name,
            "counter",
            "A worker's counter (see the README's metrics list).",
        );
        for (instance, v) in values {
            out.sample(name, &[("instance", instance)], *v as f64);
        }
    }
    for (name, values) in &families.gauges {
        out.family(
            name,
            "gauge",
            "A worker's gauge (see the README's metrics list).",
        );
        for (instance, v) in values {
            out.sample(name, &[("instance", instance)], *v);
        }
    }
    latency_summaries(out, &families.latencies);
    process_families(out, &families.process);
}

/// Each latency family as a summary: its three quantiles and its count.
fn latency_summaries(out: &mut Out, latencies: &BTreeMap<String, Vec<Quantiles<'_>>>) {
    for (name, values) in latencies {
        out.family(
            name,
            "summary",
            "A worker's latency over its last snapshot window: median, 99th percentile and (quantile 1) the largest.",
        );
        let count = format!("{name}_count");
        for (instance, [p50, p99, max], n) in values {
            for (q, v) in [("0.5", p50), ("0.99", p99), ("1", max)] {
                out.sample(name, &[("instance", instance), ("quantile", q)], *v);
            }
            out.sample(&count, &[("instance", instance)], *n as f64);
        }
    }
}

/// Each worker process's memory, CPU time and uptime.
fn process_families(out: &mut Out, process: &[(&MetricsSnapshot, &str)]) {
    let families: [ProcessFamily; 3] = [
        (
            "packgate_process_resident_memory_bytes",
            "Resident memory of the worker's process.",
            |s| s.rss_bytes as f64,
        ),
        (
            "packgate_process_cpu_seconds_total",
            "CPU time of the worker's process, user and system.",
            |s| s.cpu_s,
        ),
        (
            "packgate_worker_uptime_seconds",
            "Time since the worker started.",
            |s| s.uptime_s as f64,
        ),
    ];
    for (name, help, value) in families {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        out.family(name, kind, help);
        for (s, instance) in process {
            out.sample(
                name,
                &[("worker", &s.worker), ("instance", instance)],
                value(s),
            );
        }
    }
}

/// The whole exposition, with `packgate_build_info` first.
pub fn render(exposed: &Exposed, version: &str) -> String {
    let mut out = Out {
        text: String::with_capacity(4096 + 2048 * exposed.samples.len()),
    };
    out.family(
        "packgate_build_info",
        "gauge",
        "Always 1; the version as a label.",
    );
    out.sample("packgate_build_info", &[("version", version)], 1.0);
    packs(&mut out, exposed);
    banks(&mut out, exposed);
    workers(&mut out, exposed);
    out.text
}

/// Each bank's limits as the inverter is given them, and its totals.
fn banks(out: &mut Out, exposed: &Exposed) {
    type Value = fn(&BankState) -> f64;
    let families: [(&str, &str, Value); 8] = [
        (
            "packgate_bank_charge_voltage_limit_volts",
            "Charge voltage limit (CVL) the bank gives the inverter.",
            |b| f64::from(b.charge_voltage_v),
        ),
        (
            "packgate_bank_charge_current_limit_amperes",
            "Charge current limit (CCL) the bank gives the inverter.",
            |b| f64::from(b.charge_current_a),
        ),
        (
            "packgate_bank_discharge_current_limit_amperes",
            "Discharge current limit (DCL) the bank gives the inverter.",
            |b| f64::from(b.discharge_current_a),
        ),
        ("packgate_bank_voltage_volts", "Bank voltage.", |b| {
            f64::from(b.voltage_v)
        }),
        (
            "packgate_bank_current_amperes",
            "Bank current: positive while charging.",
            |b| f64::from(b.current_a),
        ),
        (
            "packgate_bank_state_of_charge_ratio",
            "Bank state of charge, 0 to 1.",
            |b| f64::from(b.soc_pct) / 100.0,
        ),
        (
            "packgate_bank_packs_online",
            "Packs the bank counts now.",
            |b| f64::from(b.packs_online),
        ),
        (
            "packgate_bank_stopped",
            "1 while the bank sends zero currents for a safety reason.",
            |b| flag(b.stop.is_some()),
        ),
    ];
    if exposed.banks.is_empty() {
        return;
    }
    for (name, help, value) in families {
        out.family(name, "gauge", help);
        for (bank, state) in &exposed.banks {
            out.sample(name, &[("bank", bank.as_str())], value(state));
        }
    }
}

#[cfg(test)]
#[path = "exposition_tests.rs"]
mod tests;
