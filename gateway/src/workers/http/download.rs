//! CSV downloads: `/api/packs/<id>/samples.csv?from=MS&to=MS`, every
//! stored sample of a pack taken from `from` (included) to `to` (left
//! out), milliseconds since the Unix epoch (by default the last hour),
//! oldest first, in the columns of `packgate query --format csv` (each
//! unit in its column's name).
//!
//! Bounded: at most [`MAX_SPAN_MS`] (a week) and [`MAX_ROWS`] rows a
//! download (a larger one is refused with 413 before a byte is sent), at
//! most a few at once. The file is streamed [`PAGE_ROWS`] rows at a time
//! through a queue of [`QUEUE_PAGES`] pages, each page its own short read
//! of the store, so a client that reads slowly slows the reading and
//! holds no transaction open. A download that has not finished after
//! [`DOWNLOAD_TIMEOUT`] is broken off (the connection fails, so a cut file
//! never passes for a whole one).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use packgate_protocol::PackId;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::history::{query_pairs, text};
use super::web::App;
use crate::store::render::{write_csv_header, write_csv_rows};
use crate::store::{SampleStore, StoreError};
use crate::telemetry::now_ms;

/// The longest span one download covers.
pub(super) const MAX_SPAN_MS: i64 = 7 * 86_400_000;
/// The most rows one download holds (a week of one pack at 1 Hz is
/// 604,800).
pub(super) const MAX_ROWS: u64 = 1_000_000;
/// Rows read and sent at a time.
const PAGE_ROWS: usize = 2_000;
/// Pages written ahead of the client.
const QUEUE_PAGES: usize = 2;
/// Longest a download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// The span a query string asks for: `from` and `to` in ms since the Unix
/// epoch; `to` is `now_ms` when absent, `from` an hour before `to`.
pub(super) fn parse_span(query: Option<&str>, now_ms: i64) -> Result<(i64, i64), String> {
    let (mut from, mut to) = (None, None);
    for (key, value) in query_pairs(query) {
        let number = || {
            value
                .parse::<i64>()
                .map_err(|_| format!("{key} {value:?}: milliseconds since the Unix epoch"))
        };
        match key {
            "from" => from = Some(number()?),
            "to" => to = Some(number()?),
            _ => {}
        }
    }
    let to = to.unwrap_or(now_ms);
    let from = from.unwrap_or(to.saturating_sub(3_600_000));
    if from >= to {
        return Err(format!("from ({from}) must be before to ({to})"));
    }
    if to.saturating_sub(from) > MAX_SPAN_MS {
        return Err(format!(
            "at most {} days a download: narrow from..to",
            MAX_SPAN_MS / 86_400_000
        ));
    }
    Ok((from, to))
}

/// Why a download did not start.
enum Refused {
    UnknownPack,
    NoStore,
    Store(StoreError),
}

/// `/api/packs/<id>/samples.csv?from=MS&to=MS`.
pub(super) async fn handler(
    State(app): State<App>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(pack) = PackId::new(&id) else {
        return text(StatusCode::BAD_REQUEST, "not a pack id\n");
    };
    let (from_ms, to_ms) = match parse_span(query.as_deref(), now_ms()) {
        Ok(span) => span,
        Err(why) => return text(StatusCode::BAD_REQUEST, &format!("{why}\n")),
    };
    let Ok(permit) = Arc::clone(&app.download_slots).try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "other downloads are running; try again when they are done\n",
        );
    };
    let known = app.knows_pack(&pack);
    let path = app.site.samples_db.clone();
    let counting = {
        let (path, pack) = (path.clone(), pack.clone());
        tokio::task::spawn_blocking(move || count_rows(&path, &pack, known, from_ms, to_ms))
    };
    let rows = match counting.await {
        Ok(Ok(rows)) => rows,
        Ok(Err(refused)) => return refusal(refused),
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "download failed\n"),
    };
    if rows > MAX_ROWS {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "{rows} samples in this span; at most {MAX_ROWS} a download: narrow from..to\n"
            ),
        );
    }
    app.shared.metrics.downloads.inc();
    stream_csv(permit, path, pack, from_ms, to_ms)
}

/// The rows of `pack` from `from_ms` to `to_ms`, or why there is no file:
/// a pack the gateway does not know and the store never held is unknown.
fn count_rows(
    path: &std::path::Path,
    pack: &PackId,
    known: bool,
    from_ms: i64,
    to_ms: i64,
) -> Result<u64, Refused> {
    let store = match SampleStore::open_read_only(path) {
        Ok(store) => store,
        Err(_) if !known => return Err(Refused::UnknownPack),
        Err(StoreError::NotFound(_)) => return Err(Refused::NoStore),
        Err(error) => return Err(Refused::Store(error)),
    };
    if !known && !store.has_pack(pack).map_err(Refused::Store)? {
        return Err(Refused::UnknownPack);
    }
    store
        .count_between(pack, from_ms, to_ms)
        .map_err(Refused::Store)
}

/// The answer to a download that did not start.
fn refusal(refused: Refused) -> Response {
    match refused {
        Refused::UnknownPack => text(StatusCode::NOT_FOUND, "unknown pack\n"),
        Refused::NoStore => text(
            StatusCode::NOT_FOUND,
            "no samples stored here: the data worker has stored nothing, or is disabled\n",
        ),
        Refused::Store(error) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{error}\n")),
    }
}

/// The CSV file as a streamed response, written page by page on a
/// blocking thread that holds the download's `permit` until it is done.
fn stream_csv(
    permit: tokio::sync::OwnedSemaphorePermit,
    path: std::path::PathBuf,
    pack: PackId,
    from_ms: i64,
    to_ms: i64,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE_PAGES);
    let broken = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + DOWNLOAD_TIMEOUT;
    let writer = Writer {
        tx,
        broken: Arc::clone(&broken),
        deadline,
    };
    let file_name = format!("{pack}_{from_ms}_{to_ms}.csv");
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        writer.write(&path, &pack, from_ms, to_ms);
    });
    let body =
        futures_util::stream::unfold((rx, broken, false), |(mut rx, broken, done)| async move {
            if done {
                return None;
            }
            match rx.recv().await {
                Some(chunk) => Some((Ok(chunk), (rx, broken, false))),
                None if broken.load(Ordering::Acquire) => Some((
                    Err(std::io::Error::other("the download was cut short")),
                    (rx, broken, true),
                )),
                None => None,
            }
        });
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Writes the file into the queue, page by page.
struct Writer {
    tx: mpsc::Sender<Bytes>,
    /// Set when the file is cut short, so the response fails.
    broken: Arc<AtomicBool>,
    deadline: Instant,
}

impl Writer {
    fn write(self, path: &std::path::Path, pack: &PackId, from_ms: i64, to_ms: i64) {
        if !self.write_all(path, pack, from_ms, to_ms) {
            self.broken.store(true, Ordering::Release);
        }
    }

    /// Whether the whole file went into the queue.
    fn write_all(&self, path: &std::path::Path, pack: &PackId, from_ms: i64, to_ms: i64) -> bool {
        let mut head = Vec::new();
        if write_csv_header(&mut head).is_err() || !self.send(head) {
            return false;
        }
        let Ok(store) = SampleStore::open_read_only(path) else {
            return false;
        };
        let mut cursor = None;
        let mut left = MAX_ROWS;
        loop {
            if Instant::now() > self.deadline {
                return false;
            }
            let Ok((mut rows, next)) = store.page_between(pack, from_ms, to_ms, cursor, PAGE_ROWS)
            else {
                return false;
            };
            // Rows stored since the count: the file keeps to the cap.
            rows.truncate(usize::try_from(left).unwrap_or(usize::MAX));
            left -= rows.len() as u64;
            let mut chunk = Vec::with_capacity(rows.len() * 256);
            if write_csv_rows(&mut chunk, &rows).is_err() || !self.send(chunk) {
                return false;
            }
            match next {
                Some(next) if left > 0 => cursor = Some(next),
                _ => return true,
            }
        }
    }

    /// Queues `chunk`, waiting while the queue is full, until the
    /// deadline; false when the client is gone or too slow.
    fn send(&self, chunk: Vec<u8>) -> bool {
        let mut chunk = Bytes::from(chunk);
        loop {
            match self.tx.try_send(chunk) {
                Ok(()) => return true,
                Err(TrySendError::Closed(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() > self.deadline {
                        return false;
                    }
                    chunk = back;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// The whole file of a download, and whether it was written whole.
#[cfg(test)]
pub(super) fn file_of(
    path: std::path::PathBuf,
    pack: PackId,
    from_ms: i64,
    to_ms: i64,
) -> (bool, String) {
    let (tx, mut rx) = mpsc::channel(1024);
    let broken = Arc::new(AtomicBool::new(false));
    let writer = Writer {
        tx,
        broken: Arc::clone(&broken),
        deadline: Instant::now() + Duration::from_secs(30),
    };
    writer.write(&path, &pack, from_ms, to_ms);
    let mut text = String::new();
    while let Ok(chunk) = rx.try_recv() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    (!broken.load(Ordering::Acquire), text)
}
