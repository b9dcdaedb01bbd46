use packgate_protocol::{BootId, CellVoltages, ClockQuality, PackReading, Temperatures};
use serde_json::Value;

use super::*;
use crate::workers::mqtt::energy::Energy;

fn topics() -> Topics {
    Topics::new("homeassistant", "packgate", "shed")
}

fn sample(soh: Option<f32>) -> Sample {
    Sample {
        pack_id: PackId::new("rack-1").unwrap(),
        boot_id: BootId(1),
        seq: 3,
        timestamp_ms: 1_000,
        quality: DataQuality::Fresh,
        reading: PackReading {
            pack_voltage_v: 52.0,
            current_a: -10.0,
            soc_pct: 80.0,
            soh_pct: soh,
            cell_voltages_v: CellVoltages(vec![3.25, 3.3, 3.2]),
            temperatures_c: Temperatures(vec![20.0, 22.5]),
            alarms: AlarmFlags::CELL_OVER_VOLTAGE,
            charge_enabled: false,
            discharge_enabled: true,
            ..PackReading::default()
        },
        clock: ClockQuality::Trusted,
    }
}

fn parse(d: &Discovery) -> Value {
    serde_json::from_str(&d.payload).unwrap()
}

#[test]
fn topics_are_built_and_command_topics_parsed_strictly() {
    let t = topics();
    let pack = PackId::new("rack-1").unwrap();
    assert_eq!(t.availability(), "packgate/shed/availability");
    assert_eq!(t.state(&pack), "packgate/shed/rack-1/state");
    let command = t.command(&pack, "charge_current_limit_a");
    assert_eq!(command, "packgate/shed/rack-1/set/charge_current_limit_a");
    assert_eq!(
        t.parse_command(&command),
        Some((pack, "charge_current_limit_a".into()))
    );
    for bad in [
        "packgate/shed/rack-1/state",
        "packgate/other/rack-1/set/x",
        "packgate/shed/bad pack/set/x",
        "packgate/shed/rack-1/set/",
        "packgate/shed/rack-1/set/a/b",
        "packgate/shedx/rack-1/set/x",
    ] {
        assert_eq!(t.parse_command(bad), None, "{bad}");
    }
}

#[test]
fn a_pack_is_one_device_with_its_entities() {
    let s = sample(None);
    let shape = PackShape::of(&s, "JBD BMS", Some("SN-42"));
    let configs = pack_discovery(&topics(), &s.pack_id, &shape, None, 3);
    let find = |topic: &str| {
        configs
            .iter()
            .find(|d| d.topic == topic)
            .map(parse)
            .unwrap_or_else(|| panic!("no {topic}"))
    };
    let voltage = find("homeassistant/sensor/packgate_shed_rack-1/voltage/config");
    assert_eq!(voltage["device_class"], "voltage");
    assert_eq!(voltage["unit_of_measurement"], "V");
    assert_eq!(voltage["state_class"], "measurement");
    assert_eq!(voltage["state_topic"], "packgate/shed/rack-1/state");
    assert_eq!(voltage["value_template"], "{{ value_json.voltage }}");
    assert_eq!(voltage["unique_id"], "packgate_shed_rack-1_voltage");
    assert_eq!(voltage["expire_after"], 3);
    assert_eq!(voltage["availability_topic"], "packgate/shed/availability");
    assert_eq!(voltage["device"]["identifiers"][0], "packgate_shed_rack-1");
    assert_eq!(voltage["device"]["model"], "JBD BMS");
    assert_eq!(voltage["device"]["via_device"], "packgate_shed");
    assert_eq!(voltage["device"]["serial_number"], "SN-42");
    let energy = find("homeassistant/sensor/packgate_shed_rack-1/energy_charged/config");
    assert_eq!(energy["device_class"], "energy");
    assert_eq!(energy["state_class"], "total_increasing");
    assert_eq!(energy["unit_of_measurement"], "kWh");
    assert_eq!(
        find("homeassistant/sensor/packgate_shed_rack-1/soc/config")["device_class"],
        "battery"
    );
    assert_eq!(
        find("homeassistant/sensor/packgate_shed_rack-1/temperature_2/config")
            ["unit_of_measurement"],
        "°C"
    );
    find("homeassistant/sensor/packgate_shed_rack-1/cell_3/config");
    let alarm =
        find("homeassistant/binary_sensor/packgate_shed_rack-1/alarm_cell_over_voltage/config");
    assert_eq!(alarm["device_class"], "problem");
    assert_eq!(alarm["payload_on"], "ON");
    // No SoH reported, no SoH entity; no settings given, no numbers.
    assert!(configs.iter().all(|d| !d.topic.contains("/soh/")));
    assert!(configs.iter().all(|d| !d.topic.contains("/number/")));
    // Every unique id once.
    let mut ids: Vec<String> = configs
        .iter()
        .map(|d| parse(d)["unique_id"].to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), configs.len());
}

#[test]
fn writable_settings_become_numbers_on_command_topics() {
    let s = sample(Some(97.0));
    let shape = PackShape::of(&s, "sim", None);
    let bounds = [SettingBounds {
        name: "charge_current_limit_a".into(),
        min: 0.0,
        max: 100.0,
        unit: "A".into(),
    }];
    let configs = pack_discovery(&topics(), &s.pack_id, &shape, Some(&bounds), 3);
    let number = configs
        .iter()
        .find(|d| {
            d.topic == "homeassistant/number/packgate_shed_rack-1/charge_current_limit_a/config"
        })
        .map(parse)
        .unwrap();
    assert_eq!(
        number["command_topic"],
        "packgate/shed/rack-1/set/charge_current_limit_a"
    );
    assert_eq!(
        (number["min"].as_f64(), number["max"].as_f64()),
        (Some(0.0), Some(100.0))
    );
    assert_eq!(number["unit_of_measurement"], "A");
    assert!(configs.iter().any(|d| d.topic.ends_with("/soh/config")));
}

#[test]
fn the_state_holds_every_value_the_entities_read() {
    let state: Value = serde_json::from_str(&state_json(
        &sample(None),
        &Energy {
            charged_kwh: 1.5,
            discharged_kwh: 0.25,
        },
    ))
    .unwrap();
    assert_eq!(state["voltage"], 52.0);
    assert_eq!(state["current"], -10.0);
    assert_eq!(state["power"], -520.0);
    assert_eq!(state["soc"], 80.0);
    assert!(state["soh"].is_null());
    assert_eq!(state["cell_min"], 3.2f32 as f64);
    assert_eq!(state["cell_max"], 3.3f32 as f64);
    assert_eq!(state["cell_2"], 3.3f32 as f64);
    assert_eq!(state["temperature_2"], 22.5);
    assert_eq!(state["alarm_cell_over_voltage"], "ON");
    assert_eq!(state["alarm_over_temperature"], "OFF");
    assert_eq!(state["charge_enabled"], "OFF");
    assert_eq!(state["quality"], "fresh");
    assert_eq!(state["energy_charged"], 1.5);
    assert_eq!(state["energy_discharged"], 0.25);
    let gateway: Value =
        serde_json::from_str(&gateway_discovery(&topics(), "1.0").payload).unwrap();
    assert_eq!(gateway["device"]["identifiers"][0], "packgate_shed");
}
