//! The cloud of `deploy/cloud/` as shipped: its node configuration, its
//! accounts and its stream and bucket definitions, run as a three-node
//! cluster on loopback ports with generated passwords. A gateway uploads
//! and serves commands with its own user; gateway site-7's user cannot
//! publish as site-8, nor read site-8's desired settings, replies or
//! commands, by any of the ways the JetStream API offers.

// Test harness: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use packgate_protocol::names::cloud::{desired_consumer, inbox_prefix, DESIRED_BUCKET};
use support::cloud::wait_for;
use support::cloud_process::*;
use support::cluster::Cluster;
use support::fleet::shipped_cloud;
use support::*;

/// A connection as gateway `user`, the way the cloud worker connects
/// (its own inbox prefix).
async fn connect_as(cluster: &Cluster, user: &str, password: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .custom_inbox_prefix(inbox_prefix(user))
        .request_timeout(Some(Duration::from_secs(2)))
        .connect(cluster.urls())
        .await
        .unwrap()
}

/// A JetStream API request; `Some(reply)` when it was answered without an
/// error, `None` when refused, unanswered or answered with an error.
async fn api(client: &async_nats::Client, subject: String, body: &str) -> Option<String> {
    let reply = client.request(subject, body.to_owned().into()).await.ok()?;
    let text = String::from_utf8_lossy(&reply.payload).into_owned();
    let status_error = reply.status.is_some_and(|s| s.as_u16() >= 400);
    (!status_error && !text.contains("\"error\"")).then_some(text)
}

/// Whether a subscription of `client` on `subject` receives anything
/// while `provoke` runs.
async fn receives(client: &async_nats::Client, subject: &str, provoke: impl AsyncFnOnce()) -> bool {
    let Ok(mut sub) = client.subscribe(subject.to_owned()).await else {
        return false;
    };
    let _ = client.flush().await;
    provoke().await;
    tokio::time::timeout(Duration::from_secs(2), sub.next())
        .await
        .is_ok_and(|m| m.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateways_user_cannot_publish_as_another_nor_read_its_desired_settings() {
    // One at a time: each runs brokers, clusters and gateways of its own.
    let _serial = support::cloud::SERIAL.lock().await;
    let (cluster, passwords) = shipped_cloud().await;
    let ops = cluster.client().await;
    let ops_js = jetstream::new(ops.clone());
    let desired = ops_js.get_key_value(DESIRED_BUCKET).await.unwrap();
    desired
        .put("site-7.sim-01.charge_current_limit_a", "40".into())
        .await
        .unwrap();
    desired
        .put("site-8.sim-01.charge_current_limit_a", "80".into())
        .await
        .unwrap();

    let a = connect_as(&cluster, "site-7", &passwords[1]).await;
    let b = connect_as(&cluster, "site-8", &passwords[2]).await;
    let a_js = jetstream::new(a.clone());

    publishes_its_own_samples_only(&a_js, &ops_js).await;
    let own_consumer = reads_its_own_desired_settings(&a, &a_js).await;
    cannot_read_anothers_desired_settings(&a, &own_consumer).await;
    let bucket_subjects = format!("$KV.{DESIRED_BUCKET}.>");
    assert!(
        !receives(&a, &bucket_subjects, async || {
            desired
                .put("site-8.sim-01.charge_current_limit_a", "81".into())
                .await
                .unwrap();
        })
        .await,
        "site-7 saw a put of site-8's desired settings"
    );
    // Nor site-8's replies, nor its commands.
    assert!(
        !receives(&a, "_INBOX.>", async || {
            let _ = b.request(direct_get("site-8"), "".into()).await;
        })
        .await,
        "site-7 read another client's replies"
    );
    assert!(
        !receives(&a, "packgate.site-8.control", async || {
            let _ = ops.publish("packgate.site-8.control", "cmd".into()).await;
            let _ = ops.flush().await;
        })
        .await,
        "site-7 received site-8's commands"
    );
    // While site-8 still reads its own.
    let b_value = b.request(direct_get("site-8"), "".into()).await.unwrap();
    assert_eq!(b_value.payload.as_ref(), b"81");
}

/// The direct-get subject of gateway `gw`'s desired charge current limit
/// of sim-01.
fn direct_get(gw: &str) -> String {
    format!(
        "$JS.API.DIRECT.GET.KV_{DESIRED_BUCKET}.$KV.{DESIRED_BUCKET}.{gw}.sim-01.charge_current_limit_a"
    )
}

/// site-7's own samples are stored; one as site-8 is refused, and nothing
/// of site-8 is in the stream.
async fn publishes_its_own_samples_only(a_js: &jetstream::Context, ops_js: &jetstream::Context) {
    let own = a_js
        .publish("packgate.site-7.samples.sim-01", "x".into())
        .await
        .unwrap()
        .await;
    assert!(own.is_ok(), "site-7's own sample: {own:?}");
    let forged = tokio::time::timeout(Duration::from_secs(3), async {
        a_js.publish("packgate.site-8.samples.sim-01", "forged".into())
            .await?
            .await
            .map_err(Into::<Box<dyn std::error::Error + Send + Sync>>::into)
    })
    .await;
    assert!(!matches!(forged, Ok(Ok(_))), "site-7 published as site-8");
    let mut cloud = ops_js.get_stream("PACKGATE_CLOUD").await.unwrap();
    let forged_in = cloud
        .info_with_subjects("packgate.site-8.>")
        .await
        .unwrap()
        .next()
        .await;
    assert!(
        forged_in.is_none(),
        "a site-8 subject in the stream: {forged_in:?}"
    );
    assert_eq!(cloud.info().await.unwrap().state.messages, 1);
}

/// site-7's own desired settings: readable directly and by its consumer
/// (whose configuration is returned).
async fn reads_its_own_desired_settings(
    a: &async_nats::Client,
    a_js: &jetstream::Context,
) -> consumer::pull::Config {
    let own_value = a.request(direct_get("site-7"), "".into()).await.unwrap();
    assert_eq!(own_value.payload.as_ref(), b"40");
    let own_consumer = consumer::pull::Config {
        name: Some(desired_consumer("site-7")),
        filter_subject: format!("$KV.{DESIRED_BUCKET}.site-7.>"),
        deliver_policy: consumer::DeliverPolicy::LastPerSubject,
        ack_policy: consumer::AckPolicy::None,
        inactive_threshold: Duration::from_secs(60),
        ..Default::default()
    };
    let bucket_stream = a_js
        .get_stream_no_info(format!("KV_{DESIRED_BUCKET}"))
        .await
        .unwrap();
    let reader = bucket_stream
        .create_consumer(own_consumer.clone())
        .await
        .unwrap();
    let mut got = reader.fetch().max_messages(10).messages().await.unwrap();
    let first = got.next().await.unwrap().unwrap();
    assert_eq!(
        first.subject.as_str(),
        "$KV.PACKGATE_DESIRED.site-7.sim-01.charge_current_limit_a"
    );
    assert_eq!(first.payload.as_ref(), b"40");
    own_consumer
}

/// site-8's desired settings: not by a direct get, a stream message get,
/// a consumer of site-7's name on site-8's keys, a consumer of site-8's
/// name, or an unnamed one.
async fn cannot_read_anothers_desired_settings(
    a: &async_nats::Client,
    own_consumer: &consumer::pull::Config,
) {
    assert_eq!(
        a.request(direct_get("site-8"), "".into())
            .await
            .ok()
            .map(|m| m.payload),
        None
    );
    let bucket_api = |verb: &str| format!("$JS.API.{verb}.KV_{DESIRED_BUCKET}");
    let last_of_b =
        r#"{"last_by_subj":"$KV.PACKGATE_DESIRED.site-8.sim-01.charge_current_limit_a"}"#;
    assert_eq!(api(a, bucket_api("STREAM.MSG.GET"), last_of_b).await, None);
    assert_eq!(api(a, bucket_api("DIRECT.GET"), last_of_b).await, None);
    let as_b = |name: String, filter: &str| {
        let config = consumer::pull::Config {
            name: Some(name.clone()),
            filter_subject: format!("$KV.{DESIRED_BUCKET}.{filter}.>"),
            ..own_consumer.clone()
        };
        let body =
            serde_json::json!({ "stream_name": format!("KV_{DESIRED_BUCKET}"), "config": config });
        (
            format!(
                "{}.{name}.$KV.{DESIRED_BUCKET}.{filter}.>",
                bucket_api("CONSUMER.CREATE")
            ),
            body.to_string(),
        )
    };
    for (subject, body) in [
        as_b(desired_consumer("site-7"), "site-8"),
        as_b(desired_consumer("site-8"), "site-8"),
        as_b(desired_consumer("site-7"), "*"),
    ] {
        assert_eq!(api(a, subject.clone(), &body).await, None, "{subject}");
    }
    assert_eq!(
        api(
            a,
            bucket_api("CONSUMER.CREATE"),
            r#"{"stream_name":"KV_PACKGATE_DESIRED","config":{}}"#
        )
        .await,
        None,
        "an unnamed consumer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_uploads_with_its_own_user_of_the_shipped_cloud() {
    // One at a time: each runs brokers, clusters and gateways of its own.
    let _serial = support::cloud::SERIAL.lock().await;
    let (cluster, passwords) = shipped_cloud().await;
    let ops = cluster.client().await;
    let local = TestBroker::start().await;
    let config = write_config_urls(
        local.dir.path(),
        &local.url(),
        &cluster.urls(),
        "site-7",
        2,
        &format!("user = \"site-7\"\npassword = \"{}\"", passwords[1]),
    );
    let log = local.dir.path().join("gateway.log");
    let mut gateway = spawn_gateway(&config, &log);
    wait_for("uploads as site-7", Duration::from_secs(60), async || {
        let samples =
            keys_in_stream_order(&ops, "PACKGATE_CLOUD", Some("packgate.site-7.samples.>")).await;
        samples.len() == 2 && samples.values().all(|keys| keys.len() >= 10)
    })
    .await;
    sigterm_and_wait(&mut gateway.0);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log.to_lowercase().contains("permissions violation"),
        "the gateway needed more than its user may: {log}"
    );
}
