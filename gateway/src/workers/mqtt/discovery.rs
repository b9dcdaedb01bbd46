//! What the mqtt worker publishes, as pure functions: Home Assistant
//! discovery configs (one HA device per pack, via the gateway's device),
//! each pack's state as one JSON document, and the topics they go to.
//! Nothing here does I/O.

use packgate_protocol::{AlarmFlags, DataQuality, PackId, Sample};
use serde_json::{json, Map, Value};

use super::energy::Energy;
use crate::workers::control::validate::SettingBounds;

/// The topics of one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Home Assistant's discovery prefix (`homeassistant`).
    pub discovery_prefix: String,
    /// `<base_topic>/<gateway_name>`.
    pub base: String,
    /// The gateway's name.
    pub gateway: String,
}

impl Topics {
    /// The topics of gateway `gateway` under `base_topic`.
    pub fn new(discovery_prefix: &str, base_topic: &str, gateway: &str) -> Self {
        Self {
            discovery_prefix: discovery_prefix.to_owned(),
            base: format!("{base_topic}/{gateway}"),
            gateway: gateway.to_owned(),
        }
    }

    /// `online` / `offline`, retained; `offline` is the last will.
    pub fn availability(&self) -> String {
        format!("{}/availability", self.base)
    }

    /// Home Assistant's own status (`online` after it starts).
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }

    /// One pack's state document.
    pub fn state(&self, pack: &PackId) -> String {
        format!("{}/{pack}/state", self.base)
    }

    /// Where Home Assistant sends a new value of a pack's setting.
    pub fn command(&self, pack: &PackId, setting: &str) -> String {
        format!("{}/{pack}/set/{setting}", self.base)
    }

    /// Every command topic, for the subscription.
    pub fn all_commands(&self) -> String {
        format!("{}/+/set/+", self.base)
    }

    /// The pack and setting a command topic names; none for another topic.
    pub fn parse_command(&self, topic: &str) -> Option<(PackId, String)> {
        let rest = topic.strip_prefix(&self.base)?.strip_prefix('/')?;
        let (pack, setting) = rest.split_once("/set/")?;
        if setting.is_empty() || setting.contains('/') {
            return None;
        }
        Some((PackId::new(pack).ok()?, setting.to_owned()))
    }

    fn device_id(&self, pack: &PackId) -> String {
        format!("packgate_{}_{pack}", self.gateway)
    }

    fn gateway_device_id(&self) -> String {
        format!("packgate_{}", self.gateway)
    }
}

/// What a pack's entities are made of: known from its first sample and
/// its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackShape {
    /// Series cells reported.
    pub cells: usize,
    /// Temperature sensors reported.
    pub sensors: usize,
    /// Whether the BMS reports a state of health.
    pub has_soh: bool,
    /// The model shown in Home Assistant: the driver and profile.
    pub model: String,
    /// The serial number the pack reported, once known.
    pub serial_number: Option<String>,
}

impl PackShape {
    /// The shape of `sample`'s pack, with its `model` and serial number.
    pub fn of(sample: &Sample, model: &str, serial_number: Option<&str>) -> Self {
        Self {
            cells: sample.reading.cell_voltages_v.0.len(),
            sensors: sample.reading.temperatures_c.0.len(),
            has_soh: sample.reading.soh_pct.is_some(),
            model: model.to_owned(),
            serial_number: serial_number.map(str::to_owned),
        }
    }
}

/// One retained discovery config.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    /// `<prefix>/<component>/<node>/<key>/config`.
    pub topic: String,
    /// The config, JSON.
    pub payload: String,
}

/// The energy counters: key and name (kWh, `total_increasing`).
const ENERGY: [(&str, &str); 2] = [
    ("energy_charged", "Energy charged"),
    ("energy_discharged", "Energy discharged"),
];

/// A sensor: key, name, device class, unit, display precision.
type SensorSpec = (String, String, Option<&'static str>, &'static str, u8);

fn sensors(shape: &PackShape) -> Vec<SensorSpec> {
    let mut out: Vec<SensorSpec> = vec![
        (
            "soc".into(),
            "State of charge".into(),
            Some("battery"),
            "%",
            1,
        ),
        ("voltage".into(), "Voltage".into(), Some("voltage"), "V", 2),
        ("current".into(), "Current".into(), Some("current"), "A", 1),
        ("power".into(), "Power".into(), Some("power"), "W", 0),
        (
            "cell_min".into(),
            "Lowest cell".into(),
            Some("voltage"),
            "V",
            3,
        ),
        (
            "cell_max".into(),
            "Highest cell".into(),
            Some("voltage"),
            "V",
            3,
        ),
    ];
    if shape.has_soh {
        out.push(("soh".into(), "State of health".into(), None, "%", 1));
    }
    for i in 1..=shape.sensors {
        out.push((
            format!("temperature_{i}"),
            format!("Temperature {i}"),
            Some("temperature"),
            "°C",
            1,
        ));
    }
    for i in 1..=shape.cells {
        out.push((
            format!("cell_{i}"),
            format!("Cell {i}"),
            Some("voltage"),
            "V",
            3,
        ));
    }
    out
}

/// Every discovery config of one pack: its sensors, its alarms and
/// switches as binary sensors, and (when `settings` is given) its
/// writable settings as numbers. `expire_after_s` marks the entities
/// unavailable when the pack's state stops.
pub fn pack_discovery(
    topics: &Topics,
    pack: &PackId,
    shape: &PackShape,
    settings: Option<&[SettingBounds]>,
    expire_after_s: u64,
) -> Vec<Discovery> {
    let entities = PackEntities::new(topics, pack, shape);
    let mut out = Vec::new();
    for (key, name, class, unit, precision) in sensors(shape) {
        let mut c = entities.reading(&key, &name);
        c.insert("unit_of_measurement".into(), json!(unit));
        c.insert("state_class".into(), json!("measurement"));
        c.insert("suggested_display_precision".into(), json!(precision));
        c.insert("expire_after".into(), json!(expire_after_s));
        if let Some(class) = class {
            c.insert("device_class".into(), json!(class));
        }
        out.push(entities.config("sensor", &key, c));
    }
    for (key, name) in ENERGY {
        let mut c = entities.reading(key, name);
        c.insert("unit_of_measurement".into(), json!("kWh"));
        c.insert("device_class".into(), json!("energy"));
        c.insert("state_class".into(), json!("total_increasing"));
        c.insert("suggested_display_precision".into(), json!(3));
        out.push(entities.config("sensor", key, c));
    }
    for (key, name, class) in binaries() {
        let mut c = entities.reading(&key, &name);
        c.insert("payload_on".into(), json!("ON"));
        c.insert("payload_off".into(), json!("OFF"));
        c.insert("expire_after".into(), json!(expire_after_s));
        if let Some(class) = class {
            c.insert("device_class".into(), json!(class));
        }
        out.push(entities.config("binary_sensor", &key, c));
    }
    for s in settings.unwrap_or_default() {
        out.push(entities.number(s));
    }
    out
}

/// The binary sensors of a pack: key, name, device class.
fn binaries() -> Vec<(String, String, Option<&'static str>)> {
    let mut binaries: Vec<(String, String, Option<&str>)> = AlarmFlags::ALL
        .iter()
        .map(|(_, text)| {
            (
                format!("alarm_{text}"),
                format!("Alarm {}", text.replace('_', " ")),
                Some("problem"),
            )
        })
        .collect();
    binaries.push(("charge_enabled".into(), "Charging allowed".into(), None));
    binaries.push((
        "discharge_enabled".into(),
        "Discharging allowed".into(),
        None,
    ));
    binaries
}

/// What every entity of one pack shares: its device, its node id and
/// where its state and commands go.
struct PackEntities<'a> {
    topics: &'a Topics,
    pack: &'a PackId,
    node: String,
    device: Value,
}

impl<'a> PackEntities<'a> {
    fn new(topics: &'a Topics, pack: &'a PackId, shape: &PackShape) -> Self {
        let node = topics.device_id(pack);
        let mut device = json!({
            "identifiers": [node],
            "name": pack.as_str(),
            "manufacturer": "packgate",
            "model": shape.model,
            "via_device": topics.gateway_device_id(),
        });
        if let Some(serial) = &shape.serial_number {
            device["serial_number"] = json!(serial);
        }
        Self {
            topics,
            pack,
            node,
            device,
        }
    }

    /// The keys every entity has: name, ids, device, availability.
    fn common(&self, key: &str, name: &str) -> Map<String, Value> {
        let node = &self.node;
        let mut c = Map::new();
        c.insert("name".into(), json!(name));
        c.insert("unique_id".into(), json!(format!("{node}_{key}")));
        c.insert("object_id".into(), json!(format!("{node}_{key}")));
        c.insert("device".into(), self.device.clone());
        c.insert(
            "availability_topic".into(),
            json!(self.topics.availability()),
        );
        c
    }

    /// An entity that reads `key` of the pack's state.
    fn reading(&self, key: &str, name: &str) -> Map<String, Value> {
        let mut c = self.common(key, name);
        c.insert("state_topic".into(), json!(self.topics.state(self.pack)));
        c.insert(
            "value_template".into(),
            json!(format!("{{{{ value_json.{key} }}}}")),
        );
        c
    }

    /// A writable setting as a number entity.
    fn number(&self, s: &SettingBounds) -> Discovery {
        let mut c = self.common(&s.name, &s.name.replace('_', " "));
        c.insert(
            "command_topic".into(),
            json!(self.topics.command(self.pack, &s.name)),
        );
        c.insert("min".into(), json!(s.min));
        c.insert("max".into(), json!(s.max));
        let step = if s.max - s.min <= 1.0 { 1.0 } else { 0.1 };
        c.insert("step".into(), json!(step));
        c.insert("mode".into(), json!("box"));
        c.insert("optimistic".into(), json!(true));
        if !s.unit.is_empty() {
            c.insert("unit_of_measurement".into(), json!(s.unit));
        }
        self.config("number", &s.name, c)
    }

    /// The retained config of one entity.
    fn config(&self, component: &str, key: &str, c: Map<String, Value>) -> Discovery {
        Discovery {
            topic: format!(
                "{}/{component}/{}/{key}/config",
                self.topics.discovery_prefix, self.node
            ),
            payload: Value::Object(c).to_string(),
        }
    }
}

/// The gateway's own device: one connectivity sensor, so the packs'
/// `via_device` points at something.
pub fn gateway_discovery(topics: &Topics, version: &str) -> Discovery {
    let node = topics.gateway_device_id();
    let c = json!({
        "name": "Online",
        "unique_id": format!("{node}_online"),
        "object_id": format!("{node}_online"),
        "state_topic": topics.availability(),
        "payload_on": "online",
        "payload_off": "offline",
        "device_class": "connectivity",
        "device": {
            "identifiers": [node],
            "name": format!("packgate {}", topics.gateway),
            "manufacturer": "packgate",
            "model": "packgate gateway",
            "sw_version": version,
        },
    });
    Discovery {
        topic: format!(
            "{}/binary_sensor/{node}/online/config",
            topics.discovery_prefix
        ),
        payload: c.to_string(),
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "ON"
    } else {
        "OFF"
    }
}

/// One pack's state: every value its entities read, in base units, and
/// the energy counted since the worker started.
pub fn state_json(sample: &Sample, energy: &Energy) -> String {
    let r = &sample.reading;
    let mut s = Map::new();
    s.insert("energy_charged".into(), json!(energy.charged_kwh));
    s.insert("energy_discharged".into(), json!(energy.discharged_kwh));
    s.insert("voltage".into(), json!(r.pack_voltage_v));
    s.insert("current".into(), json!(r.current_a));
    s.insert(
        "power".into(),
        json!(f64::from(r.pack_voltage_v) * f64::from(r.current_a)),
    );
    s.insert("soc".into(), json!(r.soc_pct));
    s.insert("soh".into(), json!(r.soh_pct));
    if let Some((_, v)) = r.cell_voltages_v.min_v() {
        s.insert("cell_min".into(), json!(v));
    }
    if let Some((_, v)) = r.cell_voltages_v.max_v() {
        s.insert("cell_max".into(), json!(v));
    }
    for (i, t) in r.temperatures_c.0.iter().enumerate() {
        s.insert(format!("temperature_{}", i + 1), json!(t));
    }
    for (i, v) in r.cell_voltages_v.0.iter().enumerate() {
        s.insert(format!("cell_{}", i + 1), json!(v));
    }
    for (flag, text) in AlarmFlags::ALL {
        s.insert(
            format!("alarm_{text}"),
            json!(on_off(r.alarms.contains(*flag))),
        );
    }
    s.insert("charge_enabled".into(), json!(on_off(r.charge_enabled)));
    s.insert(
        "discharge_enabled".into(),
        json!(on_off(r.discharge_enabled)),
    );
    s.insert("quality".into(), json!(sample.quality.as_str()));
    s.insert("fresh".into(), json!(sample.quality == DataQuality::Fresh));
    s.insert("timestamp_ms".into(), json!(sample.timestamp_ms));
    Value::Object(s).to_string()
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
