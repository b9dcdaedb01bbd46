//! The leaf node option: the box's nats-server joins the cloud cluster of
//! `deploy/cloud/` as a leaf node (`deploy/cloud/leaf-node.conf`, with the
//! gateway's own user), and the cloud worker uploads through it. The node
//! the stream is led by is killed (SIGKILL) mid-upload and started again:
//! every sample and event still reaches the cloud exactly once, in order
//! per pack, and the box's own JetStream stays its own.

// Test harness: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use packgate_protocol::names::{EVENTS_STREAM, SAMPLES_STREAM};
use support::cloud::wait_for;
use support::cloud_process::*;
use support::fleet::{deploy_file, shipped_cloud, swap};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_as_a_leaf_node_uploads_exactly_once_through_a_cluster_node_killed() {
    let (mut cluster, passwords) = shipped_cloud().await;
    let gw = "site-7";
    let mut leaf = deploy_file("leaf-node.conf");
    leaf = swap(&leaf, "$SITE_7_PASSWORD", &passwords[1]);
    for (n, node) in cluster.nodes.iter().enumerate() {
        leaf = swap(
            &leaf,
            &format!("cloud-{}.example.internal:7422", n + 1),
            &format!("127.0.0.1:{}", node.leaf_port),
        );
    }
    let local = TestBroker::start_with_config(Some(format!(
        "server_name: box-{gw}\njetstream {{ domain: {gw} }}\n{leaf}"
    )))
    .await;
    // The cloud worker's "cloud" is the box's own server.
    let config = write_config(local.dir.path(), &local.url(), &local.url(), gw, 2, "");
    let log = local.dir.path().join("gateway.log");
    let mut gateway = spawn_gateway(&config, &log);

    let observer = cluster.client().await;
    let filters = [
        format!("packgate.{gw}.samples.>"),
        format!("packgate.{gw}.events.>"),
    ];
    // 0 while the stream does not answer (a leader being elected).
    let in_cloud = async |observer: &async_nats::Client| {
        let mut sum = 0;
        for filter in &filters {
            match try_keys_in_stream_order(observer, "PACKGATE_CLOUD", Some(filter.as_str())).await
            {
                Ok(keys) => sum += keys.values().map(Vec::len).sum::<usize>(),
                Err(_) => return 0,
            }
        }
        sum
    };
    wait_for(
        "uploads through the leaf node",
        Duration::from_secs(150),
        async || in_cloud(&observer).await >= 20,
    )
    .await;

    let leader = cluster.stream_leader("PACKGATE_CLOUD").await.unwrap();
    let before = in_cloud(&observer).await;
    cluster.kill(&leader).await;
    let killed_at = Instant::now();
    let observer = cluster.client().await;
    wait_for(
        "uploads with a node down",
        Duration::from_secs(150),
        async || in_cloud(&observer).await >= before + 20,
    )
    .await;
    let resumed_in = killed_at.elapsed();
    cluster.restart(&leader).await;
    let after_restart = in_cloud(&observer).await;
    wait_for(
        "uploads after the restart",
        Duration::from_secs(150),
        async || in_cloud(&observer).await >= after_restart + 20,
    )
    .await;

    sigterm_and_wait(&mut gateway.0);
    let local_client = async_nats::connect(local.url()).await.unwrap();
    let local_samples = keys_in_stream_order(&local_client, SAMPLES_STREAM.name, None).await;
    let local_events = keys_in_stream_order(&local_client, EVENTS_STREAM.name, None).await;
    let all: usize = local_samples
        .values()
        .chain(local_events.values())
        .map(Vec::len)
        .sum();
    if in_cloud(&observer).await < all {
        let mut uploader = spawn_packgate("cloud", &config, &log);
        wait_for("the rest", Duration::from_secs(150), async || {
            in_cloud(&observer).await >= all
        })
        .await;
        sigterm_and_wait(&mut uploader.0);
    }
    let samples_filter = format!("packgate.{gw}.samples.>");
    let events_filter = format!("packgate.{gw}.events.>");
    let samples =
        keys_in_stream_order(&observer, "PACKGATE_CLOUD", Some(samples_filter.as_str())).await;
    let events =
        keys_in_stream_order(&observer, "PACKGATE_CLOUD", Some(events_filter.as_str())).await;
    assert_eq!(samples, local_samples, "cloud and local samples");
    assert_eq!(events, local_events, "cloud and local events");
    assert_eq!(in_cloud(&observer).await, all, "duplicates in the cloud");
    // The box's streams are its own: the cloud has none of them.
    let js = async_nats::jetstream::new(observer.clone());
    assert!(js.get_stream(SAMPLES_STREAM.name).await.is_err());
    println!(
        "leaf node: killed the stream leader {leader}, uploads resumed within {resumed_in:?}; \
         {all} messages in the cloud, each once, in order"
    );
}
