//! `deploy/packgate.example.toml` documents every configuration key: each
//! key the configuration types serialise (the defaults, and every kind of
//! bus, pack, load and output) appears in it, commented out or not; its
//! simulated pack has an id no real pack in the documentation has.

// Test code: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use packgate::config::Config;

const EXAMPLE: &str = include_str!("../deploy/packgate.example.toml");

/// One of each kind of bus, pack, simulated load and output, a bank and a
/// site limit: what the defaults leave empty.
const VARIANTS: &str = r#"
[[buses]]
name = "rtu"
kind = "modbus_rtu"
port = "/dev/ttyUSB0"
baud_rate = 9600
inter_frame_gap_ms = 5

[[buses]]
name = "tcp"
kind = "modbus_tcp"
address = "192.168.1.50:502"

[[buses]]
name = "slcan"
kind = "slcan"
port = "/dev/ttyACM0"
can_bitrate_bps = 500000

[[buses]]
name = "can0"
kind = "socketcan"
interface = "can0"

[[buses]]
name = "rack"
kind = "bms_serial"
port = "/dev/ttyUSB1"
baud_rate = 9600

[[buses]]
name = "daly-line"
kind = "bms_serial"
port = "/dev/ttyUSB2"

[[packs]]
id = "modbus-1"
driver = "modbus"
bus = "rtu"
unit_id = 1
profile = "jk-bms-pb"

[[packs]]
id = "sunspec-1"
driver = "sunspec"
bus = "tcp"
unit_id = 2
invert_current = true

[[packs]]
id = "can-1"
driver = "can"
bus = "slcan"
cells_in_series = 16

[[packs]]
id = "pylon-2"
driver = "pylon_ascii"
bus = "rack"
address = 2

[[packs]]
id = "daly-1"
driver = "daly"
bus = "daly-line"
host_address = 64

[[packs]]
id = "sim-walk"
driver = "sim"

[[packs]]
id = "sim-constant"
driver = "sim"
[packs.sim]
load = { kind = "constant", current_a = -20.0 }

[[packs]]
id = "sim-scripted"
driver = "sim"
[packs.sim]
load = { kind = "scripted", steps = [{ duration_s = 60.0, current_a = 10.0 }], repeat = true }

[[banks]]
name = "house"
packs = ["modbus-1", "sim-walk"]
pack_max_charge_a = 100.0
pack_max_discharge_a = 100.0
pack_capacity_ah = 280.0
[banks.inverter]
kind = "slcan"
port = "/dev/ttyACM1"

[control.site_limits]
charge_current_limit_a = { min = 0.0, max = 80.0 }

[outputs.alarm_relay]
pin = { chip = "/dev/gpiochip0", line = 17 }

[outputs.status_led]
pin = { chip = "/dev/gpiochip0", line = 27 }
"#;

/// Every key path of `value` into `out`: tables joined with `.`, arrays
/// (of tables) without an index. An empty table is a path of its own.
fn key_paths(prefix: &str, value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                key_paths(&path, value, out);
            }
        }
        serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            for item in items {
                key_paths(prefix, item, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

/// The key paths a configuration serialises, including the keys whose
/// value is `None` (JSON keeps them, as `null`).
fn config_paths(config: &Config) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    key_paths("", &serde_json::to_value(config).unwrap(), &mut paths);
    paths
}

/// The key paths written in a TOML text, commented out or not: table
/// headers (`[a.b]`, `[[a]]`), keys (`k = ...`) under the last header, and
/// the keys of inline tables (`k = { x = 1, y = 2 }`, also in arrays).
fn documented_paths(text: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let mut table = String::new();
    for line in text.lines() {
        let line = line.trim_start_matches(['#', ' ']).trim_end();
        if let Some(header) = line.strip_prefix('[') {
            let name = header.trim_start_matches('[');
            if let Some(end) = name.find(']') {
                table = name[..end].trim().to_owned();
                paths.insert(table.clone());
                continue;
            }
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if !is_key(key) {
            continue;
        }
        let path = if table.is_empty() {
            key.to_owned()
        } else {
            format!("{table}.{key}")
        };
        inline_keys(&path, value, &mut paths);
        paths.insert(path);
    }
    paths
}

/// The keys of the inline tables in `value` (also in arrays, nested to
/// any depth), under `path`, the key whose value it is.
fn inline_keys(path: &str, value: &str, paths: &mut BTreeSet<String>) {
    let mut open = vec![path.to_owned()];
    let mut last = path.to_owned();
    let mut word = String::new();
    let mut in_string = false;
    for c in value.chars() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            '#' => break,
            '{' | '[' => {
                open.push(last.clone());
                word.clear();
            }
            '}' | ']' => {
                if open.len() > 1 {
                    last = open.pop().unwrap_or_default();
                }
                word.clear();
            }
            '=' => {
                let key = word.trim();
                if open.len() > 1 && is_key(key) {
                    last = format!("{}.{key}", open[open.len() - 1]);
                    paths.insert(last.clone());
                }
                word.clear();
            }
            ',' => word.clear(),
            _ => word.push(c),
        }
    }
}

fn is_key(word: &str) -> bool {
    !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[test]
fn every_default_key_is_in_the_example() {
    let documented = documented_paths(EXAMPLE);
    let missing: Vec<String> = config_paths(&Config::default())
        .into_iter()
        .filter(|path| !documented.contains(path))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from deploy/packgate.example.toml: {missing:?}"
    );
}

#[test]
fn every_kind_of_bus_pack_load_and_output_has_its_keys_in_the_example() {
    let config: Config = toml::from_str(VARIANTS).unwrap();
    assert_eq!(config.buses.len(), 6);
    assert_eq!(config.packs.len(), 8);
    assert_eq!(config.banks.len(), 1);
    let documented = documented_paths(EXAMPLE);
    let missing: Vec<String> = config_paths(&config)
        .into_iter()
        .filter(|path| !documented.contains(path))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from deploy/packgate.example.toml: {missing:?}"
    );
}

#[test]
fn the_key_finders_see_what_they_should() {
    let text = "a = 1\n[b]\n# c = { d = \"{x = 1}\", e = [{ f = 3 }], g = 4 }  # h = 5\n\
                # prose, no key\n[[i.j]]\nk = 6\n";
    let documented = documented_paths(text);
    let want = [
        "a", "b", "b.c", "b.c.d", "b.c.e", "b.c.e.f", "b.c.g", "i.j", "i.j.k",
    ];
    assert_eq!(documented, want.iter().map(|s| s.to_string()).collect());
    let mut paths = BTreeSet::new();
    let value = serde_json::json!({ "x": { "y": null, "z": {} }, "p": [{ "q": 1 }, { "r": 2 }] });
    key_paths("", &value, &mut paths);
    let want = ["p.q", "p.r", "x.y", "x.z"];
    assert_eq!(paths, want.iter().map(|s| s.to_string()).collect());
}

/// The `id = "..."` values of the TOML examples in `text`, each with the
/// `driver` of the same table.
fn pack_ids_and_drivers(text: &str) -> Vec<(String, String)> {
    let value = |line: &str, key: &str| {
        let rest = line
            .trim()
            .strip_prefix(key)?
            .trim_start()
            .strip_prefix('=')?;
        Some(rest.split('#').next()?.trim().trim_matches('"').to_owned())
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(id) = value(line, "id") else {
            continue;
        };
        let driver = lines[n + 1..]
            .iter()
            .take_while(|l| !l.trim_start().starts_with('['))
            .find_map(|l| value(l, "driver"))
            .unwrap_or_default();
        found.push((id, driver));
    }
    found
}

#[test]
fn the_shipped_simulated_pack_cannot_be_taken_for_a_real_one() {
    let config = Config::from_toml_str(EXAMPLE, "example").unwrap();
    let simulated: Vec<String> = config
        .packs
        .iter()
        .filter(|p| matches!(p.driver, packgate::config::DriverConfig::Sim(_)))
        .map(|p| p.id.as_str().to_owned())
        .collect();
    assert_eq!(simulated, ["demo-sim-1"]);
    // No real pack in the documentation has its id.
    for (name, text) in [
        ("README.md", include_str!("../README.md")),
        ("deploy/INSTALL.md", include_str!("../deploy/INSTALL.md")),
        ("the example", EXAMPLE),
    ] {
        for (id, driver) in pack_ids_and_drivers(text) {
            assert!(
                !simulated.contains(&id) || driver == "sim",
                "{name}: a {driver:?} pack is called {id}, as the shipped simulated pack is"
            );
        }
    }
    // INSTALL.md's clean start removes the stores the defaults name.
    let install = include_str!("../deploy/INSTALL.md");
    let defaults = Config::default();
    for file in [&defaults.data.database, &defaults.monitor.database] {
        let pattern = format!("/var/lib/packgate/{}*", file.display());
        assert!(install.contains(&pattern), "INSTALL.md lacks {pattern}");
    }
}

#[test]
fn pack_ids_are_found_with_their_drivers() {
    let text = "[[packs]]\nid = \"a\"   # note\ndriver = \"sim\"\n\
                [[packs]]\nid = \"b\"\nbus = \"x\"\ndriver = \"modbus\"\n[[packs]]\nid = \"c\"\n";
    let want = [("a", "sim"), ("b", "modbus"), ("c", "")];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(i, d)| (i.to_string(), d.to_string()))
        .collect();
    assert_eq!(pack_ids_and_drivers(text), want);
}
