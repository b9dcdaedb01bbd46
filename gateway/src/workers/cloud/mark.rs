//! The poll time of the last sample the cloud acknowledged, kept in a
//! small file of the data directory, so that the upload lag is known from
//! the start of a run, before its first upload (the cloud may be out of
//! reach then). Saved at most every [`SAVE_EVERY`] and at the stop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::CloudMetrics;

/// The file, in the data directory.
pub(crate) const FILE: &str = "cloud-last-upload";

/// How often a newer mark is written.
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(10);

/// Longest one read or write of the file may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The saved mark, read off the async threads within [`IO_TIMEOUT`].
pub(crate) async fn load_in_background(dir: PathBuf) -> Option<i64> {
    let loaded =
        tokio::time::timeout(IO_TIMEOUT, tokio::task::spawn_blocking(move || load(&dir))).await;
    loaded.ok().and_then(Result::ok).flatten()
}

/// The saved mark, milliseconds since the Unix epoch; `None` when there is
/// none (no upload yet) or it cannot be read.
fn load(dir: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
    text.trim().parse::<i64>().ok().filter(|ms| *ms > 0)
}

/// Writes `timestamp_ms` whole or not at all (a new file renamed over the
/// old one).
fn save(dir: &Path, timestamp_ms: i64) -> std::io::Result<()> {
    let path = dir.join(FILE);
    let new = dir.join(format!("{FILE}.new"));
    std::fs::write(&new, format!("{timestamp_ms}\n"))?;
    std::fs::rename(&new, &path)
}

/// Saves the mark off the async threads, within [`IO_TIMEOUT`].
async fn save_in_background(dir: PathBuf, timestamp_ms: i64) {
    let saved = tokio::time::timeout(
        IO_TIMEOUT,
        tokio::task::spawn_blocking(move || save(&dir, timestamp_ms)),
    )
    .await;
    match saved {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => {
            tracing::debug!(%error, "cannot save the time of the last cloud upload");
        }
        Ok(Err(_)) | Err(_) => tracing::debug!("saving the time of the last cloud upload failed"),
    }
}

/// Saves a newer mark `every` interval (the worker: [`SAVE_EVERY`]) until
/// `shutdown`, then once more.
pub(crate) async fn run_saver(
    dir: PathBuf,
    every: Duration,
    metrics: Arc<CloudMetrics>,
    shutdown: CancellationToken,
) {
    let mut saved = metrics.last_uploaded_ms();
    loop {
        let stopping = tokio::select! {
            () = tokio::time::sleep(every) => false,
            () = shutdown.cancelled() => true,
        };
        let now = metrics.last_uploaded_ms();
        if let Some(timestamp_ms) = now.filter(|_| now != saved) {
            save_in_background(dir.clone(), timestamp_ms).await;
            saved = now;
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_mark_reads_back_and_garbage_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), None);
        save(dir.path(), 1_700_000_000_123).unwrap();
        assert_eq!(load(dir.path()), Some(1_700_000_000_123));
        std::fs::write(dir.path().join(FILE), "garbage").unwrap();
        assert_eq!(load(dir.path()), None);
    }

    #[tokio::test]
    async fn the_saver_writes_newer_marks_and_the_last_at_the_stop() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(CloudMetrics::default());
        let shutdown = CancellationToken::new();
        let every = Duration::from_millis(20);
        let saver = tokio::spawn(run_saver(
            dir.path().to_owned(),
            every,
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
        // Once the saver runs: it saves what changes after its start.
        tokio::time::sleep(every * 2).await;
        metrics.set_last_uploaded(1_000);
        let mut saved = None;
        for _ in 0..200 {
            saved = load_in_background(dir.path().to_owned()).await;
            if saved.is_some() {
                break;
            }
            tokio::time::sleep(every).await;
        }
        assert_eq!(saved, Some(1_000));
        metrics.set_last_uploaded(2_000);
        shutdown.cancel();
        saver.await.unwrap();
        assert_eq!(load(dir.path()), Some(2_000));
    }
}
