//! The mqtt worker against a real MQTT broker (Debian's `mosquitto`,
//! started here on a free port with its own persistence directory): Home
//! Assistant discovery configs and pack states arrive, a retained config
//! survives a broker restart, a setting changed from Home Assistant goes
//! through the control path to a simulated pack over Modbus (and one out of
//! bounds is refused and audited), and a broker that is down costs the
//! data path nothing.

// Test helpers below panic on a failed set-up step, which fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use packgate::config::{Config, SiteLimit};
use packgate::workers::control::AuditStore;
use packgate::workers::mqtt::MqttMetrics;
use packgate::workers::WorkerKind;
use packgate_sim::serve::{serve_modbus_tcp, SimUnit};
use packgate_sim::CHARGE_CURRENT_LIMIT_A;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::wire::*;
use support::*;
use tokio_util::sync::CancellationToken;

fn mosquitto_binary() -> PathBuf {
    for candidate in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(candidate).is_file() {
            return candidate.into();
        }
    }
    panic!("mosquitto is not installed: `apt-get install mosquitto` (./deploy/dev.sh test does)");
}

/// A mosquitto of this test's own on `port`, keeping retained messages in
/// `dir`; stopped with SIGTERM (it saves them then) by its PID.
struct Mosquitto {
    child: Child,
}

impl Mosquitto {
    fn start(dir: &Path, port: u16) -> Self {
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                // `user`: run as root (CI), mosquitto would drop to its own
                // user, which cannot write this test's directory; as any
                // other user the key changes nothing.
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nuser root\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Mosquitto { child }
    }

    fn stop(mut self) {
        sigterm_and_wait(&mut self.child);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a subscriber saw: the last payload and retain flag per topic, and
/// how many messages came on it.
type Seen = Arc<Mutex<HashMap<String, (String, bool, u32)>>>;

/// A client subscribed to Home Assistant's and packgate's topics.
async fn watch(port: u16, name: &str) -> (AsyncClient, Seen) {
    let options = MqttOptions::new(name, "127.0.0.1", port);
    let (client, mut event_loop) = AsyncClient::new(options, 64);
    client
        .subscribe("homeassistant/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .subscribe("packgate/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            match event_loop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let payload = String::from_utf8_lossy(&p.payload).into_owned();
                    let mut seen = sink.lock().unwrap();
                    let count = seen.get(&p.topic).map_or(0, |(_, _, n)| *n);
                    seen.insert(p.topic, (payload, p.retain, count + 1));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    (client, seen)
}

async fn wait_for(seen: &Seen, topic: &str) -> (String, bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((payload, retained, _)) = seen.lock().unwrap().get(topic).cloned() {
            return (payload, retained);
        }
        assert!(Instant::now() < deadline, "nothing on {topic}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mqtt_config(config: &mut Config, port: u16) {
    config.mqtt.enabled = true;
    config.mqtt.port = port;
    config.mqtt.gateway_name = "site".into();
    config.mqtt.allow_setting_changes = true;
    config.control.site_limits.insert(
        CHARGE_CURRENT_LIMIT_A.into(),
        SiteLimit {
            min: 0.0,
            max: 80.0,
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_sees_the_packs_and_changes_a_setting_through_the_control_path() {
    let broker = TestBroker::start().await;
    let mqtt_dir = tempfile::tempdir().unwrap();
    let mqtt_port = free_port();
    let mosquitto = Mosquitto::start(mqtt_dir.path(), mqtt_port);
    let (_watcher, seen) = watch(mqtt_port, "watcher").await;

    let servers = CancellationToken::new();
    let units = vec![
        SimUnit::new(1, still_pack(1), 1),
        SimUnit::new(2, still_pack(2), 2),
    ];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve_modbus_tcp(listener, units.clone(), servers.clone()));
    let mut config = base_config(&broker, 500);
    config.buses = vec![tcp_bus("tcp", address)];
    config.packs = vec![modbus_pack("p1", "tcp", 1), modbus_pack("p2", "tcp", 2)];
    mqtt_config(&mut config, mqtt_port);
    let (shutdown, gateway) = start_gateway(&config).await;

    discovery_and_states_arrive(&seen).await;
    a_setting_from_home_assistant_goes_through_the_control_path(mqtt_port, &units[0], &config)
        .await;
    // States keep coming, one per sample at most.
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen
        .lock()
        .unwrap()
        .get("packgate/site/p2/state")
        .map_or(0, |s| s.2)
        < 4
    {
        assert!(Instant::now() < deadline, "p2's state stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    check_mqtt_counts(&report);
    // The state Home Assistant got is one the gateway stored.
    let (state, _) = wait_for(&seen, "packgate/site/p2/state").await;
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let voltage = state["voltage"].as_f64().unwrap() as f32;
    assert!(rows_of(&config, "p2").contains(&voltage), "{voltage}");
    // Stopped: offline, retained.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (availability, _) = wait_for(&seen, "packgate/site/availability").await;
    assert_eq!(availability, "offline");
    connection.close(&config.data_dir).await;
    servers.cancel();

    // The retained configs survive a broker restart.
    mosquitto.stop();
    let _again = Mosquitto::start(mqtt_dir.path(), mqtt_port);
    let (_late, late_seen) = watch(mqtt_port, "late-watcher").await;
    let (payload, retained) = wait_for(
        &late_seen,
        "homeassistant/sensor/packgate_site_p1/voltage/config",
    )
    .await;
    assert!(retained && payload.contains("\"device_class\":\"voltage\""));
}

/// Discovery: one device per pack via the gateway's, retained; the
/// serial number each pack reported with its device, the energy
/// counters, the gateway online and the packs' states.
async fn discovery_and_states_arrive(seen: &Seen) {
    for pack in ["p1", "p2"] {
        let topic = format!("homeassistant/sensor/packgate_site_{pack}/voltage/config");
        // Live, a retained message comes without the retain flag (MQTT
        // sets it for a new subscriber only: checked after the restart).
        let (payload, _) = wait_for(seen, &topic).await;
        let voltage: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(voltage["device_class"], "voltage");
        assert_eq!(
            voltage["device"]["identifiers"][0],
            format!("packgate_site_{pack}")
        );
        assert_eq!(voltage["device"]["via_device"], "packgate_site");
        assert_eq!(
            voltage["state_topic"],
            format!("packgate/site/{pack}/state")
        );
        assert!(voltage["expire_after"].as_u64().unwrap() >= 3);
        wait_for(
            seen,
            &format!(
                "homeassistant/binary_sensor/packgate_site_{pack}/alarm_over_temperature/config"
            ),
        )
        .await;
        wait_for(
            seen,
            &format!("homeassistant/number/packgate_site_{pack}/charge_current_limit_a/config"),
        )
        .await;
    }
    // The serial number each pack reported comes with its device (the
    // configs are announced again once the online event tells it), and
    // the energy counters with the state.
    let topic = "homeassistant/sensor/packgate_site_p1/voltage/config";
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (payload, _) = wait_for(seen, topic).await;
        let config: serde_json::Value = serde_json::from_str(&payload).unwrap();
        if let Some(serial) = config["device"]["serial_number"].as_str() {
            assert!(!serial.is_empty());
            break;
        }
        assert!(Instant::now() < deadline, "no serial number in {payload}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (energy, _) = wait_for(
        seen,
        "homeassistant/sensor/packgate_site_p1/energy_charged/config",
    )
    .await;
    assert!(
        energy.contains("\"state_class\":\"total_increasing\""),
        "{energy}"
    );
    let (online, _) = wait_for(seen, "packgate/site/availability").await;
    assert_eq!(online, "online");
    let (state, _) = wait_for(seen, "packgate/site/p1/state").await;
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert!(state["cell_16"].is_number(), "{state}");
    assert!(state["energy_charged"].as_f64().unwrap() >= 0.0, "{state}");
}

/// A value in bounds reaches the pack (`unit`, p1) over Modbus; one past
/// the site limit is refused, audited, and changes nothing.
async fn a_setting_from_home_assistant_goes_through_the_control_path(
    mqtt_port: u16,
    unit: &SimUnit,
    config: &Config,
) {
    let (ha, mut ha_loop) = AsyncClient::new(MqttOptions::new("ha", "127.0.0.1", mqtt_port), 16);
    tokio::spawn(async move { while ha_loop.poll().await.is_ok() {} });
    let set = "packgate/site/p1/set/charge_current_limit_a";
    ha.publish(set, QoS::AtLeastOnce, false, "50")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while unit.pack.setting(CHARGE_CURRENT_LIMIT_A) != Some(50.0) {
        assert!(
            Instant::now() < deadline,
            "the setting never reached the pack"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ha.publish(set, QoS::AtLeastOnce, false, "500")
        .await
        .unwrap();
    ha.publish(set, QoS::AtLeastOnce, false, "not a number")
        .await
        .unwrap();
    let audit = config.data_dir.join(&config.control.database);
    let deadline = Instant::now() + Duration::from_secs(15);
    let rows = loop {
        let rows: Vec<_> = AuditStore::open_read_only(&audit)
            .unwrap()
            .recent_summaries(100)
            .unwrap()
            .into_iter()
            .filter(|r| r.command_id.starts_with("ha-p1-") && r.outcome.is_some())
            .collect();
        if rows.len() >= 2 {
            break rows;
        }
        assert!(Instant::now() < deadline, "audit rows: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let applied = rows.iter().find(|r| r.value == 50.0).unwrap();
    assert_eq!(applied.outcome.as_deref(), Some("applied"));
    assert_eq!(applied.read_back, Some(50.0));
    let refused = rows.iter().find(|r| r.value == 500.0).unwrap();
    assert_eq!(refused.outcome.as_deref(), Some("rejected"));
    assert_eq!(unit.pack.setting(CHARGE_CURRENT_LIMIT_A), Some(50.0));
}

/// The mqtt worker applied one command, refused two, and published a
/// state for at most every sample it saw.
fn check_mqtt_counts(report: &packgate::runtime::RunReport) {
    let metrics = report
        .workers
        .iter()
        .find(|(kind, _)| *kind == WorkerKind::Mqtt)
        .and_then(|(_, m)| m.get::<MqttMetrics>())
        .unwrap();
    assert_eq!(metrics.commands_applied.get(), 1);
    assert_eq!(metrics.commands_refused.get(), 2);
    assert!(
        metrics.states_published.get() >= 5
            && metrics.states_published.get() <= metrics.samples_seen.get(),
        "{} states, {} configs, {} dropped, {} samples",
        metrics.states_published.get(),
        metrics.configs_published.get(),
        metrics.publishes_dropped.get(),
        metrics.samples_seen.get()
    );
}

fn rows_of(config: &Config, pack: &str) -> Vec<f32> {
    rows(config, pack)
        .iter()
        .map(|r| r.sample.reading.pack_voltage_v)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_broker_that_is_down_costs_the_data_path_nothing() {
    let broker = TestBroker::start().await;
    let mut config = base_config(&broker, 200);
    config.add_sim_packs(2).unwrap();
    // Nothing listens there.
    mqtt_config(&mut config, free_port());
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    let collect = report.collect.unwrap();
    assert_eq!(
        assert_exactly_once(&config.database_path(), 2, true),
        collect.samples_published.get()
    );
    // 3 s at 5 Hz for each of 2 packs, less the start.
    assert!(
        collect.samples_published.get() >= 24,
        "{}",
        collect.samples_published.get()
    );
    let metrics = report
        .workers
        .iter()
        .find(|(kind, _)| *kind == WorkerKind::Mqtt)
        .and_then(|(_, m)| m.get::<MqttMetrics>())
        .unwrap();
    assert_eq!(metrics.connections.get(), 0);
    assert!(metrics.samples_seen.get() >= 24);
    connection.close(&config.data_dir).await;
}
