//! The cloud worker against two real nats-servers, one local and one
//! standing in for the cloud: control requests from the cloud reach the
//! local control subject and come back; `packgate cloud command` sends
//! them as a cloud application does, through a whole gateway.

// Test harness: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use packgate::workers::cloud::{control_subject, CloudMetrics};
use packgate_protocol::names::CONTROL_SUBJECT;
use packgate_protocol::{
    decode, encode, Command, CommandId, CommandOrigin, CommandOutcome, CommandReply, PackId,
    SettingName,
};
use support::cloud::*;
use support::*;
use tokio_util::sync::CancellationToken;

fn command(id: &str, origin: CommandOrigin, expires_in_ms: i64) -> Command {
    let now = packgate::telemetry::now_ms();
    Command {
        id: CommandId(id.into()),
        pack_id: PackId::new("sim-01").unwrap(),
        setting: SettingName("charge_current_limit_a".into()),
        value: 42.5,
        origin,
        issued_at_ms: now,
        expires_at_ms: now + expires_in_ms,
    }
}

async fn ask(cloud: &async_nats::Client, gw: &str, payload: Vec<u8>) -> (CommandReply, Duration) {
    let start = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        cloud.request(control_subject(gw), payload.into()),
    )
    .await
    .expect("a reply within 10 s")
    .expect("a reply");
    (
        decode::<CommandReply>(&reply.payload).unwrap(),
        start.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_requests_from_the_cloud_reach_the_control_subject_and_come_back() {
    let _serial = SERIAL.lock().await;
    capture_logs();
    let local = TestBroker::start().await;
    let cloud = TestBroker::start().await;
    let gw = "gw-ctl";
    let local_client = async_nats::connect(local.url()).await.unwrap();
    let local_js = jetstream::new(local_client.clone());
    packgate::broker::ensure_streams(&local_js, &Default::default())
        .await
        .unwrap();
    let metrics = Arc::new(CloudMetrics::default());
    let shutdown = CancellationToken::new();
    let worker = start_cloud(
        &cloud_config(&cloud.url(), gw),
        &local_client,
        &local_js,
        &metrics,
        &shutdown,
    );
    let requester = async_nats::connect(cloud.url()).await.unwrap();

    // A stand-in control worker: applies every command at once.
    let mut commands = local_client.subscribe(CONTROL_SUBJECT).await.unwrap();
    let seen = Arc::new(StdMutex::new(Vec::new()));
    let responder = {
        let (client, seen) = (local_client.clone(), Arc::clone(&seen));
        tokio::spawn(async move {
            while let Some(request) = commands.next().await {
                let command: Command = decode(&request.payload).unwrap();
                let reply = CommandReply {
                    command_id: command.id.clone(),
                    outcome: CommandOutcome::Applied {
                        read_back: command.value,
                    },
                };
                seen.lock().unwrap().push(command);
                client
                    .publish(request.reply.unwrap(), encode(&reply).into())
                    .await
                    .unwrap();
            }
        })
    };
    wait_for("the bridge", Duration::from_secs(10), async || {
        metrics.link_up()
            && requester
                .request(
                    control_subject(gw),
                    encode(&command("probe", CommandOrigin::Cloud, 2_000)).into(),
                )
                .await
                .is_ok()
    })
    .await;

    // A command that claims to be local is passed on as the cloud's, and
    // the control worker's reply comes back byte for byte.
    let (reply, _) = ask(
        &requester,
        gw,
        encode(&command("c-1", CommandOrigin::Local, 5_000)),
    )
    .await;
    let expected = CommandReply {
        command_id: CommandId("c-1".into()),
        outcome: CommandOutcome::Applied { read_back: 42.5 },
    };
    assert_eq!(reply, expected);
    let forwarded = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(forwarded.id, CommandId("c-1".into()));
    assert_eq!(forwarded.origin, CommandOrigin::Cloud);

    // Garbage is rejected without bothering the control worker.
    let before = seen.lock().unwrap().len();
    let (reply, _) = ask(&requester, gw, b"not a command".to_vec()).await;
    assert!(
        matches!(reply.outcome, CommandOutcome::Rejected { .. }),
        "{reply:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), before);

    // No control worker: failed, at once.
    responder.abort();
    let _ = responder.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (reply, took) = ask(
        &requester,
        gw,
        encode(&command("c-2", CommandOrigin::Cloud, 2_000)),
    )
    .await;
    assert!(
        matches!(
            reply.outcome,
            CommandOutcome::Failed { .. } | CommandOutcome::TimedOut
        ),
        "{reply:?}"
    );
    assert_eq!(reply.command_id, CommandId("c-2".into()));
    assert!(took < Duration::from_millis(2_000), "took {took:?}");

    // A control worker that never answers: timed out within the deadline.
    let _silent = local_client.subscribe(CONTROL_SUBJECT).await.unwrap();
    local_client.flush().await.unwrap();
    let (reply, took) = ask(
        &requester,
        gw,
        encode(&command("c-3", CommandOrigin::Cloud, 1_500)),
    )
    .await;
    assert_eq!(reply.outcome, CommandOutcome::TimedOut);
    assert!(took < Duration::from_millis(1_700), "took {took:?}");
    assert!(took >= Duration::from_millis(1_300), "took {took:?}");

    assert!(metrics.control_requests.get() >= 4);
    shutdown.cancel();
    worker.await.unwrap();
}

/// `packgate cloud command ARGS` against `cloud_url` for gateway `gw`: its
/// success, stdout and stderr.
fn cloud_command(cloud_url: &str, gw: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_packgate"))
        .args(["cloud", "command", "--url", cloud_url, "--gateway", gw])
        .args(args)
        // No configuration of this box: the flags say it all.
        .env("PACKGATE_CONFIG", "")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_command_client_applies_repeats_and_refuses_a_reused_id() {
    let _serial = SERIAL.lock().await;
    let local = TestBroker::start().await;
    let cloud = TestBroker::start().await;
    let gw = "gw-client";
    let config = support::cloud_process::write_config(
        local.dir.path(),
        &local.url(),
        &cloud.url(),
        gw,
        1,
        "",
    );
    // A bank, whose site limits the cloud may lower.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[[banks]]\nname = \"house\"\npacks = [\"sim-01\"]\n");
    std::fs::write(&config, text).unwrap();
    let log = local.dir.path().join("gateway.log");
    let mut gateway = support::cloud_process::spawn_gateway(&config, &log);
    let set = |id: &'static str, value: &'static str| {
        [
            "--pack",
            "sim-01",
            "--id",
            id,
            "set",
            "charge_current_limit_a",
            value,
        ]
    };
    // The gateway serves control requests once its link is up.
    let mut first = (false, String::new(), String::new());
    for _ in 0..40 {
        first = cloud_command(&cloud.url(), gw, &set("c-1", "40"));
        if first.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        first.0,
        "{first:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(first.1.trim(), "c-1: applied, read back 40");

    // The same command again: its first reply, nothing written again.
    let again = cloud_command(&cloud.url(), gw, &set("c-1", "40"));
    assert!(again.0, "{again:?}");
    assert_eq!(again.1.trim(), "c-1: applied, read back 40");

    // The id again with another value: refused, and the reply says what
    // the id did.
    let reused = cloud_command(&cloud.url(), gw, &set("c-1", "35"));
    assert!(!reused.0, "{reused:?}");
    assert!(
        reused.2.contains("rejected")
            && reused.2.contains("\"c-1\" was already used")
            && reused.2.contains("read back 40")
            && reused.2.contains("was not applied"),
        "{}",
        reused.2
    );

    // A bank's site limit, the same way round, and from the box.
    let bank = |id: &'static str, value: &'static str| {
        [
            "--bank",
            "house",
            "--id",
            id,
            "set",
            "site_max_charge_a",
            value,
        ]
    };
    let lowered = cloud_command(&cloud.url(), gw, &bank("b-1", "40"));
    assert!(lowered.0, "{lowered:?}");
    assert_eq!(lowered.1.trim(), "b-1: applied, read back 40");
    let raised = cloud_command(&cloud.url(), gw, &bank("b-2", "150"));
    assert!(
        !raised.0
            && raised
                .2
                .contains("outside what bank house allows, 0 to 100 A"),
        "{raised:?}"
    );
    let local_command = std::process::Command::new(env!("CARGO_BIN_EXE_packgate"))
        .args(["command", "--config"])
        .arg(&config)
        .args(bank("b-3", "30"))
        .output()
        .unwrap();
    assert!(local_command.status.success(), "{local_command:?}");
    assert_eq!(
        String::from_utf8_lossy(&local_command.stdout).trim(),
        "b-3: applied, read back 30"
    );
    let both = cloud_command(
        &cloud.url(),
        gw,
        &["--pack", "sim-01", "--bank", "house", "set", "x", "1"],
    );
    assert!(
        !both.0 && both.2.contains("cannot be used with"),
        "{both:?}"
    );

    // A gateway the cloud does not know, and a cloud that is not there.
    let unknown = cloud_command(&cloud.url(), "gw-nobody", &set("c-2", "40"));
    assert!(
        !unknown.0
            && unknown
                .2
                .contains("no gateway serves packgate.gw-nobody.control")
    );
    let port = support::free_port();
    let nowhere = cloud_command(&format!("nats://127.0.0.1:{port}"), gw, &set("c-3", "40"));
    assert!(
        !nowhere.0 && nowhere.2.contains("connection refused"),
        "{}",
        nowhere.2
    );
    sigterm_and_wait(&mut gateway.0);
}
