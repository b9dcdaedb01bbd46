//! A pack's samples over a span of time, for readers beside the writer
//! (the web page): the scalar values its charts are drawn from, and pages
//! of whole samples for a CSV download. A page ends where the next begins
//! (keyset on the sample's time, then its row), so reading a long span
//! page by page never holds one read transaction open for long, and the
//! writer's WAL is checkpointed meanwhile.

use std::ops::ControlFlow;

use packgate_protocol::{DataQuality, PackId};

use super::row::{read_row, StoredSample};
use super::{SampleStore, StoreError};

/// One sample's scalar values, as a chart needs them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplePoint {
    /// When the sample was taken, ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// Pack voltage, volts.
    pub pack_voltage_v: f32,
    /// Current, amperes, positive while charging.
    pub current_a: f32,
    /// State of charge, percent.
    pub soc_pct: f32,
    /// Lowest cell, volts.
    pub min_cell_v: f32,
    /// Highest cell, volts.
    pub max_cell_v: f32,
    /// Whether the values were read in their poll.
    pub quality: DataQuality,
}

/// Where the next page of [`SampleStore::page_between`] starts: after
/// this sample's time and row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    timestamp_ms: i64,
    row_id: i64,
}

impl SampleStore {
    /// Whether the store holds any sample of `pack`.
    pub fn has_pack(&self, pack: &PackId) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM samples WHERE pack_id = ?1)")?
            .query_row([pack.as_str()], |row| row.get(0))?)
    }

    /// How many samples of `pack` were taken in `from_ms..to_ms`.
    pub fn count_between(
        &self,
        pack: &PackId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM samples
                 WHERE pack_id = ?1 AND timestamp_ms >= ?2 AND timestamp_ms < ?3",
            )?
            .query_row((pack.as_str(), from_ms, to_ms), |row| row.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Hands `visit` the scalar values of each sample of `pack` taken in
    /// `from_ms..to_ms`, oldest first, until it says to stop; returns how
    /// many it was handed. One statement, stepped row by row, so `visit`
    /// can also end a query that runs too long.
    pub fn scan_points(
        &self,
        pack: &PackId,
        from_ms: i64,
        to_ms: i64,
        mut visit: impl FnMut(SamplePoint) -> ControlFlow<()>,
    ) -> Result<u64, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, timestamp_ms, pack_voltage_v, current_a, soc_pct, min_cell_v, max_cell_v,
                    CASE quality WHEN 'fresh' THEN 0 WHEN 'suspect' THEN 2 ELSE 1 END
             FROM samples
             WHERE pack_id = ?1 AND timestamp_ms >= ?2 AND timestamp_ms < ?3
             ORDER BY timestamp_ms, id",
        )?;
        let mut rows = stmt.query((pack.as_str(), from_ms, to_ms))?;
        let mut visited = 0;
        while let Some(row) = rows.next()? {
            let row_id: i64 = row.get(0)?;
            let real = |idx: usize, column: &'static str| -> Result<f32, StoreError> {
                row.get::<_, f64>(idx)
                    .map(|v| v as f32)
                    .map_err(|e| StoreError::Corrupt {
                        row_id,
                        column,
                        reason: e.to_string(),
                    })
            };
            let quality = match row.get::<_, i64>(7)? {
                0 => DataQuality::Fresh,
                2 => DataQuality::Suspect,
                _ => DataQuality::Stale,
            };
            let point = SamplePoint {
                timestamp_ms: row.get(1)?,
                pack_voltage_v: real(2, "pack_voltage_v")?,
                current_a: real(3, "current_a")?,
                soc_pct: real(4, "soc_pct")?,
                min_cell_v: real(5, "min_cell_v")?,
                max_cell_v: real(6, "max_cell_v")?,
                quality,
            };
            visited += 1;
            if visit(point).is_break() {
                break;
            }
        }
        Ok(visited)
    }

    /// At most `limit` samples of `pack` taken in `from_ms..to_ms`, oldest
    /// first (by time, then by the order stored), starting after `after`
    /// (from the start when none); with the cursor of the next page, none
    /// when this one is the last.
    pub fn page_between(
        &self,
        pack: &PackId,
        from_ms: i64,
        to_ms: i64,
        after: Option<PageCursor>,
        limit: usize,
    ) -> Result<(Vec<StoredSample>, Option<PageCursor>), StoreError> {
        let after = after.unwrap_or(PageCursor {
            timestamp_ms: from_ms,
            row_id: i64::MIN,
        });
        let sql = format!(
            "SELECT {} FROM samples
             WHERE pack_id = ?1 AND timestamp_ms >= ?2 AND timestamp_ms >= ?3 AND timestamp_ms < ?4
               AND (timestamp_ms > ?3 OR id > ?5)
             ORDER BY timestamp_ms, id LIMIT ?6",
            self.columns
        );
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query((
            pack.as_str(),
            from_ms,
            after.timestamp_ms,
            to_ms,
            after.row_id,
            limit_sql,
        ))?;
        let mut out = Vec::new();
        let mut last = None;
        while let Some(row) = rows.next()? {
            let row_id: i64 = row.get(0)?;
            let sample = read_row(row)?;
            last = Some(PageCursor {
                timestamp_ms: sample.sample.timestamp_ms,
                row_id,
            });
            out.push(sample);
        }
        let next = if out.len() < limit { None } else { last };
        Ok((out, next))
    }
}

#[cfg(test)]
mod tests {
    use super::super::samples::tests::{sample, store};
    use super::*;

    fn pack(id: &str) -> PackId {
        PackId::new(id).unwrap()
    }

    #[test]
    fn points_and_pages_cover_the_span_once_in_time_order() {
        let (_dir, mut store) = store();
        // Stored out of time order, two samples at one instant, and
        // another pack in between.
        let mut batch = Vec::new();
        for seq in 1..=50u64 {
            let at = 1_000 * ((seq * 7) % 50) as i64;
            batch.push(sample("p1", 1, seq, at));
            batch.push(sample("p2", 1, seq, at));
        }
        batch.push(sample("p1", 2, 1, 7_000));
        store.insert_batch(&batch, 0).unwrap();
        let p1 = pack("p1");
        assert!(store.has_pack(&p1).unwrap());
        assert!(!store.has_pack(&pack("p3")).unwrap());
        assert_eq!(store.count_between(&p1, 5_000, 20_000).unwrap(), 16);

        let mut times = Vec::new();
        let seen = store
            .scan_points(&p1, 5_000, 20_000, |p| {
                times.push(p.timestamp_ms);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(seen, 16);
        let mut expected: Vec<i64> = (5..20).map(|s| s * 1_000).collect();
        expected.insert(3, 7_000);
        assert_eq!(times, expected);
        let stopped = store
            .scan_points(&p1, 0, i64::MAX, |_| ControlFlow::Break(()))
            .unwrap();
        assert_eq!(stopped, 1);

        // Pages of 3 give every sample of the span once, in time order.
        let mut paged = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let (rows, next) = store.page_between(&p1, 5_000, 20_000, cursor, 3).unwrap();
            pages += 1;
            paged.extend(
                rows.into_iter()
                    .map(|r| (r.sample.timestamp_ms, r.sample.boot_id.0)),
            );
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 6);
        assert_eq!(paged.iter().map(|(t, _)| *t).collect::<Vec<_>>(), expected);
        assert_eq!(paged.iter().filter(|(t, _)| *t == 7_000).count(), 2);
        let (values, _) = store.page_between(&p1, 7_000, 7_001, None, 10).unwrap();
        // Seq 1 of boot 1 was taken at 7 s, and so was seq 1 of boot 2.
        assert_eq!(values.len(), 2);
        assert_eq!(values[0].sample, batch[0]);
        assert_eq!(values[1].sample, batch[100]);
    }
}
