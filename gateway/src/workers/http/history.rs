//! The history charts: a pack's voltage, current, state of charge and
//! lowest and highest cell over the last hour, day or week, read from the
//! sample store and downsampled here into at most [`BUCKETS`] buckets of
//! equal time (the lowest, mean and highest value of each), so a week of
//! one-second samples is a few hundred points per series.
//!
//! Each query runs off the async threads on a read-only connection of its
//! own (the store's busy timeout applies), a few at once (a query that
//! waits longer than [`QUEUE_WAIT`] for its turn is answered 503), and is
//! ended between two rows after [`QUERY_TIMEOUT`] (the buckets read so far
//! are returned, with a note). Suspect samples are left out of the charts.

use std::ops::ControlFlow;
use std::path::Path as FsPath;
use std::time::{Duration, Instant};

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use packgate_protocol::{DataQuality, PackId};
use serde::Serialize;

use super::web::App;
use crate::store::{SamplePoint, SampleStore, StoreError};
use crate::telemetry::now_ms;

/// Buckets per chart, at most.
pub(super) const BUCKETS: usize = 300;
/// Longest a history query may read the store.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a query waits for its turn.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// The spans the charts show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Span {
    /// The last hour.
    Hour,
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
}

impl Span {
    /// The span a query string asks for (`range=hour|day|week`, default
    /// the hour); an error text for anything else.
    pub(super) fn parse(query: Option<&str>) -> Result<Span, String> {
        let mut span = Span::Hour;
        for (key, value) in query_pairs(query) {
            match (key, value) {
                ("range", "hour") => span = Span::Hour,
                ("range", "day") => span = Span::Day,
                ("range", "week") => span = Span::Week,
                ("range", other) => {
                    return Err(format!("range {other:?}: hour, day or week"));
                }
                _ => {}
            }
        }
        Ok(span)
    }

    /// Its length, milliseconds.
    pub(super) fn length_ms(self) -> i64 {
        match self {
            Span::Hour => 3_600_000,
            Span::Day => 86_400_000,
            Span::Week => 7 * 86_400_000,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Span::Hour => "hour",
            Span::Day => "day",
            Span::Week => "week",
        }
    }
}

/// The `key=value` pairs of a query string (values taken as they are:
/// every value this API reads is a word or a number).
pub(super) fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The lowest, the sum (for the mean) and the highest of one value.
#[derive(Debug, Clone, Copy)]
struct Spread {
    min: f32,
    max: f32,
    sum: f64,
}

impl Spread {
    fn of(value: f32) -> Self {
        Self {
            min: value,
            max: value,
            sum: f64::from(value),
        }
    }

    fn add(&mut self, value: f32) {
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += f64::from(value);
    }

    /// `[lowest, mean, highest]` over `n` values.
    fn triple(&self, n: u32) -> [f32; 3] {
        [self.min, (self.sum / f64::from(n.max(1))) as f32, self.max]
    }
}

/// One bucket's values.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    n: u32,
    voltage_v: Spread,
    current_a: Spread,
    soc_pct: Spread,
    min_cell_v: Spread,
    max_cell_v: Spread,
}

/// One point of the charts: a bucket's middle, how many samples it holds,
/// and `[lowest, mean, highest]` of each value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Point {
    pub(super) t: i64,
    pub(super) n: u32,
    pub(super) voltage_v: [f32; 3],
    pub(super) current_a: [f32; 3],
    pub(super) soc_pct: [f32; 3],
    pub(super) min_cell_v: [f32; 3],
    pub(super) max_cell_v: [f32; 3],
}

/// Samples into buckets of equal time over `from_ms..to_ms`.
#[derive(Debug)]
pub(super) struct Downsampler {
    from_ms: i64,
    to_ms: i64,
    width_ms: i64,
    buckets: Vec<Option<Bucket>>,
}

impl Downsampler {
    /// At most `count` buckets over `from_ms..to_ms`, each at least a
    /// millisecond wide.
    pub(super) fn new(from_ms: i64, to_ms: i64, count: usize) -> Self {
        let length = to_ms.saturating_sub(from_ms).max(1);
        let count_i64 = i64::try_from(count.max(1)).unwrap_or(i64::MAX);
        let width_ms = (length + count_i64 - 1) / count_i64;
        let used = usize::try_from((length + width_ms - 1) / width_ms).unwrap_or(count);
        Self {
            from_ms,
            to_ms,
            width_ms,
            buckets: vec![None; used.min(count.max(1))],
        }
    }

    /// The width of a bucket, milliseconds.
    pub(super) fn width_ms(&self) -> i64 {
        self.width_ms
    }

    /// Counts `point` in its bucket; one outside the span is ignored.
    pub(super) fn add(&mut self, point: &SamplePoint) {
        if point.timestamp_ms < self.from_ms || point.timestamp_ms >= self.to_ms {
            return;
        }
        let index = (point.timestamp_ms - self.from_ms) / self.width_ms;
        let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| self.buckets.get_mut(i))
        else {
            return;
        };
        match slot {
            None => {
                *slot = Some(Bucket {
                    n: 1,
                    voltage_v: Spread::of(point.pack_voltage_v),
                    current_a: Spread::of(point.current_a),
                    soc_pct: Spread::of(point.soc_pct),
                    min_cell_v: Spread::of(point.min_cell_v),
                    max_cell_v: Spread::of(point.max_cell_v),
                });
            }
            Some(bucket) => {
                bucket.n += 1;
                bucket.voltage_v.add(point.pack_voltage_v);
                bucket.current_a.add(point.current_a);
                bucket.soc_pct.add(point.soc_pct);
                bucket.min_cell_v.add(point.min_cell_v);
                bucket.max_cell_v.add(point.max_cell_v);
            }
        }
    }

    /// The buckets that hold samples, oldest first.
    pub(super) fn points(&self) -> Vec<Point> {
        let mut start = self.from_ms;
        let mut points = Vec::new();
        for bucket in &self.buckets {
            if let Some(b) = bucket {
                points.push(Point {
                    t: start + self.width_ms / 2,
                    n: b.n,
                    voltage_v: b.voltage_v.triple(b.n),
                    current_a: b.current_a.triple(b.n),
                    soc_pct: b.soc_pct.triple(b.n),
                    min_cell_v: b.min_cell_v.triple(b.n),
                    max_cell_v: b.max_cell_v.triple(b.n),
                });
            }
            start += self.width_ms;
        }
        points
    }
}

/// The answer of `/api/packs/<id>/history`.
#[derive(Debug, Serialize)]
struct History {
    pack: String,
    range: &'static str,
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
    /// Samples read (suspect ones left out).
    samples: u64,
    points: Vec<Point>,
    /// Why the charts are empty or partial, when they are.
    note: Option<String>,
}

/// Why a history query was not answered with charts.
#[derive(Debug)]
enum Refused {
    UnknownPack,
}

/// `/api/packs/<id>/history?range=hour|day|week`.
pub(super) async fn handler(
    State(app): State<App>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(pack) = PackId::new(&id) else {
        return text(StatusCode::BAD_REQUEST, "not a pack id\n");
    };
    let span = match Span::parse(query.as_deref()) {
        Ok(span) => span,
        Err(why) => return text(StatusCode::BAD_REQUEST, &format!("{why}\n")),
    };
    let slots = std::sync::Arc::clone(&app.history_slots);
    let Ok(Ok(permit)) = tokio::time::timeout(QUEUE_WAIT, slots.acquire_owned()).await else {
        app.shared.metrics.history_refused.inc();
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy with other history queries; try again\n",
        );
    };
    let known = app.knows_pack(&pack);
    let to_ms = now_ms();
    let from_ms = to_ms - span.length_ms();
    let path = app.site.samples_db.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        read_history(&path, &pack, known, span, from_ms, to_ms)
    });
    match task.await {
        Ok(Ok(history)) => {
            app.shared.metrics.history_queries.inc();
            let body = serde_json::to_string(&history).unwrap_or_default();
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Ok(Err(Refused::UnknownPack)) => text(StatusCode::NOT_FOUND, "unknown pack\n"),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "history query failed\n"),
    }
}

/// A plain-text answer.
pub(super) fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.to_owned(),
    )
        .into_response()
}

/// Reads and downsamples the span. A pack neither `known` nor in the
/// store is refused; a store that is missing or cannot be read gives empty
/// charts with a note.
fn read_history(
    path: &FsPath,
    pack: &PackId,
    known: bool,
    span: Span,
    from_ms: i64,
    to_ms: i64,
) -> Result<History, Refused> {
    let mut downsampler = Downsampler::new(from_ms, to_ms, BUCKETS);
    let mut history = History {
        pack: pack.to_string(),
        range: span.name(),
        from_ms,
        to_ms,
        bucket_ms: downsampler.width_ms(),
        samples: 0,
        points: Vec::new(),
        note: None,
    };
    let store = match SampleStore::open_read_only(path) {
        Ok(store) => store,
        Err(_) if !known => return Err(Refused::UnknownPack),
        Err(StoreError::NotFound(_)) => {
            history.note = Some(
                "no sample store yet: the data worker has stored nothing here, or is disabled"
                    .to_owned(),
            );
            return Ok(history);
        }
        Err(error) => {
            history.note = Some(error.to_string());
            return Ok(history);
        }
    };
    if !known && !store.has_pack(pack).unwrap_or(false) {
        return Err(Refused::UnknownPack);
    }
    let deadline = Instant::now() + QUERY_TIMEOUT;
    let mut cut_short = false;
    let mut read = 0u64;
    let scanned = store.scan_points(pack, from_ms, to_ms, |point| {
        read += 1;
        if read % 1024 == 0 && Instant::now() > deadline {
            cut_short = true;
            return ControlFlow::Break(());
        }
        if point.quality != DataQuality::Suspect {
            history.samples += 1;
            downsampler.add(&point);
        }
        ControlFlow::Continue(())
    });
    if let Err(error) = scanned {
        history.note = Some(error.to_string());
    } else if cut_short {
        history.note = Some(format!(
            "cut short after {} s: the store is slow or very large",
            QUERY_TIMEOUT.as_secs()
        ));
    }
    history.points = downsampler.points();
    Ok(history)
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
