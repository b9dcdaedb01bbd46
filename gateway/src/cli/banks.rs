//! How a bank's state reads on a terminal: one line for `watch`, a block
//! for `status` (packs online, SoC, volts and amperes, the limits with the
//! stage and what limits them, the extremes, which packs are out and why),
//! and rows for `query banks`. Pure: state in, text out.

use std::io::{self, Write};

use packgate_protocol::{
    BankState, Derating, Extreme, PackShare, ABSORPTION_VOLTAGE_V, SITE_MAX_CHARGE_A,
    SITE_MAX_DISCHARGE_A,
};

use super::render::{iso8601_utc_ms, OutputFormat};
use super::status::format_age;
use crate::store::StoredBankState;

fn derating(d: Derating) -> &'static str {
    match d {
        Derating::None => "ratings or site",
        Derating::CellVoltage => "cell voltage",
        Derating::Temperature => "temperature",
        Derating::StateOfCharge => "state of charge",
    }
}

fn extreme(e: Option<&Extreme>, digits: usize, unit: &str, what: &str) -> String {
    match e {
        Some(e) => format!(
            "{:.digits$}{unit} ({} {what} {})",
            e.value, e.pack_id, e.index
        ),
        None => "-".to_owned(),
    }
}

/// The one line of `watch`: packs online, V, A, SoC, the limits, the age
/// of the state and, when stopped, why.
pub fn bank_line(state: &BankState, age_ms: i64) -> String {
    let stop = state
        .stop
        .map(|s| format!("  STOPPED: {}", s.describe()))
        .unwrap_or_default();
    let alarms = if state.alarms.is_empty() {
        String::new()
    } else {
        format!("  ALARM {}", state.alarms.names().join(","))
    };
    format!(
        "bank {:<11} {}/{} packs {:>7.2} V {:>8.2} A  SoC {:>5.1} %  CVL {:.1} V  CCL {:.1} A  DCL {:.1} A  age {}{stop}{alarms}",
        state.bank_id.as_str(),
        state.packs_online,
        state.packs_total,
        state.voltage_v,
        state.current_a,
        state.soc_pct,
        state.charge_voltage_v,
        state.charge_current_a,
        state.discharge_current_a,
        format_age(age_ms),
    )
}

/// Why a pack takes no part in one direction, if it does not.
fn out_because(share: PackShare) -> Option<String> {
    match share {
        PackShare::Allowed { .. } => None,
        PackShare::NotCounted => Some("not counted".to_owned()),
        PackShare::SwitchOpen => Some("switch open".to_owned()),
        PackShare::Alarm(alarms) => Some(alarms.names().join(",")),
    }
}

/// The site limits lowered by commands, if any: `site limits lowered by
/// command: site_max_charge_a 40.0 A, ...`.
fn lowered_line(state: &BankState) -> Option<String> {
    let o = &state.overrides;
    let parts: Vec<String> = [
        (SITE_MAX_CHARGE_A, o.site_max_charge_a, "A"),
        (SITE_MAX_DISCHARGE_A, o.site_max_discharge_a, "A"),
        (ABSORPTION_VOLTAGE_V, o.absorption_voltage_v, "V"),
    ]
    .into_iter()
    .filter_map(|(name, value, unit)| value.map(|v| format!("{name} {v:.1} {unit}")))
    .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "{:16} site limits lowered by command: {}",
            "",
            parts.join(", ")
        )
    })
}

/// The block of `status`, one line each: the totals, the limits with what
/// limits them, the extremes, the packs that are out and why, a stop.
pub fn bank_block(state: &BankState, age_ms: i64) -> Vec<String> {
    let soh = state
        .soh_pct
        .map(|soh| format!("  SoH {soh:.1} %"))
        .unwrap_or_default();
    let mut lines = vec![
        format!(
            "{:<16} {}/{} packs online  SoC {:.1} % (weighted: {}){soh}  {:.2} V  {:.2} A  state {} ago (seq {})",
            state.bank_id.as_str(),
            state.packs_online,
            state.packs_total,
            state.soc_pct,
            state.soc_weighting.as_str(),
            state.voltage_v,
            state.current_a,
            format_age(age_ms),
            state.seq,
        ),
        format!(
            "{:16} CVL {:.1} V ({})  CCL {:.1} A (limited by {})  DCL {:.1} A (limited by {})",
            "",
            state.charge_voltage_v,
            state.stage.as_str(),
            state.charge_current_a,
            derating(state.charge_derating),
            state.discharge_current_a,
            derating(state.discharge_derating),
        ),
        format!(
            "{:16} lowest cell {}  highest cell {}  hottest {}",
            "",
            extreme(state.min_cell.as_ref(), 3, " V", "cell"),
            extreme(state.max_cell.as_ref(), 3, " V", "cell"),
            extreme(state.max_temperature.as_ref(), 1, " °C", "sensor"),
        ),
    ];
    if let Some(line) = lowered_line(state) {
        lines.push(line);
    }
    let mut out = Vec::new();
    for pack in &state.packs {
        let charge = out_because(pack.charge);
        let discharge = out_because(pack.discharge);
        let why = match (charge, discharge) {
            (None, None) => continue,
            (Some(c), Some(d)) if c == d => c,
            (Some(c), Some(d)) => format!("charge: {c}; discharge: {d}"),
            (Some(c), None) => format!("charge: {c}"),
            (None, Some(d)) => format!("discharge: {d}"),
        };
        out.push(format!("{} ({why})", pack.pack_id));
    }
    if !out.is_empty() {
        lines.push(format!("{:16} out: {}", "", out.join(", ")));
    }
    if !state.alarms.is_empty() {
        lines.push(format!(
            "{:16} alarms: {}",
            "",
            state.alarms.names().join(", ")
        ));
    }
    if let Some(stop) = state.stop {
        lines.push(format!(
            "{:16} STOPPED: {}: charge and discharge currents are 0",
            "",
            stop.describe()
        ));
    }
    lines
}

/// The columns of `query banks`, table and CSV alike.
const COLUMNS: [&str; 12] = [
    "time",
    "seq",
    "online",
    "V",
    "A",
    "SoC %",
    "CVL V",
    "stage",
    "CCL A",
    "DCL A",
    "limited by",
    "stop",
];

fn cells(state: &BankState) -> [String; 12] {
    [
        iso8601_utc_ms(state.timestamp_ms),
        state.seq.to_string(),
        format!("{}/{}", state.packs_online, state.packs_total),
        format!("{:.2}", state.voltage_v),
        format!("{:.2}", state.current_a),
        format!("{:.1}", state.soc_pct),
        format!("{:.1}", state.charge_voltage_v),
        state.stage.as_str().to_owned(),
        format!("{:.1}", state.charge_current_a),
        format!("{:.1}", state.discharge_current_a),
        format!(
            "{}/{}",
            state.charge_derating.as_str(),
            state.discharge_derating.as_str()
        ),
        state.stop.map_or_else(|| "-".to_owned(), |s| s.describe()),
    ]
}

/// A CSV field, quoted when it holds a comma, a quote or a line end.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Writes stored bank states to `out` in `format`, in the order given:
/// an aligned table, CSV with the same columns, or JSON Lines with every
/// field of the state (each pack's part too).
pub fn write_bank_states(
    out: &mut dyn Write,
    rows: &[StoredBankState],
    format: OutputFormat,
) -> io::Result<()> {
    match format {
        OutputFormat::Json => {
            for row in rows {
                let json = serde_json::json!({
                    "stored_at_ms": row.stored_at_ms,
                    "state": row.state,
                });
                writeln!(out, "{json}")?;
            }
        }
        OutputFormat::Csv => {
            writeln!(out, "{}", COLUMNS.join(","))?;
            for row in rows {
                let line: Vec<String> = cells(&row.state).iter().map(|c| csv_field(c)).collect();
                writeln!(out, "{}", line.join(","))?;
            }
        }
        OutputFormat::Table => {
            let table: Vec<[String; 12]> = rows.iter().map(|r| cells(&r.state)).collect();
            let widths: Vec<usize> = (0..COLUMNS.len())
                .map(|i| {
                    table
                        .iter()
                        .map(|cells| cells[i].chars().count())
                        .chain([COLUMNS[i].chars().count()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: Vec<&str>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(cell, width)| format!("{cell:<width$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            };
            writeln!(out, "{}", line(COLUMNS.to_vec()))?;
            for cells in &table {
                writeln!(out, "{}", line(cells.iter().map(String::as_str).collect()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use packgate_protocol::{
        AlarmFlags, BankId, BankPack, BankStop, BootId, ChargeStage, PackId, SiteOverrides,
        SocWeighting,
    };

    use super::*;

    fn state() -> BankState {
        let pack = |name: &str| PackId::new(name).unwrap();
        let allowed = PackShare::Allowed {
            current_a: 50.0,
            derating: Derating::CellVoltage,
        };
        let entry = |name: &str, charge, discharge, counted| BankPack {
            pack_id: pack(name),
            sample_seq: 1,
            counted,
            alarms: AlarmFlags::NONE,
            charge,
            discharge,
        };
        BankState {
            bank_id: BankId::new("house").unwrap(),
            boot_id: BootId(1),
            seq: 42,
            timestamp_ms: 0,
            packs_total: 3,
            packs_online: 2,
            voltage_v: 53.1,
            current_a: -42.5,
            soc_pct: 61.5,
            soc_weighting: SocWeighting::Capacity,
            soh_pct: Some(97.0),
            min_cell: Some(Extreme {
                pack_id: pack("p1"),
                index: 3,
                value: 3.281,
            }),
            max_cell: Some(Extreme {
                pack_id: pack("p2"),
                index: 8,
                value: 3.55,
            }),
            min_temperature: None,
            max_temperature: Some(Extreme {
                pack_id: pack("p2"),
                index: 1,
                value: 31.5,
            }),
            alarms: AlarmFlags::OVER_TEMPERATURE,
            charge_voltage_v: 55.2,
            charge_current_a: 100.0,
            discharge_current_a: 200.0,
            discharge_voltage_v: 48.0,
            stage: ChargeStage::Absorption,
            charge_derating: Derating::CellVoltage,
            discharge_derating: Derating::None,
            stop: None,
            packs: vec![
                entry("p1", allowed, allowed, true),
                entry(
                    "p2",
                    PackShare::Alarm(AlarmFlags::OVER_TEMPERATURE),
                    PackShare::SwitchOpen,
                    true,
                ),
                entry("p3", PackShare::NotCounted, PackShare::NotCounted, false),
            ],
            overrides: SiteOverrides::default(),
        }
    }

    #[test]
    fn the_status_block_says_the_limits_what_limits_them_and_who_is_out() {
        let text = bank_block(&state(), 400).join("\n");
        for part in [
            "house",
            "2/3 packs online",
            "SoC 61.5 % (weighted: capacity)",
            "53.10 V",
            "-42.50 A",
            "state 0.4 s ago (seq 42)",
            "CVL 55.2 V (absorption)",
            "CCL 100.0 A (limited by cell voltage)",
            "DCL 200.0 A (limited by ratings or site)",
            "lowest cell 3.281 V (p1 cell 3)",
            "highest cell 3.550 V (p2 cell 8)",
            "hottest 31.5 °C (p2 sensor 1)",
            "out: p2 (charge: over_temperature; discharge: switch open), p3 (not counted)",
            "alarms: over_temperature",
        ] {
            assert!(text.contains(part), "{part:?} missing from\n{text}");
        }
        assert!(!text.contains("STOPPED"));
        assert!(!text.contains("lowered"));
        let mut lowered = state();
        lowered.overrides.site_max_charge_a = Some(40.0);
        lowered.overrides.absorption_voltage_v = Some(54.0);
        let text = bank_block(&lowered, 400).join("\n");
        assert!(
            text.contains(
                "site limits lowered by command: site_max_charge_a 40.0 A, absorption_voltage_v 54.0 V"
            ),
            "{text}"
        );
        let mut stopped = state();
        stopped.stop = Some(BankStop::TooFewPacks {
            counted: 1,
            required: 2,
        });
        let text = bank_block(&stopped, 0).join("\n");
        assert!(
            text.contains(
                "STOPPED: 1 packs online, 2 required: charge and discharge currents are 0"
            ),
            "{text}"
        );
    }

    #[test]
    fn query_rows_read_as_a_table_csv_and_json() {
        let mut stopped = state();
        stopped.seq = 43;
        stopped.stop = Some(BankStop::NoFreshData);
        let rows = [
            StoredBankState {
                state: stopped,
                stored_at_ms: 5,
            },
            StoredBankState {
                state: state(),
                stored_at_ms: 4,
            },
        ];
        let text = |format| {
            let mut out = Vec::new();
            write_bank_states(&mut out, &rows, format).unwrap();
            String::from_utf8(out).unwrap()
        };
        let table = text(OutputFormat::Table);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("time "), "{table}");
        assert!(lines[1].contains("1970-01-01T00:00:00.000Z  43"), "{table}");
        assert!(lines[1].ends_with("no pack has fresh data"), "{table}");
        assert!(
            lines[2].contains("2/3") && lines[2].contains("100.0  200.0"),
            "{table}"
        );
        assert!(lines[2].contains("cell_voltage/none"), "{table}");
        let csv = text(OutputFormat::Csv);
        assert_eq!(
            csv.lines().nth(2),
            Some("1970-01-01T00:00:00.000Z,42,2/3,53.10,-42.50,61.5,55.2,absorption,100.0,200.0,cell_voltage/none,-")
        );
        let json = text(OutputFormat::Json);
        let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
        assert_eq!(first["stored_at_ms"], 5);
        assert_eq!(first["state"]["bank_id"], "house");
        assert_eq!(first["state"]["charge_current_a"], 100.0);
        assert_eq!(first["state"]["packs"][2]["pack_id"], "p3");
    }

    #[test]
    fn the_watch_line_is_one_line_with_the_limits() {
        let line = bank_line(&state(), 1500);
        assert!(!line.contains('\n'));
        for part in [
            "bank house",
            "2/3 packs",
            "53.10 V",
            "SoC  61.5 %",
            "CCL 100.0 A",
            "DCL 200.0 A",
            "age 1.5 s",
            "ALARM over_temperature",
        ] {
            assert!(line.contains(part), "{part:?} missing from {line:?}");
        }
        let mut stopped = state();
        stopped.stop = Some(BankStop::NoFreshData);
        assert!(bank_line(&stopped, 0).contains("STOPPED: no pack has fresh data"));
    }
}
