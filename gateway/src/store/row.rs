//! One `samples` row <-> one [`Sample`]: the column list and the checked
//! conversions back.
//!
//! Every `f32` is stored so it reads back bit-for-bit: scalars as REAL
//! (`f32 -> f64` is exact), arrays as JSON text written with the shortest
//! decimal that round-trips and parsed straight back to `f32`.

use packgate_protocol::sample::ClockQuality;
use packgate_protocol::{
    AlarmFlags, BalancingState, BootId, CellVoltages, DataQuality, PackId, PackReading, Sample,
    Temperatures,
};
use rusqlite::types::FromSql;
use rusqlite::Row;

use super::StoreError;

/// A sample as read back, with when the store received it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    /// The sample, equal to the one inserted.
    pub sample: Sample,
    /// When it was stored, milliseconds since the Unix epoch.
    pub stored_at_ms: i64,
}

/// The columns [`read_row`] expects, in its order.
pub(super) const SELECT_COLUMNS: &str =
    "id, pack_id, boot_id, seq, timestamp_ms, stored_at_ms, quality,
    pack_voltage_v, current_a, soc_pct, soh_pct, cell_voltages_v, temperatures_c,
    balancing_mask, alarm_flags, charge_enabled, discharge_enabled, clock_trusted";

/// [`SELECT_COLUMNS`] for a version 1 file opened read-only (not migrated
/// yet): its samples were not judged, so they read as clock-trusted.
pub(super) const SELECT_COLUMNS_V1: &str =
    "id, pack_id, boot_id, seq, timestamp_ms, stored_at_ms, quality,
    pack_voltage_v, current_a, soc_pct, soh_pct, cell_voltages_v, temperatures_c,
    balancing_mask, alarm_flags, charge_enabled, discharge_enabled, 1";

/// `[v1,v2,...]`: a JSON array with each value's shortest round-trip decimal.
/// Only finite values reach here (the sample was validated).
pub(super) fn float_array_text(values: &[f32]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(2 + values.len() * 8);
    text.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(text, "{v}");
    }
    text.push(']');
    text
}

/// Parses a JSON array of numbers into `f32`s, rounding each decimal once
/// (straight to `f32`) so what [`float_array_text`] wrote reads back exactly.
fn parse_float_array(text: &str) -> Result<Vec<f32>, String> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("{text:?} is not a JSON array"))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|item| {
            let item = item.trim();
            match item.parse::<f32>() {
                Ok(v) if v.is_finite() && !item.starts_with('+') => Ok(v),
                _ => Err(format!("{item:?} is not a finite JSON number")),
            }
        })
        .collect()
}

/// Reads column `idx`, turning a NULL or a wrong type into [`StoreError::Corrupt`].
fn get<T: FromSql>(
    row: &Row<'_>,
    row_id: i64,
    idx: usize,
    column: &'static str,
) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        row_id,
        column,
        reason,
    };
    row.get::<_, Option<T>>(idx)
        .map_err(|e| corrupt(e.to_string()))?
        .ok_or_else(|| corrupt("NULL".to_owned()))
}

/// A nullable REAL column: NULL is an absent value (a state of health
/// the pack does not report), anything else must be a number.
fn optional_real(
    row: &Row<'_>,
    row_id: i64,
    idx: usize,
    column: &'static str,
) -> Result<Option<f32>, StoreError> {
    row.get::<_, Option<f64>>(idx)
        .map(|value| value.map(|v| v as f32))
        .map_err(|e| StoreError::Corrupt {
            row_id,
            column,
            reason: e.to_string(),
        })
}

fn real(row: &Row<'_>, row_id: i64, idx: usize, column: &'static str) -> Result<f32, StoreError> {
    // f64 -> f32 is exact for every value this store wrote.
    Ok(get::<f64>(row, row_id, idx, column)? as f32)
}

fn floats(
    row: &Row<'_>,
    row_id: i64,
    idx: usize,
    column: &'static str,
) -> Result<Vec<f32>, StoreError> {
    let text: String = get(row, row_id, idx, column)?;
    parse_float_array(&text).map_err(|reason| StoreError::Corrupt {
        row_id,
        column,
        reason,
    })
}

fn flags(row: &Row<'_>, row_id: i64, idx: usize, column: &'static str) -> Result<u32, StoreError> {
    let raw: i64 = get(row, row_id, idx, column)?;
    u32::try_from(raw).map_err(|_| StoreError::Corrupt {
        row_id,
        column,
        reason: format!("{raw} is not a 32-bit mask"),
    })
}

pub(super) fn boot_id(row: &Row<'_>, row_id: i64, idx: usize) -> Result<BootId, StoreError> {
    let text: String = get(row, row_id, idx, "boot_id")?;
    text.parse().map_err(|_| StoreError::Corrupt {
        row_id,
        column: "boot_id",
        reason: format!("{text:?} is not 16 hex digits"),
    })
}

pub(super) fn seq(row: &Row<'_>, row_id: i64, idx: usize) -> Result<u64, StoreError> {
    let raw: i64 = get(row, row_id, idx, "seq")?;
    u64::try_from(raw).map_err(|_| StoreError::Corrupt {
        row_id,
        column: "seq",
        reason: format!("{raw} is negative"),
    })
}

/// Rebuilds a stored sample from a row selected with [`SELECT_COLUMNS`].
pub(super) fn read_row(row: &Row<'_>) -> Result<StoredSample, StoreError> {
    let row_id: i64 = row.get(0)?;
    let pack_text: String = get(row, row_id, 1, "pack_id")?;
    let pack_id = PackId::new(pack_text).map_err(|e| StoreError::Corrupt {
        row_id,
        column: "pack_id",
        reason: e.to_string(),
    })?;
    let quality_text: String = get(row, row_id, 6, "quality")?;
    let quality = match quality_text.as_str() {
        "fresh" => DataQuality::Fresh,
        "stale" => DataQuality::Stale,
        "suspect" => DataQuality::Suspect,
        other => {
            return Err(StoreError::Corrupt {
                row_id,
                column: "quality",
                reason: format!("{other:?} is not fresh, stale or suspect"),
            })
        }
    };
    let reading = PackReading {
        pack_voltage_v: real(row, row_id, 7, "pack_voltage_v")?,
        current_a: real(row, row_id, 8, "current_a")?,
        soc_pct: real(row, row_id, 9, "soc_pct")?,
        soh_pct: optional_real(row, row_id, 10, "soh_pct")?,
        cell_voltages_v: CellVoltages(floats(row, row_id, 11, "cell_voltages_v")?),
        temperatures_c: Temperatures(floats(row, row_id, 12, "temperatures_c")?),
        balancing: BalancingState(flags(row, row_id, 13, "balancing_mask")?),
        alarms: AlarmFlags(flags(row, row_id, 14, "alarm_flags")?),
        charge_enabled: get(row, row_id, 15, "charge_enabled")?,
        discharge_enabled: get(row, row_id, 16, "discharge_enabled")?,
    };
    let clock = match get::<i64>(row, row_id, 17, "clock_trusted")? {
        1 => ClockQuality::Trusted,
        0 => ClockQuality::Untrusted,
        other => {
            return Err(StoreError::Corrupt {
                row_id,
                column: "clock_trusted",
                reason: format!("{other} is neither 0 nor 1"),
            })
        }
    };
    Ok(StoredSample {
        sample: Sample {
            pack_id,
            boot_id: boot_id(row, row_id, 2)?,
            seq: seq(row, row_id, 3)?,
            timestamp_ms: get(row, row_id, 4, "timestamp_ms")?,
            quality,
            reading,
            clock,
        },
        stored_at_ms: get(row, row_id, 5, "stored_at_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::samples::tests::{sample, store};
    use super::*;

    #[test]
    fn corrupt_columns_are_errors_not_panics() {
        let (_dir, mut store) = store();
        store.insert_batch(&[sample("p1", 1, 1, 0)], 0).unwrap();
        let cases = [
            ("cell_voltages_v = '[3.3,'", "cell_voltages_v"),
            ("cell_voltages_v = '[3.3,null]'", "cell_voltages_v"),
            ("temperatures_c = 'oops'", "temperatures_c"),
            ("temperatures_c = NULL", "temperatures_c"),
            ("quality = 'odd'", "quality"),
            ("boot_id = 'xyz'", "boot_id"),
            ("alarm_flags = -1", "alarm_flags"),
            ("soc_pct = 'text'", "soc_pct"),
            ("clock_trusted = 2", "clock_trusted"),
        ];
        for (assignment, expected) in cases {
            let tx = store.conn.transaction().unwrap();
            tx.execute_batch(&format!("UPDATE samples SET {assignment}"))
                .unwrap();
            let err = store_latest_err(&tx);
            assert!(
                matches!(err, StoreError::Corrupt { column, .. } if column == expected),
                "{assignment}: {err}"
            );
            drop(tx); // rolls back
        }
        assert_eq!(
            store.latest(&PackId::new("p1").unwrap(), 1).unwrap().len(),
            1
        );
    }

    fn store_latest_err(conn: &rusqlite::Connection) -> StoreError {
        let sql = format!("SELECT {SELECT_COLUMNS} FROM samples");
        let mut stmt = conn.prepare(&sql).unwrap();
        let mut rows = stmt.query([]).unwrap();
        let row = rows.next().unwrap().unwrap();
        read_row(row).unwrap_err()
    }

    #[test]
    fn float_arrays_are_json_and_exact() {
        let values = [3.3f32, -0.0, 1e-7, 3.4e38, f32::MIN_POSITIVE, 0.1];
        let text = float_array_text(&values);
        let via_json: Vec<f64> = serde_json::from_str(&text).unwrap();
        assert_eq!(via_json.len(), values.len());
        assert_eq!(parse_float_array(&text).unwrap(), values);
        assert_eq!(parse_float_array(" [ ] ").unwrap(), Vec::<f32>::new());
        assert_eq!(parse_float_array("[1e-3, 2]").unwrap(), vec![0.001, 2.0]);
        assert!(parse_float_array("[inf]").is_err());
        assert!(parse_float_array("3.3").is_err());
    }
}
