//! Messages of the samples stream that can never be stored, kept apart for
//! inspection (the `dead_letters` table), and storing a batch so that one
//! bad row never holds back the good ones.

use packgate_protocol::limits::truncate;
use packgate_protocol::Sample;
use rusqlite::OptionalExtension;

use super::{InsertOutcome, SampleStore, StoreError};

/// Most bytes of a dead message's payload kept (a sample is a few hundred
/// bytes; a larger payload is cut, its full length recorded).
pub const MAX_DEAD_LETTER_PAYLOAD_BYTES: usize = 4 * 1024;
/// Most dead letters kept: past it the oldest go, so a flood of bad
/// messages costs at most a few megabytes of the data disk.
pub const MAX_DEAD_LETTER_ROWS: usize = 1000;
/// Most bytes of the error text kept with a dead message.
pub const MAX_DEAD_LETTER_ERROR_BYTES: usize = 1024;

/// One message that will never be stored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The stream it is in.
    pub stream: String,
    /// Its sequence in the stream: the stream keeps the message itself.
    pub stream_seq: u64,
    /// Its subject (empty when only the sequence is known).
    pub subject: String,
    /// Its payload, cut to [`MAX_DEAD_LETTER_PAYLOAD_BYTES`]; `None` when
    /// the message was not in hand (the broker gave up delivering it).
    pub payload: Option<Vec<u8>>,
    /// The payload's full length, bytes, when known.
    pub payload_len: Option<usize>,
    /// Stable short name of the cause, such as `out_of_range` or
    /// `max_deliveries`.
    pub error_kind: String,
    /// The cause, cut to [`MAX_DEAD_LETTER_ERROR_BYTES`].
    pub error: String,
    /// When it was given up on, milliseconds since the Unix epoch.
    pub dead_at_ms: i64,
}

impl DeadLetter {
    /// A message in hand that will never be stored: its payload is kept,
    /// cut to [`MAX_DEAD_LETTER_PAYLOAD_BYTES`].
    pub fn of_message(
        stream: &str,
        stream_seq: u64,
        subject: &str,
        payload: &[u8],
        error_kind: &str,
        error: String,
        dead_at_ms: i64,
    ) -> Self {
        let kept = &payload[..payload.len().min(MAX_DEAD_LETTER_PAYLOAD_BYTES)];
        Self {
            stream: stream.to_owned(),
            stream_seq,
            subject: subject.to_owned(),
            payload: Some(kept.to_vec()),
            payload_len: Some(payload.len()),
            error_kind: error_kind.to_owned(),
            error: truncate(error, MAX_DEAD_LETTER_ERROR_BYTES),
            dead_at_ms,
        }
    }
}

/// What [`SampleStore::insert_isolating`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Isolated {
    /// The rows stored and the duplicates skipped.
    pub outcome: InsertOutcome,
    /// The samples (by index in the batch) that can never be stored, with
    /// why; every other sample of the batch is committed.
    pub rejected: Vec<(usize, String)>,
}

impl StoreError {
    /// Whether the failure belongs to one row (a sample that cannot be
    /// stored, a constraint, a value too big), so storing the other rows
    /// of its batch one by one succeeds; never a failure of the file or
    /// the disk (full, busy, I/O), which passes for every row alike.
    pub fn is_row_fault(&self) -> bool {
        match self {
            StoreError::InvalidSample { .. } | StoreError::InvalidBankState { .. } => true,
            StoreError::Sqlite(source) => matches!(
                source.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::ConstraintViolation
                        | rusqlite::ErrorCode::TooBig
                        | rusqlite::ErrorCode::TypeMismatch
                )
            ),
            _ => false,
        }
    }
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SampleStore {
    /// Stores a batch in one transaction; when it fails for a reason that
    /// belongs to one row ([`StoreError::is_row_fault`]), stores the rows
    /// one by one instead, so the good ones are committed and only the bad
    /// ones are returned as rejected. A failure of the file or the disk
    /// (full, busy) is returned as it is: nothing is rejected for it.
    pub fn insert_isolating(
        &mut self,
        samples: &[Sample],
        stored_at_ms: i64,
    ) -> Result<Isolated, StoreError> {
        match self.insert_batch(samples, stored_at_ms) {
            Ok(outcome) => {
                return Ok(Isolated {
                    outcome,
                    rejected: Vec::new(),
                })
            }
            Err(error) if error.is_row_fault() => {}
            Err(error) => return Err(error),
        }
        let mut isolated = Isolated::default();
        for (index, sample) in samples.iter().enumerate() {
            match self.insert_batch(std::slice::from_ref(sample), stored_at_ms) {
                Ok(one) => {
                    isolated.outcome.inserted += one.inserted;
                    isolated.outcome.duplicates += one.duplicates;
                }
                Err(error) if error.is_row_fault() => {
                    isolated.rejected.push((index, error.to_string()));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(isolated)
    }

    /// Records messages that will never be stored, in one transaction; a
    /// message already recorded (same stream and sequence) is left as it
    /// was, and past [`MAX_DEAD_LETTER_ROWS`] the oldest are deleted.
    /// Returns the rows newly recorded.
    pub fn record_dead_letters(&mut self, letters: &[DeadLetter]) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let mut recorded = 0;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO dead_letters (stream, stream_seq, subject, payload,
                     payload_len, error_kind, error, dead_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for letter in letters {
                recorded += stmt.execute(rusqlite::params![
                    letter.stream,
                    as_i64(letter.stream_seq),
                    letter.subject,
                    letter.payload,
                    letter.payload_len.map(|n| as_i64(n as u64)),
                    letter.error_kind,
                    truncate(letter.error.clone(), MAX_DEAD_LETTER_ERROR_BYTES),
                    letter.dead_at_ms,
                ])?;
            }
        }
        tx.execute(
            "DELETE FROM dead_letters WHERE id <= (SELECT id FROM dead_letters
                 ORDER BY id DESC LIMIT 1 OFFSET ?1)",
            [as_i64(MAX_DEAD_LETTER_ROWS as u64)],
        )?;
        tx.commit()?;
        Ok(recorded)
    }

    /// Whether the file has the `dead_letters` table (not one written
    /// before it existed and opened read-only since).
    fn has_dead_letters(&self) -> Result<bool, StoreError> {
        let exists: Option<i64> = self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dead_letters'",
                [],
                |row| row.get(0),
            )
            .optional()?;
        Ok(exists.is_some())
    }

    /// How many messages are recorded as never storable.
    pub fn dead_letter_count(&self) -> Result<u64, StoreError> {
        if !self.has_dead_letters()? {
            return Ok(0);
        }
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM dead_letters", [], |row| row.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The messages recorded as never storable, oldest first, at most
    /// `limit`; none for a file written before the table existed.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        if !self.has_dead_letters()? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT stream, stream_seq, subject, payload, payload_len, error_kind, error,
                    dead_at_ms
             FROM dead_letters ORDER BY id LIMIT ?1",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map([limit], |row| {
            Ok(DeadLetter {
                stream: row.get(0)?,
                stream_seq: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                subject: row.get(2)?,
                payload: row.get(3)?,
                payload_len: row
                    .get::<_, Option<i64>>(4)?
                    .and_then(|n| usize::try_from(n).ok()),
                error_kind: row.get(5)?,
                error: row.get(6)?,
                dead_at_ms: row.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::samples::tests::{sample, store};
    use super::*;

    #[test]
    fn one_bad_row_is_rejected_alone_and_the_others_are_stored() {
        let (_dir, mut store) = store();
        store.insert_batch(&[sample("p1", 1, 1, 0)], 0).unwrap();
        let batch = vec![
            sample("p1", 1, 1, 0),
            sample("p1", 1, 2, 0),
            sample("p1", 1, 1 << 63, 0),
            sample("p1", 1, 3, 0),
        ];
        // The batch as a whole fails for the one row ...
        assert!(store.insert_batch(&batch, 0).unwrap_err().is_row_fault());
        // ... and row by row stores the rest.
        let isolated = store.insert_isolating(&batch, 0).unwrap();
        assert_eq!(isolated.outcome.inserted, 2);
        assert_eq!(isolated.outcome.duplicates, 1);
        assert_eq!(isolated.rejected.len(), 1);
        assert_eq!(isolated.rejected[0].0, 2);
        assert!(
            isolated.rejected[0].1.contains("seq"),
            "{:?}",
            isolated.rejected
        );
        assert_eq!(store.count().unwrap(), 3);
    }

    #[test]
    fn a_full_disk_rejects_nothing() {
        let (_dir, mut store) = store();
        store
            .conn
            .execute_batch("PRAGMA max_page_count = 8")
            .unwrap();
        let mut batch: Vec<_> = (1..=2000).map(|seq| sample("p1", 1, seq, 0)).collect();
        batch.push(sample("p1", 1, u64::MAX, 0));
        let error = store.insert_isolating(&batch, 0).unwrap_err();
        assert!(error.is_disk_full(), "{error:?}");
        assert!(!error.is_row_fault());
    }

    #[test]
    fn dead_letters_are_kept_once_with_their_payload_cut() {
        let (dir, mut store) = store();
        let big = vec![7u8; MAX_DEAD_LETTER_PAYLOAD_BYTES + 10];
        let letter = DeadLetter::of_message(
            "S",
            42,
            "packgate.samples.p1",
            &big,
            "out_of_range",
            "e".repeat(5000),
            9,
        );
        assert_eq!(
            store
                .record_dead_letters(std::slice::from_ref(&letter))
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .record_dead_letters(std::slice::from_ref(&letter))
                .unwrap(),
            0
        );
        let given_up = DeadLetter {
            stream_seq: 43,
            subject: String::new(),
            payload: None,
            payload_len: None,
            error_kind: "max_deliveries".into(),
            ..letter.clone()
        };
        store
            .record_dead_letters(std::slice::from_ref(&given_up))
            .unwrap();
        let reader = SampleStore::open_read_only(&dir.path().join("samples.db")).unwrap();
        let kept = reader.dead_letters(10).unwrap();
        assert_eq!(kept, vec![letter.clone(), given_up]);
        assert_eq!(
            kept[0].payload.as_ref().map(Vec::len),
            Some(MAX_DEAD_LETTER_PAYLOAD_BYTES)
        );
        assert_eq!(
            kept[0].payload_len,
            Some(MAX_DEAD_LETTER_PAYLOAD_BYTES + 10)
        );
        assert_eq!(kept[0].error.len(), MAX_DEAD_LETTER_ERROR_BYTES);
    }

    #[test]
    fn only_the_newest_dead_letters_are_kept() {
        let (_dir, mut store) = store();
        let letters: Vec<_> = (1..=MAX_DEAD_LETTER_ROWS as u64 + 5)
            .map(|seq| DeadLetter::of_message("S", seq, "s", b"x", "malformed", "e".into(), 0))
            .collect();
        let (first, rest) = letters.split_at(3);
        assert_eq!(store.record_dead_letters(first).unwrap(), 3);
        assert_eq!(store.record_dead_letters(rest).unwrap(), rest.len());
        let kept = store.dead_letters(usize::MAX).unwrap();
        assert_eq!(kept.len(), MAX_DEAD_LETTER_ROWS);
        assert_eq!(
            store.dead_letter_count().unwrap(),
            MAX_DEAD_LETTER_ROWS as u64
        );
        assert_eq!(kept[0].stream_seq, 6);
        assert_eq!(
            kept.last().map(|l| l.stream_seq),
            Some(MAX_DEAD_LETTER_ROWS as u64 + 5)
        );
    }
}
