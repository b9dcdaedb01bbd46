//! Desired settings end to end: a gateway with a pack served over Modbus
//! TCP by the simulator, a cloud with the desired-settings bucket, and the
//! site's uplink as a relay the test can cut. A value set while the link
//! is down is applied once it returns; one set while the pack is offline
//! is applied when the pack comes back; an out-of-bounds one is rejected,
//! audited, reported as rejected and not tried again; and a setting changed
//! on the device by a raw Modbus write is corrected.

// Test harness: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use packgate::config::Config;
use packgate::runtime::{Broker, RunReport};
use packgate::workers::cloud::CloudConfig;
use packgate::workers::control::{AuditRecord, AuditStore};
use packgate_protocol::names::cloud::{desired_key, desired_report_subject, DESIRED_BUCKET};
use packgate_protocol::{Event, EventKind};
use packgate_sim::serve::{serve_modbus_tcp, SimUnit};
use packgate_sim::SimPack;
use support::cloud::{create_cloud_stream, wait_for};
use support::fleet::{stream_definition, Uplink};
use support::wire::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const GW: &str = "site-7";
const PACK: &str = "tcp-1";
const CHARGE: &str = "charge_current_limit_a";
/// The simulator's profile: register of `charge_current_limit_a`, 0.1 A.
const CHARGE_REGISTER: u16 = 100;

/// The pack behind its Modbus TCP server, which can stop and start again
/// on the same address.
struct Device {
    pack: SimPack,
    /// The seed its serial number is derived from.
    seed: u64,
    address: SocketAddr,
    stop: CancellationToken,
}

impl Device {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let device = Self {
            pack: still_pack(7),
            seed: 7,
            address,
            stop: CancellationToken::new(),
        };
        device.serve(listener);
        device
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        tokio::spawn(serve_modbus_tcp(
            listener,
            vec![SimUnit::new(1, self.pack.clone(), self.seed)],
            self.stop.clone(),
        ));
    }

    /// The pack stops answering: its server goes away.
    fn unplug(&mut self) {
        self.stop.cancel();
        self.stop = CancellationToken::new();
    }

    /// It answers again, on the same address.
    async fn plug_in(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.address).await {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(Instant::now() < deadline, "rebinding: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        self.serve(listener);
    }

    /// Another pack, with another serial number and its factory settings,
    /// takes this one's place on the same address (not yet answering).
    fn replace_with(&mut self, seed: u64) {
        self.pack = still_pack(seed);
        self.seed = seed;
    }

    fn charge_a(&self) -> f64 {
        self.pack.setting(CHARGE).unwrap()
    }

    /// Writes `register` on the device with a raw Modbus TCP frame
    /// (function 6), as another tool on the bus would.
    async fn raw_write(&self, register: u16, raw: u16) {
        let mut stream = tokio::net::TcpStream::connect(self.address).await.unwrap();
        let mut frame = vec![0x00, 0x2a, 0x00, 0x00, 0x00, 0x06, 0x01, 0x06];
        frame.extend(register.to_be_bytes());
        frame.extend(raw.to_be_bytes());
        stream.write_all(&frame).await.unwrap();
        let mut echo = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echo, frame.as_slice(), "the device echoes a write it took");
    }
}

struct Rig {
    local: TestBroker,
    cloud: TestBroker,
    uplink: Uplink,
    device: Device,
    config: Config,
    shutdown: CancellationToken,
    gateway: JoinHandle<(RunReport, Broker)>,
    ops: async_nats::Client,
    bucket: kv::Store,
}

impl Rig {
    async fn start() -> Self {
        Self::start_rechecking_every(2).await
    }

    /// A rig whose reconciler reads back and re-applies every
    /// `recheck_s` seconds.
    async fn start_rechecking_every(recheck_s: u64) -> Self {
        let local = TestBroker::start().await;
        let cloud = TestBroker::start().await;
        let ops = async_nats::connect(cloud.url()).await.unwrap();
        create_cloud_stream(ops.clone(), GW).await;
        // The bucket as deploy/cloud/ defines it, on one server.
        let js = jetstream::new(ops.clone());
        js.create_stream(jetstream::stream::Config {
            num_replicas: 1,
            ..stream_definition("PACKGATE_DESIRED.json")
        })
        .await
        .unwrap();
        let bucket = js.get_key_value(DESIRED_BUCKET).await.unwrap();
        let upstream: SocketAddr = format!("127.0.0.1:{}", cloud.server.port())
            .parse()
            .unwrap();
        let uplink = Uplink::start(upstream).await;
        let device = Device::start().await;
        let mut config = base_config(&local, 200);
        config.buses = vec![tcp_bus("tcp", device.address.to_string())];
        config.packs = vec![modbus_pack(PACK, "tcp", 1)];
        config.cloud = CloudConfig {
            enabled: true,
            urls: vec![uplink.url()],
            gateway_id: GW.into(),
            upload_interval_ms: 500,
            retry_backoff_max_ms: 1_000,
            request_timeout_ms: 2_000,
            desired_recheck_s: recheck_s,
            ..CloudConfig::default()
        };
        let (shutdown, gateway) = start_gateway(&config).await;
        Self {
            local,
            cloud,
            uplink,
            device,
            config,
            shutdown,
            gateway,
            ops,
            bucket,
        }
    }

    async fn desire(&self, value: &str) -> u64 {
        self.bucket
            .put(desired_key(GW, PACK, CHARGE), value.to_owned().into())
            .await
            .unwrap()
    }

    /// The gateway's last report on the setting, from the cloud stream.
    async fn report(&self) -> Option<serde_json::Value> {
        let js = jetstream::new(self.ops.clone());
        let stream = js.get_stream("PACKGATE_CLOUD").await.ok()?;
        let message = stream
            .get_last_raw_message_by_subject(&desired_report_subject(GW, PACK, CHARGE))
            .await
            .ok()?;
        serde_json::from_slice(&message.payload).ok()
    }

    /// The reconciler's commands in the audit store, oldest first.
    fn audited(&self) -> Vec<AuditRecord> {
        let path = self.config.data_dir.join(&self.config.control.database);
        let Ok(store) = AuditStore::open_read_only(&path) else {
            return Vec::new();
        };
        let mut rows: Vec<AuditRecord> = store
            .recent(1_000)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.command_id.starts_with("desired-"))
            .collect();
        rows.reverse();
        rows
    }

    /// The audited commands once `done` holds for them: a write shows on
    /// the device a moment before its audit row has its outcome.
    async fn audited_when(&self, done: impl Fn(&[AuditRecord]) -> bool) -> Vec<AuditRecord> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let audited = self.audited();
            if done(&audited) || Instant::now() >= deadline {
                return audited;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `packgate desired ARGS --cloud <the cloud>`: its output; it must
    /// succeed.
    fn packgate_desired(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_packgate"))
            .arg("desired")
            .args(args)
            .arg("--cloud")
            .arg(self.cloud.url())
            .env("PACKGATE_CONFIG", "")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "packgate desired {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn wait_charge(&self, what: &str, amps: f64, within: Duration) {
        let device = &self.device;
        wait_for(what, within, async || {
            (device.charge_a() - amps).abs() < 0.05
        })
        .await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let (_report, connection) = self.gateway.await.unwrap();
        connection.close(&self.config.data_dir).await;
        self.device.stop.cancel();
        drop((self.local, self.cloud, self.uplink));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_set_while_the_link_is_down_is_applied_when_it_returns() {
    // One at a time: each runs brokers, clusters and gateways of its own.
    let _serial = support::cloud::SERIAL.lock().await;
    let rig = Rig::start().await;
    wait_for("the first uploads", Duration::from_secs(60), async || {
        support::cloud::cloud_count(&rig.ops).await > 5
    })
    .await;
    rig.uplink.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let revision = rig.desire("40").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        (rig.device.charge_a() - 100.0).abs() < 0.05,
        "applied without a link: {}",
        rig.device.charge_a()
    );
    let cut_for = Instant::now();
    rig.uplink.restore();
    rig.wait_charge("the desired value", 40.0, Duration::from_secs(60))
        .await;
    let took = cut_for.elapsed();
    wait_for("the report", Duration::from_secs(30), async || {
        rig.report()
            .await
            .is_some_and(|r| r["status"] == "applied" && r["revision"] == revision)
    })
    .await;
    let report = rig.report().await.unwrap();
    assert_eq!(report["read_back"].as_f64(), Some(40.0));
    let applied_40 = |r: &AuditRecord| {
        r.outcome.as_deref() == Some("applied") && r.origin == "cloud" && r.value == 40.0
    };
    let audited = rig.audited_when(|a| a.iter().any(applied_40)).await;
    assert!(audited.iter().any(applied_40), "{audited:?}");
    // The local copy has it: a restart during the next outage still knows.
    let copy = std::fs::read_to_string(rig.config.data_dir.join("desired-settings.json")).unwrap();
    assert!(copy.contains("\"value\": 40.0"), "{copy}");
    println!("applied {took:?} after the link returned");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_set_while_the_pack_is_offline_is_applied_when_it_comes_online() {
    // One at a time: each runs brokers, clusters and gateways of its own.
    let _serial = support::cloud::SERIAL.lock().await;
    let mut rig = Rig::start().await;
    wait_for(
        "the pack's first samples",
        Duration::from_secs(60),
        async || stored_count(&rig.config.data_dir.join(&rig.config.data.database)) > 5,
    )
    .await;
    rig.device.unplug();
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.desire(r#"{"value": 55, "author": "ops"}"#).await;
    wait_for("a failed attempt", Duration::from_secs(45), async || {
        rig.report()
            .await
            .is_some_and(|r| r["status"] == "retrying")
    })
    .await;
    assert!((rig.device.charge_a() - 100.0).abs() < 0.05);
    rig.device.plug_in().await;
    let back = Instant::now();
    rig.wait_charge("the desired value", 55.0, Duration::from_secs(60))
        .await;
    let took = back.elapsed();
    let audited = rig
        .audited_when(|a| a.last().and_then(|r| r.outcome.as_deref()) == Some("applied"))
        .await;
    assert!(
        audited
            .iter()
            .any(|r| r.outcome.as_deref() != Some("applied")),
        "the attempts while offline are audited: {audited:?}"
    );
    assert_eq!(
        audited.last().and_then(|r| r.outcome.as_deref()),
        Some("applied")
    );
    println!(
        "applied {took:?} after the pack came back; {} attempts audited",
        audited.len()
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_bounds_value_is_rejected_audited_reported_and_not_retried() {
    // One at a time: each runs brokers, clusters and gateways of its own.
    let _serial = support::cloud::SERIAL.lock().await;
    let rig = Rig::start().await;
    // Set the way an operator does, with `packgate desired set`.
    let set = rig.packgate_desired(&[
        "set",
        "--gateway",
        GW,
        "--pack",
        PACK,
        "--author",
        "ops",
        CHARGE,
        "5000",
    ]);
    let revision: u64 = set
        .rsplit("(revision ")
        .next()
        .and_then(|r| r.trim().trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("packgate desired set said: {set}"));
    wait_for(
        "the rejection's report",
        Duration::from_secs(60),
        async || {
            rig.report()
                .await
                .is_some_and(|r| r["status"] == "rejected" && r["revision"] == revision)
        },
    )
    .await;
    let report = rig.report().await.unwrap();
    assert!(
        report["reason"].as_str().unwrap().contains("5000"),
        "{report}"
    );
    let listed = rig.packgate_desired(&["list", "--gateway", GW]);
    assert!(
        listed.contains("tcp-1.charge_current_limit_a = 5000")
            && listed.contains("by ops: rejected (charge_current_limit_a = 5000 is outside"),
        "packgate desired list said: {listed}"
    );
    // Several recheck periods later: still one attempt, nothing written.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let audited = rig.audited();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].outcome.as_deref(), Some("rejected"));
    assert!((rig.device.charge_a() - 100.0).abs() < 0.05);
    // A new value is a new revision, and is applied.
    rig.desire("60").await;
    rig.wait_charge("the corrected value", 60.0, Duration::from_secs(45))
        .await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_changed_on_the_device_is_corrected() {
    // One at a time: each runs brokers, clusters and gateways of its own.
    let _serial = support::cloud::SERIAL.lock().await;
    let rig = Rig::start().await;
    rig.desire("45").await;
    rig.wait_charge("the desired value", 45.0, Duration::from_secs(60))
        .await;
    // Someone writes 12.5 A on the device, behind the gateway's back.
    rig.device.raw_write(CHARGE_REGISTER, 125).await;
    assert!((rig.device.charge_a() - 12.5).abs() < 0.05);
    let drifted = Instant::now();
    rig.wait_charge("the correction", 45.0, Duration::from_secs(45))
        .await;
    let took = drifted.elapsed();
    let applied = count_applied(&rig.audited_when(|a| count_applied(a) >= 2).await);
    assert!(applied >= 2, "{applied} applied writes audited");
    println!("corrected {took:?} after the drift (recheck every 2 s)");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_pack_gets_the_desired_value_when_it_comes_online() {
    // One at a time: each runs brokers, clusters and gateways of its own.
    let _serial = support::cloud::SERIAL.lock().await;
    // The periodic recheck is an hour away: only the online event of the
    // new pack can bring the value to it within this test.
    let mut rig = Rig::start_rechecking_every(3_600).await;
    let local = async_nats::connect(rig.local.url()).await.unwrap();
    let mut events = local
        .subscribe(packgate_protocol::names::ALL_EVENTS_SUBJECT)
        .await
        .unwrap();
    rig.desire(r#"{"value": 55, "author": "ops"}"#).await;
    rig.wait_charge(
        "the desired value on the first pack",
        55.0,
        Duration::from_secs(60),
    )
    .await;

    // The pack is swapped: it goes offline, and a new one with another
    // serial number and its factory limit of 100 A answers on its address.
    rig.device.unplug();
    next_event(&mut events, "the pack offline", |kind| {
        matches!(kind, EventKind::PackOffline { .. })
    })
    .await;
    rig.device.replace_with(8);
    assert!((rig.device.charge_a() - 100.0).abs() < 0.05);
    rig.device.plug_in().await;
    let back = Instant::now();
    let online = next_event(&mut events, "the new pack online", |kind| {
        matches!(kind, EventKind::PackOnlineIdentified { .. })
    })
    .await;
    let EventKind::PackOnlineIdentified { serial_number } = online else {
        unreachable!()
    };
    assert_eq!(
        serial_number,
        packgate_sim::serve::registers::serial_number_from_seed(8).to_string(),
        "the online event names the new pack"
    );
    rig.wait_charge(
        "the desired value on the new pack",
        55.0,
        Duration::from_secs(30),
    )
    .await;
    let took = back.elapsed();
    let applied = count_applied(&rig.audited_when(|a| count_applied(a) >= 2).await);
    assert_eq!(applied, 2, "once for each pack: {:?}", rig.audited());
    println!("the new pack ({serial_number}) had the desired value {took:?} after it answered");
    rig.stop().await;
}

/// How many of `audited` were applied.
fn count_applied(audited: &[AuditRecord]) -> usize {
    audited
        .iter()
        .filter(|r| r.outcome.as_deref() == Some("applied"))
        .count()
}

/// The next pack event of `tcp-1` that `wanted` accepts, within 30 s.
async fn next_event(
    events: &mut async_nats::Subscriber,
    what: &str,
    wanted: impl Fn(&EventKind) -> bool,
) -> EventKind {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, events.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap();
        let event: Event = packgate_protocol::decode(&message.payload).unwrap();
        if event.pack_id.as_str() == PACK && wanted(&event.kind) {
            return event.kind;
        }
    }
}
