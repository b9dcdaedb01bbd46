//! A fleet on a clustered cloud: three gateways, each its own `packgate`
//! process with its own local broker and `gateway_id`, upload to a
//! three-node JetStream cluster whose cloud stream has three replicas. The
//! node leading that stream is killed (SIGKILL) mid-upload and started
//! again: every sample and event reaches the cloud exactly once per
//! gateway, in local order per pack, and the desired-settings bucket (also
//! three replicas) answers while the node is down.

// Test harness: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use futures_util::TryStreamExt;
use packgate_protocol::names::{EVENTS_STREAM, SAMPLES_STREAM};
use packgate_protocol::{BootId, PackId};
use support::cloud::wait_for;
use support::cloud_process::*;
use support::cluster::Cluster;
use support::fleet::stream_definition;
use support::*;

/// The gateways of the fleet.
const GATEWAYS: [&str; 3] = ["site-a", "site-b", "site-c"];

/// Packs per gateway.
const PACKS: usize = 2;

/// The cloud stream as the cloud operator creates it (deploy/cloud/):
/// every gateway's samples and events, three replicas, a duplicate window
/// of ten minutes.
fn cloud_stream() -> stream::Config {
    stream::Config {
        name: "PACKGATE_CLOUD".into(),
        subjects: vec!["packgate.*.samples.>".into(), "packgate.*.events.>".into()],
        num_replicas: 3,
        duplicate_window: Duration::from_secs(600),
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// One gateway of the fleet: its local broker, configuration and process.
struct Site {
    gateway_id: &'static str,
    local: TestBroker,
    config: PathBuf,
    log: PathBuf,
    process: KillOnDrop,
}

/// The tail of each gateway's log on a failed run: what its cloud link did.
impl Drop for Site {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!("--- {} log, last {} lines ---", self.gateway_id, tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

type Keys = BTreeMap<PackId, Vec<(BootId, u64)>>;

/// What the cloud holds of `gateway_id`: (samples, events) per pack, in
/// cloud stream order.
async fn in_cloud(cloud: &async_nats::Client, gateway_id: &str) -> (Keys, Keys) {
    let samples = format!("packgate.{gateway_id}.samples.>");
    let events = format!("packgate.{gateway_id}.events.>");
    (
        keys_in_stream_order(cloud, "PACKGATE_CLOUD", Some(samples.as_str())).await,
        keys_in_stream_order(cloud, "PACKGATE_CLOUD", Some(events.as_str())).await,
    )
}

fn total(keys: &Keys) -> usize {
    keys.values().map(Vec::len).sum()
}

/// Messages the cloud holds of each gateway, from the stream's per-subject
/// counts (one request to the stream leader, no consumer: creating
/// consumers for every look would load the cluster's meta layer while a
/// node is down, and measure the observer rather than the gateways); zeros
/// while the stream does not answer (a leader being elected).
async fn cloud_totals(cloud: &async_nats::Client) -> Vec<usize> {
    let count = async {
        let js = jetstream::new(cloud.clone());
        let stream = js.get_stream("PACKGATE_CLOUD").await.ok()?;
        let mut totals = Vec::new();
        for gateway_id in GATEWAYS {
            let mut subjects = stream
                .info_with_subjects(format!("packgate.{gateway_id}.>"))
                .await
                .ok()?;
            let mut sum = 0;
            while let Some((_, n)) = subjects.try_next().await.ok()? {
                sum += n;
            }
            totals.push(sum);
        }
        Some(totals)
    };
    match tokio::time::timeout(Duration::from_secs(5), count).await {
        Ok(Some(totals)) => totals,
        _ => vec![0; GATEWAYS.len()],
    }
}

/// Puts a desired value and reads it back, retrying while the bucket's
/// stream elects a leader; how long it took.
async fn put_and_get(cloud: &Cluster, key: &str, value: &str) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    loop {
        let attempt = async {
            let js = jetstream::new(cloud.client().await);
            let store = js.get_key_value("PACKGATE_DESIRED").await.ok()?;
            store.put(key, value.to_owned().into()).await.ok()?;
            store.get(key).await.ok()?
        };
        if let Ok(Some(got)) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
            assert_eq!(got.as_ref(), value.as_bytes());
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the desired-settings bucket did not answer with a node down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_uploads_exactly_once_in_order_through_a_cluster_node_killed_and_restarted() {
    let mut cluster = Cluster::start(3).await;
    cluster.create_stream(cloud_stream()).await;
    // The bucket as deploy/cloud/ defines it: three replicas.
    cluster
        .create_stream(stream_definition("PACKGATE_DESIRED.json"))
        .await;
    let observer = cluster.client().await;

    let mut sites = Vec::new();
    for gateway_id in GATEWAYS {
        let local = TestBroker::start().await;
        let config = write_config_urls(
            local.dir.path(),
            &local.url(),
            &cluster.urls(),
            gateway_id,
            PACKS,
            "",
        );
        let log = local.dir.path().join("gateway.log");
        let process = spawn_gateway(&config, &log);
        sites.push(Site {
            gateway_id,
            local,
            config,
            log,
            process,
        });
    }
    wait_for(
        "every gateway's first uploads",
        Duration::from_secs(150),
        async || cloud_totals(&observer).await.iter().all(|n| *n >= 20),
    )
    .await;

    // The node leading the cloud stream dies mid-upload.
    let leader = cluster.stream_leader("PACKGATE_CLOUD").await.unwrap();
    let before_kill = cloud_totals(&observer).await;
    cluster.kill(&leader).await;
    let killed_at = Instant::now();

    // Two nodes of three still make a quorum: the bucket answers, and the
    // uploads go on.
    let kv_took = put_and_get(&cluster, "site-a.sim-01.charge_current_limit_a", "40").await;
    let observer = cluster.client().await;
    wait_for(
        "uploads from every gateway with a node down",
        Duration::from_secs(150),
        async || {
            cloud_totals(&observer)
                .await
                .iter()
                .zip(&before_kill)
                .all(|(now, then)| *now >= then + 20)
        },
    )
    .await;
    let resumed_in = killed_at.elapsed();
    let while_down = cloud_totals(&observer).await;

    cluster.restart(&leader).await;
    wait_for(
        "the restarted node to catch up",
        Duration::from_secs(150),
        async || cluster.current_replicas("PACKGATE_CLOUD").await == 3,
    )
    .await;
    wait_for(
        "uploads after the restart",
        Duration::from_secs(150),
        async || {
            cloud_totals(&observer)
                .await
                .iter()
                .zip(&while_down)
                .all(|(now, then)| *now >= then + 20)
        },
    )
    .await;

    // Each gateway stops; what it had not uploaded yet goes up with its
    // cloud worker alone, and then the cloud must hold exactly its local
    // streams, in order per pack.
    for site in &mut sites {
        sigterm_and_wait(&mut site.process.0);
    }
    let mut report = Vec::new();
    for site in &sites {
        let local = async_nats::connect(site.local.url()).await.unwrap();
        let local_samples = keys_in_stream_order(&local, SAMPLES_STREAM.name, None).await;
        let local_events = keys_in_stream_order(&local, EVENTS_STREAM.name, None).await;
        let all = total(&local_samples) + total(&local_events);
        let (samples, events) = in_cloud(&observer, site.gateway_id).await;
        if total(&samples) + total(&events) < all {
            let mut uploader = spawn_packgate("cloud", &site.config, &site.log);
            wait_for("the rest", Duration::from_secs(150), async || {
                let (s, e) = in_cloud(&observer, site.gateway_id).await;
                total(&s) + total(&e) >= all
            })
            .await;
            sigterm_and_wait(&mut uploader.0);
        }
        let (samples, events) = in_cloud(&observer, site.gateway_id).await;
        let gw = site.gateway_id;
        assert_eq!(samples.len(), PACKS, "{gw}: packs in the cloud");
        assert_prefix_of_local(&format!("{gw} samples"), &samples, &local_samples);
        assert_prefix_of_local(&format!("{gw} events"), &events, &local_events);
        assert_eq!(samples, local_samples, "{gw}: cloud and local samples");
        assert_eq!(events, local_events, "{gw}: cloud and local events");
        for (pack, keys) in &samples {
            let seqs: Vec<u64> = keys.iter().map(|(_, seq)| *seq).collect();
            let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
            assert_eq!(seqs, expected, "{gw} {pack}: gap, duplicate or disorder");
        }
        let log = std::fs::read_to_string(&site.log).unwrap_or_default();
        let retries = log
            .lines()
            .filter(|l| l.contains("cloud upload failed"))
            .count();
        report.push(format!(
            "{gw}: {} samples, {} events, {retries} failed-upload warnings",
            total(&samples),
            total(&events)
        ));
    }
    // Nothing twice in the stream as a whole either.
    let all_local: usize = cloud_totals(&observer).await.iter().sum();
    assert_eq!(
        support::cloud::cloud_count(&observer).await,
        all_local as u64,
        "messages in the cloud stream outside the gateways' subjects"
    );
    println!(
        "killed the stream leader {leader}; the bucket answered after {kv_took:?}, uploads \
         from every gateway resumed within {resumed_in:?}; {}",
        report.join("; ")
    );
}
