//! Writing batches of samples into the `samples` table and reading a
//! pack's samples back.

use packgate_protocol::{BootId, PackId, Sample};

use super::row::{boot_id, float_array_text, read_row, seq, StoredSample};
use super::{SampleStore, StoreError};

/// What one [`SampleStore::insert_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InsertOutcome {
    /// Samples newly stored.
    pub inserted: usize,
    /// Samples already stored (same pack, boot and seq), left as they were.
    pub duplicates: usize,
}

const INSERT_SQL: &str = "INSERT OR IGNORE INTO samples (
    pack_id, boot_id, seq, timestamp_ms, stored_at_ms, quality,
    pack_voltage_v, current_a, soc_pct, soh_pct, min_cell_v, max_cell_v, max_temperature_c,
    cell_voltages_v, temperatures_c, balancing_mask, alarm_flags,
    charge_enabled, discharge_enabled, clock_trusted)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
    ?20)";

impl SampleStore {
    /// Stores a batch in one transaction. A sample whose `(pack, boot, seq)`
    /// is already stored (a redelivery) is skipped and counted as a
    /// duplicate. Every sample is checked first; an invalid one fails the
    /// whole batch with [`StoreError::InvalidSample`] and stores nothing.
    /// A batch that fails for want of room (the disk, or the file-size
    /// limit) is [`StoreError::DiskFull`], rolled back as a whole.
    pub fn insert_batch(
        &mut self,
        samples: &[Sample],
        stored_at_ms: i64,
    ) -> Result<InsertOutcome, StoreError> {
        self.insert_batch_once(samples, stored_at_ms)
            .map_err(|error| self.classify(error))
    }

    fn insert_batch_once(
        &mut self,
        samples: &[Sample],
        stored_at_ms: i64,
    ) -> Result<InsertOutcome, StoreError> {
        let mut seqs = Vec::with_capacity(samples.len());
        for sample in samples {
            seqs.push(checked_seq(sample)?);
        }
        let tx = self.conn.transaction()?;
        let mut outcome = InsertOutcome::default();
        {
            let mut stmt = tx.prepare_cached(INSERT_SQL)?;
            for (sample, seq) in samples.iter().zip(seqs) {
                let r = &sample.reading;
                let changed = stmt.execute(rusqlite::params![
                    sample.pack_id.as_str(),
                    sample.boot_id.to_string(),
                    seq,
                    sample.timestamp_ms,
                    stored_at_ms,
                    sample.quality.as_str(),
                    f64::from(r.pack_voltage_v),
                    f64::from(r.current_a),
                    f64::from(r.soc_pct),
                    r.soh_pct.map(f64::from),
                    f64::from(r.min_cell_v()),
                    f64::from(r.max_cell_v()),
                    f64::from(r.max_temperature_c()),
                    float_array_text(&r.cell_voltages_v.0),
                    float_array_text(&r.temperatures_c.0),
                    i64::from(r.balancing.0),
                    i64::from(r.alarms.0),
                    r.charge_enabled,
                    r.discharge_enabled,
                    sample.clock.is_trusted(),
                ])?;
                if changed == 0 {
                    outcome.duplicates += 1;
                } else {
                    outcome.inserted += 1;
                }
            }
        }
        tx.commit()?;
        Ok(outcome)
    }

    /// The pack's last `limit` samples, most recently stored first (by
    /// insertion order, not by the pack's clock).
    pub fn latest(&self, pack: &PackId, limit: usize) -> Result<Vec<StoredSample>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT {} FROM samples WHERE pack_id = ?1 ORDER BY id DESC LIMIT ?2",
            self.columns
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query((pack.as_str(), limit))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(read_row(row)?);
        }
        Ok(out)
    }

    /// Every stored `(boot, seq)` of the pack in insertion order; lets the
    /// end-to-end tests check for loss, duplicates and reordering.
    pub fn keys_in_insert_order(&self, pack: &PackId) -> Result<Vec<(BootId, u64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, boot_id, seq FROM samples WHERE pack_id = ?1 ORDER BY id",
        )?;
        let mut rows = stmt.query([pack.as_str()])?;
        let mut keys = Vec::new();
        while let Some(row) = rows.next()? {
            let row_id: i64 = row.get(0)?;
            keys.push((boot_id(row, row_id, 1)?, seq(row, row_id, 2)?));
        }
        Ok(keys)
    }
}

/// Validates the sample and returns its seq as SQLite's signed integer.
fn checked_seq(sample: &Sample) -> Result<i64, StoreError> {
    let invalid = |reason: String| StoreError::InvalidSample {
        msg_id: sample.msg_id(),
        reason,
    };
    sample.validate().map_err(|e| invalid(e.to_string()))?;
    i64::try_from(sample.seq).map_err(|_| invalid(format!("seq {} exceeds i64", sample.seq)))
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Instant;

    use proptest::prelude::*;
    use tempfile::TempDir;

    use packgate_protocol::sample::{
        ClockQuality, CELL_VOLTAGE_RANGE_V, MAX_CURRENT_A, MAX_PACK_VOLTAGE_V, PERCENT_RANGE,
        TEMPERATURE_RANGE_C,
    };
    use packgate_protocol::{
        AlarmFlags, BalancingState, CellVoltages, DataQuality, PackReading, Temperatures,
    };

    use super::*;

    /// A valid sample with values that vary with `seq`.
    pub(in crate::store) fn sample(pack: &str, boot: u64, seq: u64, timestamp_ms: i64) -> Sample {
        let step = seq as f32 * 0.001;
        Sample {
            pack_id: PackId::new(pack).unwrap(),
            boot_id: BootId(boot),
            seq,
            timestamp_ms,
            quality: if matches!(seq % 5, 0) {
                DataQuality::Stale
            } else {
                DataQuality::Fresh
            },
            reading: PackReading {
                pack_voltage_v: 52.8 + step,
                current_a: -12.5 + step,
                soc_pct: 71.3,
                soh_pct: Some(98.0),
                cell_voltages_v: CellVoltages(vec![3.30, 3.281 + step, 3.31, 3.29]),
                temperatures_c: Temperatures(vec![24.0, 26.5 - step]),
                balancing: BalancingState(0b0100),
                alarms: AlarmFlags::OVER_TEMPERATURE,
                charge_enabled: true,
                discharge_enabled: matches!(seq % 2, 0),
            },
            clock: if matches!(seq % 3, 0) {
                ClockQuality::Untrusted
            } else {
                ClockQuality::Trusted
            },
        }
    }

    pub(in crate::store) fn store() -> (TempDir, SampleStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SampleStore::open(&dir.path().join("samples.db")).unwrap();
        (dir, store)
    }

    fn pack(id: &str) -> PackId {
        PackId::new(id).unwrap()
    }

    #[test]
    fn reads_back_what_was_inserted_newest_first() {
        let (_dir, mut store) = store();
        let batch: Vec<Sample> = (1..=5)
            .map(|seq| sample("p1", 7, seq, 1000 * seq as i64))
            .collect();
        let outcome = store.insert_batch(&batch, 42).unwrap();
        assert_eq!(
            outcome,
            InsertOutcome {
                inserted: 5,
                duplicates: 0
            }
        );
        let latest = store.latest(&pack("p1"), 3).unwrap();
        let seqs: Vec<u64> = latest.iter().map(|s| s.sample.seq).collect();
        assert_eq!(seqs, vec![5, 4, 3]);
        assert_eq!(latest[0].sample, batch[4]);
        assert_eq!(latest[0].stored_at_ms, 42);
        assert!(store.latest(&pack("other"), 3).unwrap().is_empty());
    }

    #[test]
    fn redelivery_is_counted_as_duplicate_and_not_stored() {
        let (_dir, mut store) = store();
        let first = sample("p1", 1, 1, 10);
        let batch = vec![first.clone(), sample("p1", 1, 2, 20), first.clone()];
        let outcome = store.insert_batch(&batch, 0).unwrap();
        assert_eq!(
            outcome,
            InsertOutcome {
                inserted: 2,
                duplicates: 1
            }
        );
        // Same key from another boot or pack is a different sample.
        let others = vec![sample("p1", 2, 1, 30), sample("p2", 1, 1, 30)];
        assert_eq!(store.insert_batch(&others, 0).unwrap().inserted, 2);
        assert_eq!(store.count().unwrap(), 4);
        assert_eq!(
            store.keys_in_insert_order(&pack("p1")).unwrap(),
            vec![(BootId(1), 1), (BootId(1), 2), (BootId(2), 1)]
        );
        assert_eq!(store.pack_ids().unwrap(), vec![pack("p1"), pack("p2")]);
    }

    #[test]
    fn invalid_sample_fails_the_batch_and_stores_nothing() {
        let (_dir, mut store) = store();
        let mut bad = sample("p1", 1, 2, 0);
        bad.reading.current_a = f32::NAN;
        let err = store
            .insert_batch(&[sample("p1", 1, 1, 0), bad], 0)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidSample { ref msg_id, .. } if msg_id == "p1:0000000000000001:2")
        );
        let huge = sample("p1", 1, u64::MAX, 0);
        assert!(matches!(
            store.insert_batch(&[huge], 0),
            Err(StoreError::InvalidSample { .. })
        ));
        assert_eq!(store.count().unwrap(), 0);
    }

    #[test]
    #[ignore = "throughput check; run with --release -- --ignored"]
    fn inserts_more_than_50k_rows_per_second_in_batches_of_1000() {
        let (_dir, mut store) = store();
        let batches: Vec<Vec<Sample>> = (0..50u64)
            .map(|b| {
                (1..=1000)
                    .map(|i| sample("p1", 1, b * 1000 + i, 0))
                    .collect()
            })
            .collect();
        let started = Instant::now();
        for batch in &batches {
            assert_eq!(store.insert_batch(batch, 0).unwrap().inserted, 1000);
        }
        let rate = 50_000.0 / started.elapsed().as_secs_f64();
        eprintln!("{rate:.0} rows/s");
        assert!(rate > 50_000.0, "{rate:.0} rows/s");
    }

    /// Any physically possible value in `min..=max`, the edges included.
    fn within((min, max): (f32, f32)) -> impl Strategy<Value = f32> {
        prop_oneof![Just(min), Just(max), min..=max]
    }

    /// Any physically possible value of magnitude at most `max`.
    fn physical(max: f32) -> impl Strategy<Value = f32> {
        within((-max, max))
    }

    fn valid_sample() -> impl Strategy<Value = Sample> {
        (
            "[a-zA-Z0-9_-]{1,64}",
            any::<u64>(),
            1..=i64::MAX as u64,
            0..=packgate_protocol::limits::MAX_TIMESTAMP_MS,
            any::<bool>(),
            (
                physical(MAX_PACK_VOLTAGE_V),
                physical(MAX_CURRENT_A),
                within(PERCENT_RANGE),
                proptest::option::of(within(PERCENT_RANGE)),
            ),
            proptest::collection::vec(within(CELL_VOLTAGE_RANGE_V), 1..=32),
            proptest::collection::vec(within(TEMPERATURE_RANGE_C), 1..=16),
            (any::<u32>(), any::<u32>(), any::<bool>(), any::<bool>()),
            any::<bool>(),
        )
            .prop_map(
                |(
                    pack,
                    boot,
                    seq,
                    ts,
                    stale,
                    (v, a, soc, soh),
                    cells,
                    temps,
                    (bal, alarms, chg, dsg),
                    untrusted,
                )| Sample {
                    pack_id: PackId::new(pack).unwrap(),
                    boot_id: BootId(boot),
                    seq,
                    timestamp_ms: ts,
                    quality: if stale {
                        DataQuality::Stale
                    } else {
                        DataQuality::Fresh
                    },
                    reading: PackReading {
                        pack_voltage_v: v,
                        current_a: a,
                        soc_pct: soc,
                        soh_pct: soh,
                        cell_voltages_v: CellVoltages(cells),
                        temperatures_c: Temperatures(temps),
                        balancing: BalancingState(bal),
                        alarms: AlarmFlags(alarms),
                        charge_enabled: chg,
                        discharge_enabled: dsg,
                    },
                    clock: if untrusted {
                        ClockQuality::Untrusted
                    } else {
                        ClockQuality::Trusted
                    },
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_valid_samples_round_trip_and_dedupe(
            batch in proptest::collection::vec(valid_sample(), 1..20),
            stored_at_ms in any::<i64>(),
        ) {
            let (_dir, mut store) = store();
            let first = store.insert_batch(&batch, stored_at_ms).unwrap();
            // Generated keys may collide; what is stored is the first of each key.
            let mut expected: Vec<&Sample> = Vec::new();
            for s in &batch {
                if !expected.iter().any(|e| e.pack_id == s.pack_id && e.boot_id == s.boot_id && e.seq == s.seq) {
                    expected.push(s);
                }
            }
            prop_assert_eq!(first.inserted, expected.len());
            prop_assert_eq!(first.duplicates, batch.len() - expected.len());
            let mut read = Vec::new();
            for id in store.pack_ids().unwrap() {
                read.extend(store.latest(&id, usize::MAX).unwrap());
            }
            prop_assert_eq!(read.len(), expected.len());
            for s in &expected {
                let found = read.iter().find(|r| &r.sample == *s);
                prop_assert!(found.is_some(), "not read back: {:?}", s);
                prop_assert_eq!(found.map(|r| r.stored_at_ms), Some(stored_at_ms));
            }
            let again = store.insert_batch(&batch, stored_at_ms + 1).unwrap();
            prop_assert_eq!(again, InsertOutcome { inserted: 0, duplicates: batch.len() });
            prop_assert_eq!(store.count().unwrap(), expected.len() as u64);
        }
    }
}
