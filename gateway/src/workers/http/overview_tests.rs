//! The refresher asks the broker nothing while no page is open.

use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt as _;

use super::*;
use crate::broker::{NatsServer, NatsServerOptions};
use crate::config::Config;
use crate::workers::http::HttpMetrics;

/// Waits until `text` satisfies `done`, at most 15 s.
async fn until(text: &mut watch::Receiver<Arc<str>>, done: impl Fn(&str) -> bool) {
    tokio::time::timeout(Duration::from_secs(15), text.wait_for(|t| done(t)))
        .await
        .expect("in time")
        .expect("the refresher runs");
}

#[tokio::test]
async fn the_health_is_gathered_only_while_a_page_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(NatsServerOptions::new(dir.path().join("store")))
        .await
        .unwrap();
    // Every JetStream request on the broker, whoever sends it.
    let watcher = async_nats::connect(server.url()).await.unwrap();
    let mut requests = watcher.subscribe("$JS.API.>").await.unwrap();
    watcher.flush().await.unwrap();
    let asked = Arc::new(AtomicU64::new(0));
    let counter = {
        let asked = Arc::clone(&asked);
        tokio::spawn(async move {
            while requests.next().await.is_some() {
                asked.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    config.add_sim_packs(2).unwrap();
    let site = Arc::new(Site::new(
        config.http.clone(),
        crate::workers::GatewayView::of(&config),
        &config.data_dir,
    ));
    let shared = Shared::new(Arc::new(HttpMetrics::default()));
    let client = async_nats::connect(server.url()).await.unwrap();
    let (viewers, watching) = watch::channel(0usize);
    let out = watch::Sender::new(Arc::<str>::from(""));
    let mut text = out.subscribe();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(refresh(
        site,
        shared,
        client,
        Feed {
            out,
            viewers: watching,
        },
        shutdown.clone(),
    ));

    // Nobody watches: nothing gathered, nothing asked.
    tokio::time::sleep(REFRESH * 2).await;
    assert_eq!(&**text.borrow(), "");
    assert_eq!(asked.load(Ordering::SeqCst), 0);

    // A page opens: the health is gathered at once, the broker asked.
    viewers.send_replace(1);
    until(&mut text, |t| !t.is_empty()).await;
    let health: serde_json::Value = serde_json::from_str(&text.borrow()).unwrap();
    assert!(
        health["workers"].as_array().is_some_and(|w| !w.is_empty()),
        "{health}"
    );
    assert_eq!(health["broker"]["reachable"], true, "{health}");
    assert!(asked.load(Ordering::SeqCst) > 0);

    // The last page closes: the health is dropped as out of date, and
    // the broker is asked nothing more.
    viewers.send_replace(0);
    until(&mut text, str::is_empty).await;
    watcher.flush().await.unwrap();
    let before = asked.load(Ordering::SeqCst);
    tokio::time::sleep(REFRESH * 2).await;
    watcher.flush().await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), before);

    shutdown.cancel();
    task.await.unwrap();
    counter.abort();
}
