//! The pipeline's health for the page: the facts `packgate status` shows,
//! by the same rules ([`crate::health`]), from the snapshots
//! this worker follows, the broker's streams and consumers (each call
//! under a short timeout), and the stores (recent events and commands,
//! dead letters; read-only, off the async threads, under a timeout).
//! Refreshed every [`REFRESH`] into one JSON text that the live streams
//! send when it changes: however many pages are open, the broker and the
//! stores are asked once, and while none is open, not at all (an idle
//! gateway asks its broker nothing for a page nobody reads).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use packgate_protocol::names::STREAMS;
use packgate_protocol::MetricsSnapshot;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::web::Site;
use super::Shared;
use crate::broker::{BrokerView, ConsumerView};
use crate::health::{self, HealthRules, WorkerState};
use crate::store::SampleStore;
use crate::telemetry::now_ms;
use crate::workers::control::AuditStore;
use crate::workers::monitor::MonitorStore;
use crate::workers::WorkerKind;

/// How often the health is gathered.
const REFRESH: Duration = Duration::from_secs(2);
/// The stores are read every this many refreshes.
const STORES_EVERY: u32 = 3;
/// Longest wait for one read of the stores.
const STORES_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows shown of events and of commands.
const RECENT: usize = 20;
/// The event kinds shown.
const EVENT_KINDS: [&str; 4] = [
    "alarm_raised",
    "alarm_cleared",
    "pack_online",
    "pack_offline",
];

/// Everything the page's health section shows.
#[derive(Debug, Serialize)]
struct Overview<'a> {
    now_ms: i64,
    broker: BrokerState,
    workers: Vec<WorkerRow>,
    streams: Vec<StreamRow>,
    cloud: CloudRow,
    /// Each bank's latest state: the limits the inverter is given.
    banks: Vec<BankRow>,
    #[serde(flatten)]
    stores: &'a Stores,
}

/// One bank, as `status` shows it.
#[derive(Debug, Serialize)]
struct BankRow {
    name: String,
    timestamp_ms: i64,
    packs_online: u32,
    packs_total: u32,
    soc_pct: f32,
    voltage_v: f32,
    current_a: f32,
    charge_voltage_v: f32,
    charge_current_a: f32,
    discharge_current_a: f32,
    /// `absorption` or `float`.
    stage: String,
    /// Why the bank sends zero currents, when it does.
    stop: Option<String>,
}

/// The banks' latest states, by name.
fn bank_rows(shared: &Shared) -> Vec<BankRow> {
    shared.with(|held| {
        held.exposed
            .banks
            .values()
            .map(|b| BankRow {
                name: b.bank_id.to_string(),
                timestamp_ms: b.timestamp_ms,
                packs_online: b.packs_online,
                packs_total: b.packs_total,
                soc_pct: b.soc_pct,
                voltage_v: b.voltage_v,
                current_a: b.current_a,
                charge_voltage_v: b.charge_voltage_v,
                charge_current_a: b.charge_current_a,
                discharge_current_a: b.discharge_current_a,
                stage: format!("{:?}", b.stage).to_lowercase(),
                stop: b.stop.map(|stop| format!("{stop:?}")),
            })
            .collect()
    })
}

#[derive(Debug, Serialize)]
struct BrokerState {
    reachable: bool,
    reason: Option<String>,
}

/// One worker, as `status` shows it.
#[derive(Debug, Serialize)]
struct WorkerRow {
    name: &'static str,
    /// `alive`, `stalled`, `missing` or `disabled`.
    state: &'static str,
    /// Why stalled, or the setting that disables it.
    why: Vec<String>,
    last_seen_ms: Option<i64>,
    instance: Option<String>,
    version: Option<String>,
    uptime_s: Option<u64>,
    rss_bytes: Option<u64>,
    counter: Option<(String, u64)>,
}

#[derive(Debug, Serialize)]
struct StreamRow {
    name: &'static str,
    /// Absent: the stream is not there or the broker did not answer.
    messages: Option<u64>,
    bytes: Option<u64>,
    consumers: Vec<ConsumerRow>,
}

#[derive(Debug, Serialize)]
struct ConsumerRow {
    name: &'static str,
    worker: &'static str,
    /// `ok`, `missing` or `unknown`.
    state: &'static str,
    lag: Option<u64>,
}

#[derive(Debug, Serialize)]
struct CloudRow {
    enabled: bool,
    up: Option<bool>,
    /// Why the link is down, when the worker said.
    why: Option<String>,
    backlog: Option<f64>,
    upload_lag_ms: Option<f64>,
    as_of_ms: Option<i64>,
}

/// What the stores say: read less often than the rest.
#[derive(Debug, Default, Serialize)]
struct Stores {
    events: Vec<EventRow>,
    /// Why there are no events to show, when they cannot be read.
    events_note: Option<String>,
    commands: Vec<CommandRow>,
    commands_note: Option<String>,
    dead_letters: Option<u64>,
    dead_letters_note: Option<String>,
}

#[derive(Debug, Serialize)]
struct EventRow {
    timestamp_ms: i64,
    pack: String,
    kind: String,
    detail: String,
}

#[derive(Debug, Serialize)]
struct CommandRow {
    received_at_ms: i64,
    id: String,
    pack: String,
    setting: String,
    value: f64,
    origin: String,
    outcome: Option<String>,
    read_back: Option<f64>,
    detail: Option<String>,
}

/// Where the refresher writes the health, and how many read it.
#[derive(Debug)]
pub(super) struct Feed {
    /// The health's JSON; empty while nobody watches (what it held then
    /// is out of date).
    pub(super) out: watch::Sender<Arc<str>>,
    /// Live streams open.
    pub(super) viewers: watch::Receiver<usize>,
}

/// Gathers the health every [`REFRESH`] into `feed` while a live stream is
/// open, until `shutdown`.
pub(super) async fn refresh(
    site: Arc<Site>,
    shared: Shared,
    client: async_nats::Client,
    mut feed: Feed,
    shutdown: CancellationToken,
) {
    let mut stores = Stores::default();
    let mut reading: Option<JoinHandle<Stores>> = None;
    let mut round = 0u32;
    loop {
        if *feed.viewers.borrow_and_update() == 0 {
            feed.out.send_replace(Arc::from(""));
            tokio::select! {
                () = shutdown.cancelled() => return,
                watching = feed.viewers.wait_for(|open| *open > 0) => {
                    if watching.is_err() {
                        return;
                    }
                }
            }
            // Afresh: the stores first, waited for.
            round = 0;
        }
        // One read at a time: a slow one is waited for, not repeated.
        if reading.is_none() && round % STORES_EVERY == 0 {
            let site = Arc::clone(&site);
            reading = Some(tokio::task::spawn_blocking(move || read_stores(&site)));
        }
        if let Some(handle) = reading.as_mut() {
            let wait = if round == 0 {
                STORES_TIMEOUT
            } else {
                Duration::ZERO
            };
            if let Ok(done) = tokio::time::timeout(wait, handle).await {
                reading = None;
                if let Ok(read) = done {
                    stores = read;
                }
            }
        }
        round = round.wrapping_add(1);
        let overview = gather(&site, &shared, &client, &stores).await;
        let text: Arc<str> = serde_json::to_string(&overview).unwrap_or_default().into();
        feed.out.send_replace(text);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REFRESH) => {}
        }
    }
}

/// The newest snapshot of each worker kind, of whichever instance.
fn newest_snapshots(shared: &Shared) -> BTreeMap<String, MetricsSnapshot> {
    shared.with(|held| {
        let mut newest: BTreeMap<String, MetricsSnapshot> = BTreeMap::new();
        for snapshot in held.exposed.snapshots.values() {
            let older = newest
                .get(&snapshot.worker)
                .is_none_or(|s| s.timestamp_ms < snapshot.timestamp_ms);
            if older {
                newest.insert(snapshot.worker.clone(), snapshot.clone());
            }
        }
        newest
    })
}

async fn gather<'a>(
    site: &Site,
    shared: &Shared,
    client: &async_nats::Client,
    stores: &'a Stores,
) -> Overview<'a> {
    let rules = &site.view.health;
    let now = now_ms();
    let snapshots = newest_snapshots(shared);
    let mut broker = BrokerView::new(Some(client));
    let mut lags: BTreeMap<&'static str, ConsumerView> = BTreeMap::new();
    let mut workers = Vec::new();
    for kind in WorkerKind::ALL {
        let snapshot = snapshots.get(kind.name());
        let state = worker_state(rules, kind, snapshot, &mut broker, &mut lags, now).await;
        workers.push(worker_row(kind, snapshot, state));
    }
    let streams = streams(&mut broker, &lags).await;
    Overview {
        banks: bank_rows(shared),
        now_ms: now,
        broker: BrokerState {
            reachable: broker.reachable(),
            reason: (!broker.reachable()).then(|| broker.reason().to_owned()),
        },
        workers,
        streams,
        cloud: cloud_row(rules, snapshots.get(WorkerKind::Cloud.name())),
        stores,
    }
}

/// A worker's state from its newest snapshot and its consumers on the
/// broker (whose lags go into `lags`, for the streams' rows).
async fn worker_state(
    rules: &HealthRules,
    kind: WorkerKind,
    snapshot: Option<&MetricsSnapshot>,
    broker: &mut BrokerView,
    lags: &mut BTreeMap<&'static str, ConsumerView>,
    now: i64,
) -> WorkerState {
    let window_ms = rules.alive_window_ms;
    let mut reasons = Vec::new();
    // The consumers of a worker the configuration does not run are not
    // looked for.
    let consumers = match rules.disabled_by(kind) {
        None => kind.consumers(),
        Some(_) => &[],
    };
    for spec in consumers {
        let view = broker.consumer(spec).await;
        lags.insert(spec.durable, view);
        match (view, snapshot) {
            (ConsumerView::Missing, Some(_)) => reasons.push(health::missing_consumer(spec)),
            (ConsumerView::Lag(lag), Some(s)) if kind == WorkerKind::Data => {
                reasons.extend(health::data_stall(
                    &s.gauges,
                    s.timestamp_ms,
                    s.uptime_s,
                    lag,
                    now,
                    window_ms,
                ));
            }
            _ => {}
        }
    }
    let fresh = snapshot.is_some_and(|s| now - s.timestamp_ms <= window_ms);
    if !fresh {
        reasons.clear();
    }
    rules.worker_state(kind, snapshot.map(|s| s.timestamp_ms), now, reasons)
}

/// A worker's row of the page.
fn worker_row(
    kind: WorkerKind,
    snapshot: Option<&MetricsSnapshot>,
    state: WorkerState,
) -> WorkerRow {
    let why = match &state {
        WorkerState::Stalled(reasons) => reasons.clone(),
        WorkerState::Disabled(setting) => vec![(*setting).to_owned()],
        WorkerState::Alive | WorkerState::Missing => Vec::new(),
    };
    WorkerRow {
        name: kind.name(),
        state: state.name(),
        why,
        last_seen_ms: snapshot.map(|s| s.timestamp_ms),
        instance: snapshot.map(|s| s.instance.clone()),
        version: snapshot.map(|s| s.version.clone()),
        uptime_s: snapshot.map(|s| s.uptime_s),
        rss_bytes: snapshot.map(|s| s.rss_bytes),
        counter: snapshot.and_then(|s| kind.key_counter(&s.counters)),
    }
}

/// The cloud link's row, from the cloud worker's newest snapshot.
fn cloud_row(rules: &HealthRules, snapshot: Option<&MetricsSnapshot>) -> CloudRow {
    let link = snapshot.map(|s| health::cloud_link(&s.gauges, &s.notes));
    CloudRow {
        enabled: rules.disabled_by(WorkerKind::Cloud).is_none(),
        up: link.as_ref().and_then(|l| l.up),
        why: link.as_ref().and_then(|l| l.why.clone()),
        backlog: link.as_ref().and_then(|l| l.backlog),
        upload_lag_ms: link.as_ref().and_then(|l| l.upload_lag_ms),
        as_of_ms: snapshot.map(|s| s.timestamp_ms),
    }
}

/// Each stream's size and the lags of the consumers the workers read.
async fn streams(
    broker: &mut BrokerView,
    lags: &BTreeMap<&'static str, ConsumerView>,
) -> Vec<StreamRow> {
    let mut rows = Vec::new();
    for spec in STREAMS {
        let state = broker
            .stream(spec.name)
            .await
            .map(|stream| stream.cached_info().state.clone());
        let mut consumers = Vec::new();
        for kind in WorkerKind::ALL {
            for consumer in kind.consumers() {
                if consumer.stream != spec.name {
                    continue;
                }
                let (state, lag) = match lags.get(consumer.durable) {
                    None => continue,
                    Some(ConsumerView::Lag(lag)) => ("ok", Some(*lag)),
                    Some(ConsumerView::Missing) => ("missing", None),
                    Some(ConsumerView::Unknown) => ("unknown", None),
                };
                consumers.push(ConsumerRow {
                    name: consumer.durable,
                    worker: kind.name(),
                    state,
                    lag,
                });
            }
        }
        rows.push(StreamRow {
            name: spec.name,
            messages: state.as_ref().map(|s| s.messages),
            bytes: state.as_ref().map(|s| s.bytes),
            consumers,
        });
    }
    rows
}

/// Recent events, recent commands and the dead letters, each store read
/// only, each failure said in a note instead.
fn read_stores(site: &Site) -> Stores {
    let mut stores = Stores::default();
    match MonitorStore::open_read_only(&site.monitor_db)
        .and_then(|store| store.recent_events(&EVENT_KINDS, RECENT))
    {
        Ok(events) => {
            stores.events = events
                .into_iter()
                .map(|e| EventRow {
                    timestamp_ms: e.timestamp_ms,
                    pack: e.pack_id,
                    kind: e.kind,
                    detail: e.detail,
                })
                .collect();
        }
        Err(error) => stores.events_note = Some(error.to_string()),
    }
    match AuditStore::open_read_only(&site.control_db)
        .and_then(|store| store.recent_summaries(RECENT))
    {
        Ok(commands) => {
            stores.commands = commands
                .into_iter()
                .map(|c| CommandRow {
                    received_at_ms: c.received_at_ms,
                    id: c.command_id,
                    pack: c.pack_id,
                    setting: c.setting,
                    value: c.value,
                    origin: c.origin,
                    outcome: c.outcome,
                    read_back: c.read_back,
                    detail: c.detail,
                })
                .collect();
        }
        Err(error) => stores.commands_note = Some(error.to_string()),
    }
    match SampleStore::open_read_only(&site.samples_db).and_then(|s| s.dead_letter_count()) {
        Ok(count) => stores.dead_letters = Some(count),
        Err(error) => stores.dead_letters_note = Some(error.to_string()),
    }
    stores
}

#[cfg(test)]
#[path = "overview_tests.rs"]
mod tests;
