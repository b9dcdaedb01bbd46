//! End to end over the framed serial BMS protocols: the simulator served
//! as Pylontech-style, JBD, Daly and JK BMSs on real pseudo-terminals,
//! the gateway polling every line at once and storing what the simulator
//! holds; a dead pack on a shared line costs only its own slot; a JBD
//! switch written through the validated control path reaches the pack.

// Test helpers below panic on a failed set-up step, which fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use packgate::config::{
    BmsSerialBusConfig, BusConfig, BusLinkConfig, DalyDriverConfig, DriverConfig, JbdDriverConfig,
    JkDriverConfig, PackConfig, PylonAsciiDriverConfig,
};
use packgate::workers::control::send_command;
use packgate_drivers::bms::pylon_ascii::PylonAsciiLayout;
use packgate_protocol::{CommandOutcome, DataQuality, EventKind, PackId, PackReading};
use packgate_sim::serve::framed::{serve_framed, FramedDevice, FramedServerOptions, FramedUnit};
use packgate_sim::serve::{
    DalyDevice, JbdDevice, JkDevice, PaceDevice, PylonAsciiDevice, SeplosV2Device,
};
use packgate_sim::{Faults, LoadProfile, SimPack, SimPackConfig, CHARGE_SWITCH_ON};
use support::control::command;
use support::wire::*;
use support::*;
use tokio_util::sync::CancellationToken;

/// A pack at `current_a`, its clock frozen so what it holds is what it
/// serves for the whole test.
fn frozen_pack(seed: u64, current_a: f64) -> SimPack {
    let config = SimPackConfig {
        load: LoadProfile::Constant { current_a },
        ..SimPackConfig::default().with_seed(seed)
    };
    let pack = SimPack::new(&config);
    pack.advance(30.0);
    pack.advance_to(Instant::now() + Duration::from_secs(86_400));
    pack
}

/// Serves `units` speaking `D` on a new pty pair; returns the path the
/// gateway opens and the client end, which must stay open meanwhile.
fn serve_line<D: FramedDevice>(
    units: Vec<FramedUnit>,
    shutdown: &CancellationToken,
) -> (String, tokio_serial::SerialStream) {
    let (device, client) = tokio_serial::SerialStream::pair().unwrap();
    let path = tokio_serial::SerialPort::name(&client).unwrap();
    tokio::spawn(serve_framed::<D, _>(
        device,
        units,
        FramedServerOptions::default(),
        shutdown.clone(),
    ));
    (path, client)
}

fn line(name: &str, port: String) -> BusConfig {
    BusConfig {
        name: name.into(),
        link: BusLinkConfig::BmsSerial(BmsSerialBusConfig {
            port: port.into(),
            baud_rate: None,
            request_timeout_ms: Some(200),
            inter_frame_gap_ms: Some(2),
            reconnect_backoff_max_ms: 1_000,
        }),
    }
}

fn pack(id: &str, driver: DriverConfig) -> PackConfig {
    PackConfig {
        id: PackId::new(id).unwrap(),
        driver,
    }
}

/// What the gateway stored equals what the simulator holds, within the
/// coarsest resolution of the four protocols (Daly: 0.1 V, 0.1 A, 1 °C).
fn assert_stored(stored: &PackReading, held: &PackReading, pack: &str) {
    let close = |a: f32, b: f32, tolerance: f32, what: &str| {
        assert!(
            (a - b).abs() <= tolerance,
            "{pack} {what}: stored {a}, simulator {b}"
        );
    };
    close(stored.pack_voltage_v, held.pack_voltage_v, 0.051, "voltage");
    close(stored.current_a, held.current_a, 0.051, "current");
    close(stored.soc_pct, held.soc_pct, 1.01, "SoC");
    assert_eq!(stored.soh_pct, None, "{pack}: no protocol here reports SoH");
    let cells = &stored.cell_voltages_v.0;
    assert_eq!(cells.len(), held.cell_voltages_v.0.len(), "{pack} cells");
    for (i, (s, h)) in cells.iter().zip(&held.cell_voltages_v.0).enumerate() {
        close(*s, *h, 0.0011, &format!("cell {}", i + 1));
    }
    assert!(!stored.temperatures_c.0.is_empty(), "{pack} temperatures");
    close(
        stored.max_temperature_c(),
        held.max_temperature_c(),
        1.01,
        "max temperature",
    );
    assert_eq!(stored.charge_enabled, held.charge_enabled, "{pack}");
    assert_eq!(stored.discharge_enabled, held.discharge_enabled, "{pack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_protocols_on_four_lines_reach_sqlite_and_a_dead_pack_costs_its_slot_only() {
    let broker = TestBroker::start().await;
    let servers = CancellationToken::new();
    let rack: Vec<FramedUnit> = (1..=3u8)
        .map(|a| FramedUnit::new(a, frozen_pack(u64::from(a), -8.0), u64::from(a)))
        .collect();
    rack[1].pack.set_faults(Faults {
        unresponsive: true,
        ..Faults::default()
    });
    let jbd = FramedUnit::new(1, frozen_pack(11, 12.0), 11);
    let daly = FramedUnit::new(1, frozen_pack(12, -20.0), 12);
    let jk = FramedUnit::new(1, frozen_pack(13, 5.0), 13);
    let (rack_path, _rack) = serve_line::<PylonAsciiDevice>(rack.clone(), &servers);
    let (jbd_path, _jbd) = serve_line::<JbdDevice>(vec![jbd.clone()], &servers);
    let (daly_path, _daly) = serve_line::<DalyDevice>(vec![daly.clone()], &servers);
    let (jk_path, _jk) = serve_line::<JkDevice>(vec![jk.clone()], &servers);

    let events = record_events(&broker.url()).await;
    let mut config = base_config(&broker, 500);
    config.buses = vec![
        line("rack", rack_path),
        line("jbd", jbd_path),
        line("daly", daly_path),
        line("jk", jk_path),
    ];
    let pylon = |address| {
        DriverConfig::PylonAscii(PylonAsciiDriverConfig {
            bus: "rack".into(),
            address,
            layout: PylonAsciiLayout::Pylontech,
        })
    };
    config.packs = vec![
        pack("rack-1", pylon(1)),
        pack("rack-2", pylon(2)),
        pack("rack-3", pylon(3)),
        pack(
            "jbd",
            DriverConfig::Jbd(JbdDriverConfig { bus: "jbd".into() }),
        ),
        pack(
            "daly",
            DriverConfig::Daly(DalyDriverConfig {
                bus: "daly".into(),
                host_address: 0x40,
            }),
        ),
        pack("jk", DriverConfig::Jk(JkDriverConfig { bus: "jk".into() })),
    ];
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    let collect = report.collect.unwrap();

    // Every answering pack at the poll rate (12 periods of 500 ms, less
    // the start), read as the simulator holds it.
    for (id, held) in [
        ("rack-1", &rack[0].pack),
        ("rack-3", &rack[2].pack),
        ("jbd", &jbd.pack),
        ("daly", &daly.pack),
        ("jk", &jk.pack),
    ] {
        let stored = rows(&config, id);
        assert!(stored.len() >= 9, "{id}: {} samples in 6 s", stored.len());
        for row in &stored {
            assert_eq!(row.sample.quality, DataQuality::Fresh, "{id}");
            assert_stored(&row.sample.reading, &held.reading(), id);
        }
    }
    // The dead pack gave nothing to store and was declared offline.
    assert!(rows(&config, "rack-2").is_empty());
    let offline =
        events.lock().unwrap().iter().any(|e| {
            e.pack_id.as_str() == "rack-2" && matches!(e.kind, EventKind::PackOffline { .. })
        });
    assert!(offline, "rack-2 declared offline");
    assert!(collect.polls_timeout.get() >= 3);
    assert_eq!(
        assert_exactly_once(&config.database_path(), 5, true),
        collect.samples_published.get()
    );
    servers.cancel();
    connection.close(&config.data_dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seplos_and_pace_lines_reach_sqlite_with_the_packs_soc_and_soh() {
    let broker = TestBroker::start().await;
    let servers = CancellationToken::new();
    let seplos: Vec<FramedUnit> = (0..=2u8)
        .map(|a| FramedUnit::new(a, frozen_pack(30 + u64::from(a), -9.5), 30))
        .collect();
    seplos[1].pack.set_faults(Faults {
        unresponsive: true,
        ..Faults::default()
    });
    let pace: Vec<FramedUnit> = (1..=2u8)
        .map(|a| FramedUnit::new(a, frozen_pack(40 + u64::from(a), 6.25), 40))
        .collect();
    let (seplos_path, _seplos) = serve_line::<SeplosV2Device>(seplos.clone(), &servers);
    let (pace_path, _pace) = serve_line::<PaceDevice>(pace.clone(), &servers);
    let mut config = base_config(&broker, 500);
    config.buses = vec![line("seplos", seplos_path), line("pace", pace_path)];
    let pylon = |bus: &str, address, layout| {
        DriverConfig::PylonAscii(PylonAsciiDriverConfig {
            bus: bus.into(),
            address,
            layout,
        })
    };
    config.packs = vec![
        pack("seplos-0", pylon("seplos", 0, PylonAsciiLayout::SeplosV2)),
        pack("seplos-1", pylon("seplos", 1, PylonAsciiLayout::SeplosV2)),
        pack("seplos-2", pylon("seplos", 2, PylonAsciiLayout::SeplosV2)),
        pack("pace-1", pylon("pace", 1, PylonAsciiLayout::Pace)),
        pack("pace-2", pylon("pace", 2, PylonAsciiLayout::Pace)),
    ];
    let (shutdown, gateway) = start_gateway(&config).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    shutdown.cancel();
    let (report, connection) = gateway.await.unwrap();
    let collect = report.collect.unwrap();
    for (id, held, soh) in [
        ("seplos-0", &seplos[0].pack, true),
        ("seplos-2", &seplos[2].pack, true),
        ("pace-1", &pace[0].pack, false),
        ("pace-2", &pace[1].pack, false),
    ] {
        let stored = rows(&config, id);
        assert!(stored.len() >= 7, "{id}: {} samples in 5 s", stored.len());
        let held = held.reading();
        for row in &stored {
            assert_eq!(row.sample.quality, DataQuality::Fresh, "{id}");
            let r = &row.sample.reading;
            // The packs' own resolution: 10 mA, 10 mV or 1 mV, 0.1 % SoC
            // (Seplos) or 10 mAh of 100 Ah (Pace).
            assert!(
                (r.current_a - held.current_a).abs() <= 0.0101,
                "{id}: {r:?}"
            );
            assert!(
                (r.pack_voltage_v - held.pack_voltage_v).abs() <= 0.0101,
                "{id}"
            );
            assert!((r.soc_pct - held.soc_pct).abs() <= 0.101, "{id}: {r:?}");
            match soh {
                true => assert!((r.soh_pct.unwrap() - held.soh_pct.unwrap()).abs() <= 0.101),
                false => assert_eq!(r.soh_pct, None, "{id}: Pace sends no SoH"),
            }
            assert_eq!(r.cell_voltages_v.0.len(), held.cell_voltages_v.0.len());
            for (s, h) in r.cell_voltages_v.0.iter().zip(&held.cell_voltages_v.0) {
                assert!((s - h).abs() <= 0.0011, "{id}");
            }
            assert_eq!(r.temperatures_c.0.len(), held.temperatures_c.0.len());
            for (s, h) in r.temperatures_c.0.iter().zip(&held.temperatures_c.0) {
                assert!((s - h).abs() <= 0.11, "{id}");
            }
            assert_eq!(r.alarms, held.alarms, "{id}");
            assert_eq!(
                (r.charge_enabled, r.discharge_enabled),
                (held.charge_enabled, held.discharge_enabled)
            );
        }
    }
    // The dead Seplos pack cost its own slot only.
    assert!(rows(&config, "seplos-1").is_empty());
    assert!(collect.polls_timeout.get() >= 3);
    assert_eq!(
        assert_exactly_once(&config.database_path(), 4, true),
        collect.samples_published.get()
    );
    servers.cancel();
    connection.close(&config.data_dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jbd_charge_switch_written_through_the_control_path_opens_on_the_pack() {
    let broker = TestBroker::start().await;
    let servers = CancellationToken::new();
    let unit = FramedUnit::new(1, frozen_pack(21, 10.0), 21);
    let (path, _client) = serve_line::<JbdDevice>(vec![unit.clone()], &servers);
    let mut config = base_config(&broker, 500);
    config.control.default_deadline_ms = 5_000;
    config.buses = vec![line("jbd", path)];
    config.packs = vec![pack(
        "jbd",
        DriverConfig::Jbd(JbdDriverConfig { bus: "jbd".into() }),
    )];
    let (shutdown, gateway) = start_gateway(&config).await;
    let client = async_nats::connect(broker.url()).await.unwrap();
    assert!(unit.pack.reading().charge_enabled);

    // Open the charge switch (retried until the workers serve).
    let mut outcome = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let reply = send_command(
            &client,
            &command(
                &format!("open-{}", support::control::now_ms()),
                "jbd",
                CHARGE_SWITCH_ON,
                0.0,
            ),
            Duration::from_secs(5),
        )
        .await;
        if let Ok(reply) = reply {
            if matches!(reply.outcome, CommandOutcome::Applied { .. }) {
                outcome = Some(reply.outcome);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(outcome, Some(CommandOutcome::Applied { read_back: 0.0 }));
    assert_eq!(unit.pack.setting(CHARGE_SWITCH_ON), Some(0.0));
    // 0.5 is within the setting's bounds, 0 to 1, but the driver takes
    // only 0 or 1: refused, nothing written.
    let half = send_command(
        &client,
        &command("half", "jbd", CHARGE_SWITCH_ON, 0.5),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(
        !matches!(half.outcome, CommandOutcome::Applied { .. }),
        "{:?}",
        half.outcome
    );
    assert_eq!(unit.pack.setting(CHARGE_SWITCH_ON), Some(0.0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    let (_report, connection) = gateway.await.unwrap();
    let stored = rows(&config, "jbd");
    let last = &stored.last().unwrap().sample.reading;
    assert!(!last.charge_enabled && last.discharge_enabled);
    servers.cancel();
    connection.close(&config.data_dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packgate_sim_serves_each_framed_protocol_on_its_own_pty() {
    use packgate_drivers::bms::{BmsPackDriver, SerialFrameLink, SerialLineConfig};
    use packgate_drivers::PackDriver;
    use std::io::BufRead as _;

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_packgate"))
        .args([
            "sim",
            "--packs",
            "2",
            "--pylon-ascii",
            "pty",
            "--jbd",
            "pty",
        ])
        .args(["--daly", "pty", "--jk", "pty", "--fault", "2=late:5000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        lines.push(line);
    }
    let id = |s: &str| PackId::new(s).unwrap();
    for line in &lines {
        // "NAME PATH BAUD baud (addresses 1..=2 | pack 1)"
        let words: Vec<&str> = line.split_whitespace().collect();
        let (name, path, baud) = (words[0], words[1], words[2].parse::<u32>().unwrap());
        let mut driver = match name {
            "pylon-ascii" => BmsPackDriver::pylon_ascii(id("p"), 1),
            "jbd" => BmsPackDriver::jbd(id("j")),
            "daly" => BmsPackDriver::daly(id("d"), 0x40),
            "jk" => BmsPackDriver::jk(id("k")),
            other => panic!("unexpected line {other:?} in {lines:?}"),
        };
        let mut link = SerialFrameLink::new(SerialLineConfig::new(path, baud));
        let polled = driver.poll(&mut link).await.unwrap().unwrap();
        assert_eq!(polled.reading.cell_voltages_v.0.len(), 16, "{line}");
        if name == "pylon-ascii" {
            assert!(words.contains(&"1..=2"), "{line}");
            // Pack 2 on the same line answers late (the fault): a timeout
            // of its own.
            let mut late = BmsPackDriver::pylon_ascii(id("p2"), 2);
            let err = late.poll(&mut link).await.unwrap_err();
            assert_eq!(err.kind(), packgate_drivers::DriverErrorKind::Timeout);
        } else {
            assert!(line.ends_with("pack 1\n"), "{line}");
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packgate_sim_serves_the_seplos_and_pace_layouts() {
    use packgate_drivers::bms::{BmsPackDriver, SerialFrameLink, SerialLineConfig};
    use packgate_drivers::PackDriver;
    use std::io::BufRead as _;

    for (flag, layout) in [
        ("seplos-v2", PylonAsciiLayout::SeplosV2),
        ("pace", PylonAsciiLayout::Pace),
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_packgate"))
            .args([
                "sim",
                "--packs",
                "2",
                "--pylon-ascii",
                "pty",
                "--layout",
                flag,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        // "pylon-ascii PATH BAUD baud addresses 1..=2 layout NAME"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            (words[0], words.last()),
            ("pylon-ascii", Some(&flag)),
            "{line}"
        );
        let (path, baud) = (words[1], words[2].parse::<u32>().unwrap());
        let mut link = SerialFrameLink::new(SerialLineConfig::new(path, baud));
        for address in 1..=2 {
            let id = PackId::new(format!("{flag}-{address}")).unwrap();
            let mut driver = BmsPackDriver::pylon_ascii_with_layout(id, address, layout);
            let polled = driver.poll(&mut link).await.unwrap().unwrap();
            assert_eq!(polled.reading.cell_voltages_v.0.len(), 16, "{line}");
            assert_eq!(
                polled.reading.soh_pct.is_some(),
                layout == PylonAsciiLayout::SeplosV2
            );
        }
        // Read as Pylontech: refused, naming the layout.
        let mut wrong = BmsPackDriver::pylon_ascii(PackId::new("wrong").unwrap(), 1);
        let err = wrong.poll(&mut link).await.unwrap_err().to_string();
        let name = layout.to_string();
        assert!(err.contains(&format!("set layout = \"{name}\"")), "{err}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
