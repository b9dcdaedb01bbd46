//! How stored samples are written out (`packgate query samples`, the web
//! page's downloads): an aligned table for
//! people, JSON Lines and CSV for other tools.

use std::io::{self, Write};

use serde::Serialize;

use crate::store::StoredSample;
pub use crate::text::iso8601_utc_ms;

/// Output format of `packgate query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns with a header, for a terminal.
    Table,
    /// One JSON object per line (JSON Lines) with every field.
    Json,
    /// A header and one row per sample (RFC 4180 quoting, `\n` line ends).
    Csv,
}

/// Writes `rows` to `out` in `format`, in the order given.
pub fn write_samples(
    out: &mut dyn Write,
    rows: &[StoredSample],
    format: OutputFormat,
) -> io::Result<()> {
    match format {
        OutputFormat::Table => write_table(out, rows),
        OutputFormat::Json => write_json_lines(out, rows),
        OutputFormat::Csv => write_csv(out, rows),
    }
}

/// Active alarm names joined by ',', or '-' when there is none.
fn alarm_cell(row: &StoredSample) -> String {
    let names = row.sample.reading.alarms.names();
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(",")
    }
}

fn yes_no(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "no"
    }
}

/// Columns of the table.
const TABLE_COLUMNS: usize = 13;

const TABLE_HEADER: [&str; TABLE_COLUMNS] = [
    "time",
    "seq",
    "quality",
    "clock",
    "V",
    "A",
    "SoC %",
    "min cell V",
    "max cell V",
    "max °C",
    "alarms",
    "chg",
    "dsg",
];

/// Columns whose values are numbers, aligned to the right.
const TABLE_NUMERIC: [bool; TABLE_COLUMNS] = [
    false, true, false, false, true, true, true, true, true, true, false, false, false,
];

fn table_cells(row: &StoredSample) -> [String; TABLE_COLUMNS] {
    let s = &row.sample;
    let r = &s.reading;
    [
        iso8601_utc_ms(s.timestamp_ms),
        s.seq.to_string(),
        s.quality.as_str().to_owned(),
        s.clock.as_str().to_owned(),
        format!("{:.2}", r.pack_voltage_v),
        format!("{:.2}", r.current_a),
        format!("{:.1}", r.soc_pct),
        format!("{:.3}", r.min_cell_v()),
        format!("{:.3}", r.max_cell_v()),
        format!("{:.1}", r.max_temperature_c()),
        alarm_cell(row),
        yes_no(r.charge_enabled).to_owned(),
        yes_no(r.discharge_enabled).to_owned(),
    ]
}

fn write_table(out: &mut dyn Write, rows: &[StoredSample]) -> io::Result<()> {
    let header = TABLE_HEADER.map(str::to_owned);
    let body: Vec<[String; TABLE_COLUMNS]> = rows.iter().map(table_cells).collect();
    let mut widths = [0usize; TABLE_COLUMNS];
    for line in std::iter::once(&header).chain(&body) {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for line in std::iter::once(&header).chain(&body) {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = " ".repeat(widths[i].saturating_sub(cell.chars().count()));
            if TABLE_NUMERIC[i] {
                text.push_str(&pad);
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&pad);
            }
        }
        writeln!(out, "{}", text.trim_end())?;
    }
    Ok(())
}

/// One JSON Lines record; field order is the output order.
#[derive(Serialize)]
struct JsonRow<'a> {
    pack_id: &'a str,
    boot_id: String,
    seq: u64,
    timestamp_ms: i64,
    time: String,
    stored_at_ms: i64,
    quality: &'static str,
    clock_trusted: bool,
    pack_voltage_v: f32,
    current_a: f32,
    soc_pct: f32,
    soh_pct: Option<f32>,
    min_cell_v: f32,
    max_cell_v: f32,
    max_temperature_c: f32,
    cell_voltages_v: &'a [f32],
    temperatures_c: &'a [f32],
    balancing_mask: u32,
    alarm_flags: u32,
    alarms: Vec<String>,
    charge_enabled: bool,
    discharge_enabled: bool,
}

fn write_json_lines(out: &mut dyn Write, rows: &[StoredSample]) -> io::Result<()> {
    for row in rows {
        let s = &row.sample;
        let r = &s.reading;
        let record = JsonRow {
            pack_id: s.pack_id.as_str(),
            boot_id: s.boot_id.to_string(),
            seq: s.seq,
            timestamp_ms: s.timestamp_ms,
            time: iso8601_utc_ms(s.timestamp_ms),
            stored_at_ms: row.stored_at_ms,
            quality: s.quality.as_str(),
            clock_trusted: s.clock.is_trusted(),
            pack_voltage_v: r.pack_voltage_v,
            current_a: r.current_a,
            soc_pct: r.soc_pct,
            soh_pct: r.soh_pct,
            min_cell_v: r.min_cell_v(),
            max_cell_v: r.max_cell_v(),
            max_temperature_c: r.max_temperature_c(),
            cell_voltages_v: &r.cell_voltages_v.0,
            temperatures_c: &r.temperatures_c.0,
            balancing_mask: r.balancing.0,
            alarm_flags: r.alarms.0,
            alarms: r.alarms.names(),
            charge_enabled: r.charge_enabled,
            discharge_enabled: r.discharge_enabled,
        };
        serde_json::to_writer(&mut *out, &record)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

const CSV_HEADER: &str = "time,timestamp_ms,pack_id,boot_id,seq,quality,pack_voltage_v,\
current_a,soc_pct,soh_pct,min_cell_v,max_cell_v,max_temperature_c,cell_voltages_v,\
temperatures_c,balancing_mask,alarms,charge_enabled,discharge_enabled,stored_at_ms,\
clock_trusted";

/// Quotes a CSV field when it holds a comma, a quote or a line break
/// (RFC 4180), doubling any quote inside.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn joined(values: &[f32]) -> String {
    values
        .iter()
        .map(f32::to_string)
        .collect::<Vec<_>>()
        .join(";")
}

fn write_csv(out: &mut dyn Write, rows: &[StoredSample]) -> io::Result<()> {
    write_csv_header(out)?;
    write_csv_rows(out, rows)
}

/// The CSV header line of [`OutputFormat::Csv`]: every column, its unit in
/// its name.
pub fn write_csv_header(out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "{CSV_HEADER}")
}

/// The CSV lines of `rows`, without the header, so a long output can be
/// written a part at a time.
pub fn write_csv_rows(out: &mut dyn Write, rows: &[StoredSample]) -> io::Result<()> {
    for row in rows {
        let s = &row.sample;
        let r = &s.reading;
        let fields = [
            iso8601_utc_ms(s.timestamp_ms),
            s.timestamp_ms.to_string(),
            s.pack_id.to_string(),
            s.boot_id.to_string(),
            s.seq.to_string(),
            s.quality.as_str().to_owned(),
            r.pack_voltage_v.to_string(),
            r.current_a.to_string(),
            r.soc_pct.to_string(),
            r.soh_pct.map_or_else(String::new, |soh| soh.to_string()),
            r.min_cell_v().to_string(),
            r.max_cell_v().to_string(),
            r.max_temperature_c().to_string(),
            joined(&r.cell_voltages_v.0),
            joined(&r.temperatures_c.0),
            r.balancing.0.to_string(),
            r.alarms.names().join(";"),
            r.charge_enabled.to_string(),
            r.discharge_enabled.to_string(),
            row.stored_at_ms.to_string(),
            s.clock.is_trusted().to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        writeln!(out, "{}", line.join(","))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use packgate_protocol::sample::ClockQuality;
    use packgate_protocol::{
        AlarmFlags, BalancingState, BootId, CellVoltages, DataQuality, PackId, PackReading, Sample,
        Temperatures,
    };

    use super::*;

    fn row() -> StoredSample {
        StoredSample {
            sample: Sample {
                pack_id: PackId::new("rack-1").unwrap(),
                boot_id: BootId(0xab),
                seq: 42,
                timestamp_ms: 951_782_400_123,
                quality: DataQuality::Fresh,
                reading: PackReading {
                    pack_voltage_v: 52.8,
                    current_a: -12.5,
                    soc_pct: 71.25,
                    soh_pct: Some(98.0),
                    cell_voltages_v: CellVoltages(vec![3.3, 3.281, 3.31]),
                    temperatures_c: Temperatures(vec![24.0, 26.5]),
                    balancing: BalancingState(0b100),
                    alarms: AlarmFlags::OVER_TEMPERATURE.union(AlarmFlags::CELL_IMBALANCE),
                    charge_enabled: true,
                    discharge_enabled: false,
                },
                clock: ClockQuality::Trusted,
            },
            stored_at_ms: 951_782_400_500,
        }
    }

    fn render(rows: &[StoredSample], format: OutputFormat) -> String {
        let mut out = Vec::new();
        write_samples(&mut out, rows, format).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn iso_time_of_known_instants() {
        assert_eq!(iso8601_utc_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_utc_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601_utc_ms(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(
            iso8601_utc_ms(1_709_251_199_001),
            "2024-02-29T23:59:59.001Z"
        );
        assert_eq!(iso8601_utc_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            iso8601_utc_ms(-86_400_000 * 365),
            "1969-01-01T00:00:00.000Z"
        );
        assert_eq!(
            iso8601_utc_ms(-2_208_988_800_000),
            "1900-01-01T00:00:00.000Z"
        );
        // Extremes do not overflow.
        assert!(iso8601_utc_ms(i64::MIN).ends_with('Z'));
        assert!(iso8601_utc_ms(i64::MAX).ends_with('Z'));
    }

    #[test]
    fn table_has_aligned_header_and_rows() {
        let mut quiet = row();
        quiet.sample.seq = 7;
        quiet.sample.quality = DataQuality::Stale;
        quiet.sample.reading.alarms = AlarmFlags::NONE;
        quiet.sample.reading.current_a = 3.0;
        quiet.sample.clock = ClockQuality::Untrusted;
        let text = render(&[row(), quiet], OutputFormat::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "time                      seq  quality  clock          V       A  SoC %  min cell V  max cell V  max °C  alarms                           chg  dsg",
                "2000-02-29T00:00:00.123Z   42  fresh    ok         52.80  -12.50   71.2       3.281       3.310    26.5  over_temperature,cell_imbalance  yes  no",
                "2000-02-29T00:00:00.123Z    7  stale    untrusted  52.80    3.00   71.2       3.281       3.310    26.5  -                                yes  no",
            ]
        );
        assert_eq!(render(&[], OutputFormat::Table).lines().count(), 1);
    }

    #[test]
    fn json_lines_carry_every_field() {
        let text = render(&[row(), row()], OutputFormat::Json);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            r#"{"pack_id":"rack-1","boot_id":"00000000000000ab","seq":42,"timestamp_ms":951782400123,"time":"2000-02-29T00:00:00.123Z","stored_at_ms":951782400500,"quality":"fresh","clock_trusted":true,"pack_voltage_v":52.8,"current_a":-12.5,"soc_pct":71.25,"soh_pct":98.0,"min_cell_v":3.281,"max_cell_v":3.31,"max_temperature_c":26.5,"cell_voltages_v":[3.3,3.281,3.31],"temperatures_c":[24.0,26.5],"balancing_mask":4,"alarm_flags":576,"alarms":["over_temperature","cell_imbalance"],"charge_enabled":true,"discharge_enabled":false}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(parsed["alarms"][1], "cell_imbalance");
        let mut untrusted = row();
        untrusted.sample.clock = ClockQuality::Untrusted;
        let text = render(&[untrusted.clone()], OutputFormat::Json);
        let parsed: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(parsed["clock_trusted"], false);
        let csv = render(&[untrusted], OutputFormat::Csv);
        assert!(csv.lines().nth(1).unwrap().ends_with(",951782400500,false"));
    }

    #[test]
    fn csv_has_header_and_quoted_rows() {
        let text = render(&[row()], OutputFormat::Csv);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "time,timestamp_ms,pack_id,boot_id,seq,quality,pack_voltage_v,current_a,soc_pct,soh_pct,min_cell_v,max_cell_v,max_temperature_c,cell_voltages_v,temperatures_c,balancing_mask,alarms,charge_enabled,discharge_enabled,stored_at_ms,clock_trusted",
                "2000-02-29T00:00:00.123Z,951782400123,rack-1,00000000000000ab,42,fresh,52.8,-12.5,71.25,98,3.281,3.31,26.5,3.3;3.281;3.31,24;26.5,4,over_temperature;cell_imbalance,true,false,951782400500,true",
            ]
        );
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
