//! The banks' states in the sample store: one `bank_states` row per
//! [`BankState`], unique on `(bank_id, boot_id, seq)` so a redelivered
//! state is never stored twice; flat columns for dashboards, and the whole
//! encoded message to read back.

use packgate_protocol::{decode, encode, BankId, BankState, Extreme};

use super::samples::InsertOutcome;
use super::{SampleStore, StoreError};

/// A bank state as read back, with when the store received it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBankState {
    /// The state, equal to the one inserted.
    pub state: BankState,
    /// When it was stored, milliseconds since the Unix epoch.
    pub stored_at_ms: i64,
}

const INSERT_SQL: &str = "INSERT OR IGNORE INTO bank_states (
    bank_id, boot_id, seq, timestamp_ms, stored_at_ms, packs_total, packs_online,
    voltage_v, current_a, soc_pct, soc_weighting, soh_pct,
    min_cell_v, min_cell_pack, max_cell_v, max_cell_pack,
    min_temperature_c, max_temperature_c, max_temperature_pack, alarm_flags,
    charge_voltage_v, charge_current_a, discharge_current_a, discharge_voltage_v,
    stage, charge_derating, discharge_derating, stop, state)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
    ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)";

fn value(extreme: Option<&Extreme>) -> Option<f64> {
    extreme.map(|e| f64::from(e.value))
}

fn holder(extreme: Option<&Extreme>) -> Option<&str> {
    extreme.map(|e| e.pack_id.as_str())
}

impl SampleStore {
    /// Stores a batch of bank states in one transaction; one already
    /// stored (a redelivery) is skipped and counted as a duplicate. A state
    /// that breaks the wire rules fails the whole batch with
    /// [`StoreError::InvalidBankState`] and stores nothing.
    pub fn insert_bank_states(
        &mut self,
        states: &[BankState],
        stored_at_ms: i64,
    ) -> Result<InsertOutcome, StoreError> {
        self.insert_bank_states_once(states, stored_at_ms)
            .map_err(|error| self.classify(error))
    }

    fn insert_bank_states_once(
        &mut self,
        states: &[BankState],
        stored_at_ms: i64,
    ) -> Result<InsertOutcome, StoreError> {
        let mut seqs = Vec::with_capacity(states.len());
        for state in states {
            let invalid = |reason: String| StoreError::InvalidBankState {
                msg_id: state.msg_id(),
                reason,
            };
            packgate_protocol::WireMessage::check(state).map_err(|e| invalid(e.to_string()))?;
            seqs.push(i64::try_from(state.seq).map_err(|_| invalid("seq exceeds i64".into()))?);
        }
        let tx = self.conn.transaction()?;
        let mut outcome = InsertOutcome::default();
        {
            let mut stmt = tx.prepare_cached(INSERT_SQL)?;
            for (s, seq) in states.iter().zip(seqs) {
                let changed = stmt.execute(rusqlite::params![
                    s.bank_id.as_str(),
                    s.boot_id.to_string(),
                    seq,
                    s.timestamp_ms,
                    stored_at_ms,
                    s.packs_total,
                    s.packs_online,
                    f64::from(s.voltage_v),
                    f64::from(s.current_a),
                    f64::from(s.soc_pct),
                    s.soc_weighting.as_str(),
                    s.soh_pct.map(f64::from),
                    value(s.min_cell.as_ref()),
                    holder(s.min_cell.as_ref()),
                    value(s.max_cell.as_ref()),
                    holder(s.max_cell.as_ref()),
                    value(s.min_temperature.as_ref()),
                    value(s.max_temperature.as_ref()),
                    holder(s.max_temperature.as_ref()),
                    i64::from(s.alarms.0),
                    f64::from(s.charge_voltage_v),
                    f64::from(s.charge_current_a),
                    f64::from(s.discharge_current_a),
                    f64::from(s.discharge_voltage_v),
                    s.stage.as_str(),
                    s.charge_derating.as_str(),
                    s.discharge_derating.as_str(),
                    s.stop.map(|stop| stop.describe()),
                    encode(s),
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

    /// The bank's last `limit` states, most recently stored first; none
    /// from a file older than the `bank_states` table.
    pub fn latest_bank_states(
        &self,
        bank: &BankId,
        limit: usize,
    ) -> Result<Vec<StoredBankState>, StoreError> {
        if !self.has_banks {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, state, stored_at_ms FROM bank_states WHERE bank_id = ?1
             ORDER BY id DESC LIMIT ?2",
        )?;
        let mut rows = stmt.query((bank.as_str(), limit))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let row_id: i64 = row.get(0)?;
            let bytes: Vec<u8> = row.get(1)?;
            let state = decode::<BankState>(&bytes).map_err(|e| StoreError::Corrupt {
                row_id,
                column: "state",
                reason: e.to_string(),
            })?;
            out.push(StoredBankState {
                state,
                stored_at_ms: row.get(2)?,
            });
        }
        Ok(out)
    }

    /// Number of stored bank states.
    pub fn bank_state_count(&self) -> Result<u64, StoreError> {
        if !self.has_banks {
            return Ok(0);
        }
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM bank_states")?
            .query_row([], |row| row.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Deletes at most `limit` bank states older than `cutoff_ms`, oldest
    /// first.
    pub(super) fn prune_bank_states(
        &mut self,
        cutoff_ms: i64,
        limit: i64,
    ) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM bank_states WHERE id IN (
                     SELECT id FROM bank_states WHERE timestamp_ms < ?1
                     ORDER BY timestamp_ms, id LIMIT ?2)",
            )?
            .execute((cutoff_ms, limit))?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use packgate_protocol::{
        AlarmFlags, BankId, BankPack, BankStop, BootId, ChargeStage, Derating, PackId, PackShare,
        SocWeighting,
    };

    use super::*;

    fn state(seq: u64, timestamp_ms: i64) -> BankState {
        let pack = PackId::new("p1").unwrap();
        BankState {
            bank_id: BankId::new("house").unwrap(),
            boot_id: BootId(5),
            seq,
            timestamp_ms,
            packs_total: 1,
            packs_online: 1,
            voltage_v: 53.0,
            current_a: -12.5,
            soc_pct: 64.0,
            soc_weighting: SocWeighting::Equal,
            soh_pct: None,
            min_cell: Some(Extreme {
                pack_id: pack.clone(),
                index: 2,
                value: 3.29,
            }),
            max_cell: None,
            min_temperature: None,
            max_temperature: None,
            alarms: AlarmFlags::CELL_IMBALANCE,
            charge_voltage_v: 55.2,
            charge_current_a: 80.0,
            discharge_current_a: 100.0,
            discharge_voltage_v: 48.0,
            stage: ChargeStage::Float,
            charge_derating: Derating::CellVoltage,
            discharge_derating: Derating::None,
            stop: None,
            packs: vec![BankPack {
                pack_id: pack,
                sample_seq: 9,
                counted: true,
                alarms: AlarmFlags::CELL_IMBALANCE,
                charge: PackShare::Allowed {
                    current_a: 80.0,
                    derating: Derating::CellVoltage,
                },
                discharge: PackShare::SwitchOpen,
            }],
            overrides: Default::default(),
        }
    }

    #[test]
    fn states_are_stored_once_read_back_whole_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.db");
        let mut store = SampleStore::open(&path).unwrap();
        let states = [state(1, 100), state(2, 200), state(3, 300)];
        let outcome = store.insert_bank_states(&states, 7).unwrap();
        assert_eq!((outcome.inserted, outcome.duplicates), (3, 0));
        let again = store.insert_bank_states(&states[1..], 8).unwrap();
        assert_eq!((again.inserted, again.duplicates), (0, 2));
        let house = BankId::new("house").unwrap();
        let read = store.latest_bank_states(&house, 2).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].state, states[2]);
        assert_eq!(read[1].stored_at_ms, 7);
        // The flat columns a dashboard reads.
        let (ccl, pack, stage): (f64, String, String) = store
            .conn
            .query_row(
                "SELECT charge_current_a, min_cell_pack, stage FROM bank_states WHERE seq = 3",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((ccl, pack.as_str(), stage.as_str()), (80.0, "p1", "float"));
        // A stopped state says why.
        let mut stopped = state(4, 400);
        stopped.stop = Some(BankStop::NoFreshData);
        store.insert_bank_states(&[stopped], 9).unwrap();
        let stop: String = store
            .conn
            .query_row("SELECT stop FROM bank_states WHERE seq = 4", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stop, "no pack has fresh data");
        // Retention takes the old ones, samples and states alike.
        assert_eq!(store.prune_older_than(250, 10).unwrap(), 2);
        assert_eq!(store.bank_state_count().unwrap(), 2);
        drop(store);
        let reader = SampleStore::open_read_only(&path).unwrap();
        assert_eq!(reader.latest_bank_states(&house, 10).unwrap().len(), 2);
    }

    #[test]
    fn a_state_breaking_the_rules_stores_nothing_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SampleStore::open(&dir.path().join("samples.db")).unwrap();
        let mut bad = state(2, 200);
        bad.charge_current_a = f32::NAN;
        let error = store
            .insert_bank_states(&[state(1, 100), bad], 1)
            .unwrap_err();
        assert!(
            matches!(error, StoreError::InvalidBankState { .. }),
            "{error}"
        );
        assert!(error.is_row_fault());
        assert_eq!(store.bank_state_count().unwrap(), 0);
    }
}
