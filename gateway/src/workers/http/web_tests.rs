//! The live stream: what it sends first, that a reader behind gets only
//! the newest sample of each pack that changed, and the cap on streams.

use std::sync::Arc;

use packgate_protocol::{BootId, ClockQuality, DataQuality, PackReading};
use serde_json::Value;

use super::*;
use crate::config::Config;
use crate::workers::http::HttpMetrics;

fn sample(pack: &str, seq: u64) -> Sample {
    Sample {
        pack_id: PackId::new(pack).unwrap(),
        boot_id: BootId(7),
        seq,
        timestamp_ms: now_ms(),
        quality: DataQuality::Fresh,
        reading: PackReading {
            pack_voltage_v: 50.0 + seq as f32 / 100.0,
            ..PackReading::default()
        },
        clock: ClockQuality::Trusted,
    }
}

fn app() -> (App, watch::Sender<Arc<str>>) {
    app_with_health("{\"now_ms\":1}")
}

/// An app whose health is `health` (empty: not gathered, nobody watched).
fn app_with_health(health: &str) -> (App, watch::Sender<Arc<str>>) {
    let mut config = Config::default();
    config.add_sim_packs(2).unwrap();
    let shared = Shared::new(Arc::new(HttpMetrics::default()));
    let (overview, rx) = watch::channel(Arc::<str>::from(health));
    let app = App::new(
        Arc::new(Site::new(
            config.http.clone(),
            crate::workers::GatewayView::of(&config),
            &config.data_dir,
        )),
        shared,
        rx,
        CancellationToken::new(),
    );
    (app, overview)
}

/// The next message: its name and data.
async fn next(live: Live) -> (&'static str, Value, Live) {
    let (message, live) = tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .expect("a message in time")
        .expect("the stream goes on");
    let data = serde_json::from_str(&message.data).unwrap();
    (message.name, data, live)
}

fn seqs(packs: &Value) -> Vec<(String, u64)> {
    packs["packs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_stream_sends_hello_health_all_packs_then_only_the_newest_changes() {
    let (app, overview) = app();
    app.shared.take_sample(sample("sim-01", 1));
    app.shared.take_sample(sample("sim-02", 1));
    let permit = Arc::clone(&app.live_slots).try_acquire_owned().unwrap();
    let live = Live::new(app.clone(), permit);
    let (name, hello, live) = next(live).await;
    assert_eq!(name, "hello");
    assert_eq!(hello["configured"], serde_json::json!(["sim-01", "sim-02"]));
    assert_eq!(hello["stale_after_ms"], 3_000);
    let (name, health, live) = next(live).await;
    assert_eq!((name, &health["now_ms"]), ("overview", &Value::from(1)));
    let (name, packs, live) = next(live).await;
    assert_eq!(name, "packs");
    assert_eq!(
        seqs(&packs),
        [("sim-01".to_owned(), 1), ("sim-02".to_owned(), 1)]
    );
    assert_eq!(packs["packs"][0]["state"], "online");
    assert_eq!(packs["packs"][0]["voltage_v"], 50.01);
    // A reader behind: sim-01 three times, then sim-02 changes nothing.
    for seq in 2..=4 {
        app.shared.take_sample(sample("sim-01", seq));
    }
    let (name, packs, live) = next(live).await;
    assert_eq!(name, "packs");
    assert_eq!(seqs(&packs), [("sim-01".to_owned(), 4)]);
    // The health, when it changes.
    overview.send_replace(Arc::from("{\"now_ms\":2}"));
    let (name, health, _live) = next(live).await;
    assert_eq!((name, &health["now_ms"]), ("overview", &Value::from(2)));
    assert_eq!(app.shared.metrics.live_clients.get(), 1);
}

#[tokio::test]
async fn live_streams_are_capped_and_counted() {
    let (app, _overview) = app();
    let mut open = Vec::new();
    for _ in 0..MAX_LIVE_CLIENTS {
        let response = live(State(app.clone())).await;
        assert_eq!(response.status(), StatusCode::OK);
        open.push(response);
    }
    assert_eq!(
        app.shared.metrics.live_clients.get(),
        MAX_LIVE_CLIENTS as i64
    );
    let refused = live(State(app.clone())).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.shared.metrics.live_refused.get(), 1);
    // A page closed gives its place back.
    open.pop();
    assert_eq!(
        app.shared.metrics.live_clients.get(),
        MAX_LIVE_CLIENTS as i64 - 1
    );
    let again = live(State(app.clone())).await;
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_first_page_gets_the_health_once_gathered_and_the_viewers_are_counted() {
    let (app, overview) = app_with_health("");
    let viewers = app.viewers();
    app.shared.take_sample(sample("sim-01", 1));
    let permit = Arc::clone(&app.live_slots).try_acquire_owned().unwrap();
    let live = Live::new(app.clone(), permit);
    assert_eq!(*viewers.borrow(), 1);
    let (name, _, live) = next(live).await;
    assert_eq!(name, "hello");
    // No health out of date: the packs come first.
    let (name, _, live) = next(live).await;
    assert_eq!(name, "packs");
    overview.send_replace(Arc::from("{\"now_ms\":3}"));
    let (name, health, live) = next(live).await;
    assert_eq!((name, &health["now_ms"]), ("overview", &Value::from(3)));
    // Dropped as out of date once nobody watches: never sent.
    overview.send_replace(Arc::from(""));
    app.shared.take_sample(sample("sim-01", 2));
    let (name, _, live) = next(live).await;
    assert_eq!(name, "packs");
    drop(live);
    assert_eq!(*viewers.borrow(), 0);
}
