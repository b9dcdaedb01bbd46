//! The page and its live stream: the static assets (embedded in the
//! binary, written for this page, no build step), `/metrics`, and
//! `/api/live`, server-sent events that carry each pack's latest sample as
//! it arrives and the pipeline's health as it changes.
//!
//! A live stream never holds anything back: it reads the latest state
//! through watches (a reader that falls behind skips to the newest), sends
//! only the packs that changed since its last message, at most every
//! [`PACKS_EVERY`], and ends after [`STREAM_LIFETIME`] (the browser
//! reconnects by itself). At most [`MAX_LIVE_CLIENTS`] are open at once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use packgate_protocol::{PackId, Sample};
use serde::Serialize;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::exposition::render;
use super::Shared;
use crate::config::HttpConfig;
use crate::telemetry::health::{pack_state, stale_after_ms};
use crate::telemetry::now_ms;
use crate::workers::GatewayView;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Live streams open at once; more are answered 503.
pub(super) const MAX_LIVE_CLIENTS: usize = 16;
/// Least time between two messages of packs on one live stream: the
/// samples that arrive meanwhile go in the next one.
pub(super) const PACKS_EVERY: Duration = Duration::from_millis(250);
/// How long one live stream lasts; the browser then opens a new one.
pub(super) const STREAM_LIFETIME: Duration = Duration::from_secs(600);
/// History queries running at once (charts); more wait, then get 503.
const MAX_HISTORY_QUERIES: usize = 2;
/// CSV downloads running at once; more get 503.
const MAX_DOWNLOADS: usize = 2;

/// What the page shows of the configuration, and where the stores are.
#[derive(Debug)]
pub(super) struct Site {
    /// The worker's own section.
    pub(super) http: HttpConfig,
    /// The packs, their poll period and the workers' health rules.
    pub(super) view: GatewayView,
    /// The data worker's sample store.
    pub(super) samples_db: PathBuf,
    /// The monitor's database: events, snapshots.
    pub(super) monitor_db: PathBuf,
    /// The control worker's audit of commands.
    pub(super) control_db: PathBuf,
}

impl Site {
    /// The site serving as `http` says, showing what `view` describes,
    /// with the stores under `data_dir`.
    pub(super) fn new(http: HttpConfig, view: GatewayView, data_dir: &Path) -> Self {
        let stores = view.stores.under(data_dir);
        Self {
            http,
            view,
            samples_db: stores.samples,
            monitor_db: stores.monitor,
            control_db: stores.control,
        }
    }
}

/// What every request handler is given.
#[derive(Debug, Clone)]
pub(super) struct App {
    pub(super) site: Arc<Site>,
    pub(super) shared: Shared,
    overview: watch::Receiver<Arc<str>>,
    /// Live streams open: the health is gathered only while there are.
    viewers: Arc<watch::Sender<usize>>,
    live_slots: Arc<Semaphore>,
    pub(super) history_slots: Arc<Semaphore>,
    pub(super) download_slots: Arc<Semaphore>,
    pub(super) shutdown: CancellationToken,
}

impl App {
    /// The handlers' state: `overview` is the pipeline health's JSON as
    /// the refresher keeps it.
    pub(super) fn new(
        site: Arc<Site>,
        shared: Shared,
        overview: watch::Receiver<Arc<str>>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            site,
            shared,
            overview,
            viewers: Arc::new(watch::Sender::new(0)),
            live_slots: Arc::new(Semaphore::new(MAX_LIVE_CLIENTS)),
            history_slots: Arc::new(Semaphore::new(MAX_HISTORY_QUERIES)),
            download_slots: Arc::new(Semaphore::new(MAX_DOWNLOADS)),
            shutdown,
        }
    }

    /// How many live streams are open, as it changes.
    pub(super) fn viewers(&self) -> watch::Receiver<usize> {
        self.viewers.subscribe()
    }

    /// Whether `pack` is one the configuration names or the broker has
    /// shown a sample of; the store is asked about others.
    pub(super) fn knows_pack(&self, pack: &PackId) -> bool {
        self.site.view.pack_ids().any(|id| id == pack)
            || self
                .shared
                .with(|held| held.exposed.samples.contains_key(pack))
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/`: the page.
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `/assets/app.js`: the page's script.
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `/assets/style.css`: the page's style.
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// `/metrics`: the Prometheus text format.
pub(super) async fn metrics_page(State(app): State<App>) -> Response {
    app.shared.metrics.scrapes.inc();
    let text = app
        .shared
        .with(|held| render(&held.exposed, env!("CARGO_PKG_VERSION")));
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// One pack as the page shows it: its latest sample and its state.
#[derive(Debug, Serialize)]
pub(super) struct PackView<'a> {
    id: &'a str,
    /// `online`, `stale` or `suspect` (the rule `packgate status` uses).
    state: &'static str,
    quality: &'static str,
    clock_trusted: bool,
    boot: String,
    seq: u64,
    timestamp_ms: i64,
    voltage_v: f32,
    current_a: f32,
    power_w: f32,
    soc_pct: f32,
    soh_pct: Option<f32>,
    cells_v: &'a [f32],
    min_cell_v: f32,
    max_cell_v: f32,
    temperatures_c: &'a [f32],
    balancing_mask: u32,
    alarms: Vec<String>,
    charge_enabled: bool,
    discharge_enabled: bool,
}

impl<'a> PackView<'a> {
    /// The view of `sample` at `now_ms`, its pack polled every
    /// `poll_interval_ms`.
    pub(super) fn of(sample: &'a Sample, now_ms: i64, poll_interval_ms: u64) -> Self {
        let r = &sample.reading;
        let age = now_ms - sample.timestamp_ms;
        Self {
            id: sample.pack_id.as_str(),
            state: pack_state(sample.quality, age, poll_interval_ms).name(),
            quality: sample.quality.as_str(),
            clock_trusted: sample.clock.is_trusted(),
            boot: sample.boot_id.to_string(),
            seq: sample.seq,
            timestamp_ms: sample.timestamp_ms,
            voltage_v: r.pack_voltage_v,
            current_a: r.current_a,
            power_w: r.pack_voltage_v * r.current_a,
            soc_pct: r.soc_pct,
            soh_pct: r.soh_pct,
            cells_v: &r.cell_voltages_v.0,
            min_cell_v: r.min_cell_v(),
            max_cell_v: r.max_cell_v(),
            temperatures_c: &r.temperatures_c.0,
            balancing_mask: r.balancing.0,
            alarms: r.alarms.names(),
            charge_enabled: r.charge_enabled,
            discharge_enabled: r.discharge_enabled,
        }
    }
}

/// The first message of a live stream: what does not change while it is
/// open.
#[derive(Debug, Serialize)]
struct Hello<'a> {
    version: &'static str,
    poll_interval_ms: u64,
    stale_after_ms: i64,
    /// The packs the configuration names, shown even before a sample.
    configured: Vec<&'a str>,
    /// Always empty: the banks' states come with each `overview`
    /// message, refreshed every two seconds.
    banks: [(); 0],
}

/// The samples of the packs that changed, for the live stream.
#[derive(Debug, Serialize)]
struct PacksMessage<'a> {
    now_ms: i64,
    packs: Vec<PackView<'a>>,
}

/// `/api/live`: the live stream.
pub(super) async fn live(State(app): State<App>) -> Response {
    let Ok(slot) = Arc::clone(&app.live_slots).try_acquire_owned() else {
        app.shared.metrics.live_refused.inc();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            "too many live pages are open; try again later\n",
        )
            .into_response();
    };
    let stream = futures_util::stream::unfold(Live::new(app, slot), |live| async move {
        let (message, live) = live.next().await?;
        Some((Ok::<_, Infallible>(message.into_event()), live))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// One message of a live stream: `hello`, `overview` or `packs`, and its
/// JSON.
#[derive(Debug)]
struct Message {
    name: &'static str,
    data: String,
}

impl Message {
    fn into_event(self) -> Event {
        let event = Event::default().event(self.name).data(self.data);
        if self.name == "hello" {
            // How long the browser waits before it reconnects.
            event.retry(Duration::from_secs(2))
        } else {
            event
        }
    }
}

/// The health's message, unless it is empty (out of date: nobody watched).
fn overview_message(text: &str) -> Option<Message> {
    (!text.is_empty()).then(|| Message {
        name: "overview",
        data: text.to_owned(),
    })
}

/// One live stream's state.
struct Live {
    app: App,
    _slot: LiveSlot,
    changes: watch::Receiver<u64>,
    overview: watch::Receiver<Arc<str>>,
    /// The version of the packs last sent.
    sent_version: u64,
    queue: VecDeque<Message>,
    ends_at: Instant,
    last_packs: Instant,
}

/// A place among the live streams, counted while held.
struct LiveSlot {
    _permit: OwnedSemaphorePermit,
    app: App,
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.app.shared.metrics.live_clients.add(-1);
        self.app
            .viewers
            .send_modify(|open| *open = open.saturating_sub(1));
    }
}

impl Live {
    fn new(app: App, permit: OwnedSemaphorePermit) -> Self {
        app.shared.metrics.live_clients.add(1);
        app.viewers.send_modify(|open| *open += 1);
        let mut changes = app.shared.changed.subscribe();
        changes.mark_unchanged();
        let mut overview = app.overview.clone();
        let current = overview.borrow_and_update().clone();
        let view = &app.site.view;
        let hello = Hello {
            version: env!("CARGO_PKG_VERSION"),
            poll_interval_ms: view.poll_interval_ms,
            stale_after_ms: stale_after_ms(view.poll_interval_ms),
            configured: view.pack_ids().map(|id| id.as_str()).collect(),
            banks: [],
        };
        let mut queue = VecDeque::new();
        queue.push_back(Message {
            name: "hello",
            data: serde_json::to_string(&hello).unwrap_or_default(),
        });
        // Empty while nobody watched: the refresher gathers it afresh now
        // that someone does, and the change brings it.
        queue.extend(overview_message(&current));
        let mut live = Self {
            _slot: LiveSlot {
                _permit: permit,
                app: app.clone(),
            },
            app,
            changes,
            overview,
            sent_version: 0,
            queue,
            ends_at: Instant::now() + STREAM_LIFETIME,
            last_packs: Instant::now(),
        };
        if let Some(packs) = live.packs_event() {
            live.queue.push_back(packs);
        }
        live
    }

    /// The next message, or none when the stream ends.
    async fn next(mut self) -> Option<(Message, Self)> {
        loop {
            if let Some(message) = self.queue.pop_front() {
                return Some((message, self));
            }
            tokio::select! {
                biased;
                () = self.app.shutdown.cancelled() => return None,
                () = tokio::time::sleep_until(self.ends_at) => return None,
                changed = self.overview.changed() => {
                    changed.ok()?;
                    let text = self.overview.borrow_and_update().clone();
                    self.queue.extend(overview_message(&text));
                }
                changed = self.changes.changed() => {
                    changed.ok()?;
                    tokio::time::sleep_until(self.last_packs + PACKS_EVERY).await;
                    self.changes.mark_unchanged();
                    self.last_packs = Instant::now();
                    if let Some(packs) = self.packs_event() {
                        self.queue.push_back(packs);
                    }
                }
            }
        }
    }

    /// The packs that changed since the last message, if any.
    fn packs_event(&mut self) -> Option<Message> {
        let since = self.sent_version;
        let (changed, version) = self.app.shared.with(|held| {
            let changed: Vec<Sample> = held
                .updated
                .iter()
                .filter(|(_, at)| **at > since)
                .filter_map(|(pack, _)| held.exposed.samples.get(pack).cloned())
                .collect();
            (changed, held.version)
        });
        self.sent_version = version;
        if changed.is_empty() {
            return None;
        }
        let now = now_ms();
        let poll_interval_ms = self.app.site.view.poll_interval_ms;
        let message = PacksMessage {
            now_ms: now,
            packs: changed
                .iter()
                .map(|s| PackView::of(s, now, poll_interval_ms))
                .collect(),
        };
        Some(Message {
            name: "packs",
            data: serde_json::to_string(&message).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
#[path = "web_tests.rs"]
mod tests;
