//! The gateway as a process, stopped and started again around a cloud
//! outage (the cloud refusing connections, or hung with its sockets open):
//! it stops promptly, what it held is handed back and reaches the cloud
//! first, in order, once; and after a restart `packgate status` says why
//! the link is down and how far the uploads lag.

// Test harness: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use async_nats::jetstream;
use packgate::workers::cloud::CLOUD_SAMPLES_CONSUMER;
use packgate_protocol::names::{ConsumerSpec, EVENTS_STREAM, SAMPLES_STREAM};
use support::cloud::*;
use support::cloud_process::*;
use support::*;

async fn in_hand(local: &jetstream::Context, spec: &ConsumerSpec) -> usize {
    let stream = local.get_stream(spec.stream).await.unwrap();
    stream
        .consumer_info(spec.durable)
        .await
        .map_or(0, |info| info.num_ack_pending)
}

/// Every sample and event of the cloud, per pack, checked against the
/// local streams: a prefix of each, in order. Returns (samples, events).
async fn check_cloud_order(
    cloud: &async_nats::Client,
    local: &async_nats::Client,
    gw: &str,
) -> (usize, usize) {
    let samples_filter = format!("packgate.{gw}.samples.>");
    let events_filter = format!("packgate.{gw}.events.>");
    let cloud_samples =
        keys_in_stream_order(cloud, "PACKGATE_CLOUD", Some(samples_filter.as_str())).await;
    let cloud_events =
        keys_in_stream_order(cloud, "PACKGATE_CLOUD", Some(events_filter.as_str())).await;
    let local_samples = keys_in_stream_order(local, SAMPLES_STREAM.name, None).await;
    let local_events = keys_in_stream_order(local, EVENTS_STREAM.name, None).await;
    (
        assert_prefix_of_local("samples", &cloud_samples, &local_samples),
        assert_prefix_of_local("events", &cloud_events, &local_events),
    )
}

/// How the cloud is away when the gateway stops.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outage {
    /// Killed: connections are refused, the link is down at once.
    Refusing,
    /// Stopped (SIGSTOP) with its sockets open, like a host behind a
    /// dropped route: uploads wait for acks that do not come.
    Hung,
}

/// Longest a gateway may take to stop, as the service manager allows it
/// (`TimeoutStopSec` of the unit is 30 s; less here, with less to do).
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// SIGTERM, and SIGKILL when the gateway has not stopped within
/// [`STOP_WITHIN`], as the service manager does; whether it stopped by
/// itself, and how long it took.
fn stop_like_the_service_manager(child: &mut std::process::Child) -> (bool, Duration) {
    let pid = i32::try_from(child.id()).unwrap();
    let asked = std::time::Instant::now();
    // SAFETY: signalling our own child, not reaped yet.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    while asked.elapsed() < STOP_WITHIN {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit after SIGTERM: {status}");
            return (true, asked.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    (false, asked.elapsed())
}

/// Stops the gateway while the cloud is away with a batch in hand, brings
/// the cloud back and the gateway again: what the first run held reaches
/// the cloud before anything newer, and everything once.
async fn stop_during_outage_then_restart(outage: Outage) {
    let _serial = SERIAL.lock().await;
    let local = TestBroker::start().await;
    let mut cloud = TestBroker::start().await;
    let gw = "gw-restart";
    let observer = async_nats::connect(cloud.url()).await.unwrap();
    create_cloud_stream(observer.clone(), gw).await;
    let local_client = async_nats::connect(local.url()).await.unwrap();
    let local_js = jetstream::new(local_client.clone());
    // A patient request timeout (a slow uplink): an upload to a hung
    // cloud takes longer to fail than a stop may take.
    let config = write_config(
        local.dir.path(),
        &local.url(),
        &cloud.url(),
        gw,
        3,
        "request_timeout_ms = 30000",
    );
    let log = local.dir.path().join("gateway.log");

    let mut first = spawn_gateway(&config, &log);
    wait_for("first uploads", Duration::from_secs(30), async || {
        cloud_count(&observer).await >= 30
    })
    .await;

    // The cloud goes away; the uploader takes a batch it cannot deliver.
    let resume = match outage {
        Outage::Refusing => {
            cloud.server.kill().await;
            None
        }
        Outage::Hung => {
            signal_pid(cloud.server.pid().unwrap(), libc::SIGSTOP);
            cloud.server.pid()
        }
    };
    wait_for("a batch in hand", Duration::from_secs(15), async || {
        in_hand(&local_js, &CLOUD_SAMPLES_CONSUMER).await > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = in_hand(&local_js, &CLOUD_SAMPLES_CONSUMER).await;
    let (stopped, took) = stop_like_the_service_manager(&mut first.0);
    let at_stop = local_count(&local.url()).await;

    // The cloud comes back (a hung one is killed first: what its sockets
    // held is lost, as with a host that went away), then the gateway.
    if let Some(pid) = resume {
        signal_pid(pid, libc::SIGKILL);
        signal_pid(pid, libc::SIGCONT);
    }
    cloud.server.restart().await.unwrap();
    let observer = async_nats::connect(cloud.url()).await.unwrap();
    let mut second = spawn_gateway(&config, &log);
    wait_for(
        "the second run's uploads",
        Duration::from_secs(60),
        async || cloud_count(&observer).await >= at_stop + 30,
    )
    .await;
    // What the first run held is in the cloud before anything newer.
    let (samples, events) = check_cloud_order(&observer, &local_client, gw).await;
    assert!(
        stopped,
        "{outage:?}: the gateway did not stop within {STOP_WITHIN:?}"
    );

    sigterm_and_wait(&mut second.0);
    // The cloud worker alone uploads what the second run left.
    let all = local_count(&local.url()).await;
    if cloud_count(&observer).await < all {
        // (Its signal handler is in place before it connects anywhere.)
        let mut uploader = spawn_packgate("cloud", &config, &log);
        wait_for("the rest", Duration::from_secs(60), async || {
            cloud_count(&observer).await >= all
        })
        .await;
        sigterm_and_wait(&mut uploader.0);
    }
    let (samples_end, events_end) = check_cloud_order(&observer, &local_client, gw).await;
    assert_eq!(
        (samples_end + events_end) as u64,
        all,
        "the cloud holds what the local streams hold"
    );
    assert_eq!(cloud_count(&observer).await, all, "duplicates in the cloud");
    println!(
        "{outage:?}: held {held} samples at the stop, stopped in {took:?}; {at_stop} messages \
         then; {samples} samples and {events} events in order after the restart; {all} in \
         the end, each once"
    );
}

/// Sends `signal` to a process this test started.
fn signal_pid(pid: u32, signal: i32) {
    let pid = i32::try_from(pid).unwrap();
    // SAFETY: kill(2) on a nats-server child of this test, not yet reaped.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, signal);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_outage_restart_order_per_pack_preserved_cloud_refusing() {
    stop_during_outage_then_restart(Outage::Refusing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_outage_restart_order_per_pack_preserved_cloud_hung() {
    stop_during_outage_then_restart(Outage::Hung).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_with_the_cloud_down_status_says_why_and_how_far_uploads_lag() {
    let _serial = SERIAL.lock().await;
    let local = TestBroker::start().await;
    let mut cloud = TestBroker::start().await;
    let gw = "gw-status";
    let observer = async_nats::connect(cloud.url()).await.unwrap();
    create_cloud_stream(observer.clone(), gw).await;
    let config = write_config(local.dir.path(), &local.url(), &cloud.url(), gw, 2, "");
    let log = local.dir.path().join("gateway.log");

    let mut first = spawn_gateway(&config, &log);
    wait_for("first uploads", Duration::from_secs(30), async || {
        cloud_count(&observer).await >= 20
    })
    .await;
    sigterm_and_wait(&mut first.0);

    // Started again while the cloud is gone: nothing can be uploaded, yet
    // status knows how old the last upload is, and why the link is down.
    cloud.server.kill().await;
    let mut second = spawn_gateway(&config, &log);
    let mut line = String::new();
    for _ in 0..60 {
        line = cloud_line(&status_text(&config));
        if line.starts_with("DOWN (") && line.contains("upload lag") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        line.starts_with("DOWN (connection refused") && line.contains("upload lag"),
        "status: {line}\nlog:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    sigterm_and_wait(&mut second.0);
    println!("status after the restart: {line}");
}
