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

const README: &str = include_str!("../README.md");

/// The rows of the README's table of sections: each row's first cell (the
/// section, such as `` `[collect]` `` or `` `[streams.samples]`, `.events` ``)
/// and its second (the keys).
fn readme_section_rows(text: &str) -> Vec<(String, String)> {
    let Some(start) = text.find("Every section and its keys") else {
        return Vec::new();
    };
    text[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| {
            let mut cells = line.trim_matches('|').split(" | ");
            let section = cells.next()?.trim().to_owned();
            let keys = cells.next()?.trim().to_owned();
            section.starts_with('`').then_some((section, keys))
        })
        .collect()
}

/// The words inside backticks in `text`, dots kept: `` `[banks.inverter]` ``
/// gives `banks.inverter`, `` `pin = { chip, line }` `` gives `pin`, `chip`,
/// `line`.
fn quoted_words(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|quoted| {
            quoted
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .map(|word| word.trim_matches('.').to_owned())
                .filter(|word| !word.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The sections a row's first cell names: `[a.b]`, `[[a]]` or a bare key
/// give `a.b`, `a`.
fn row_sections(section_cell: &str) -> BTreeSet<String> {
    quoted_words(section_cell)
}

/// The keys a row's second cell names: its quoted words and each part of
/// a dotted one (`[control.site_limits]` names `site_limits`).
fn row_keys(keys_cell: &str) -> BTreeSet<String> {
    quoted_words(keys_cell)
        .into_iter()
        .flat_map(|word| {
            let mut parts: Vec<String> = word.split('.').map(str::to_owned).collect();
            parts.push(word);
            parts
        })
        .collect()
}

/// The sections of `wanted` that no row of `rows` names, a section being
/// named by its own row or by a row of one of its tables (`outputs` by
/// `[outputs.alarm_relay]`).
fn sections_without_a_row(rows: &[(String, String)], wanted: &[String]) -> Vec<String> {
    let named: BTreeSet<String> = rows.iter().flat_map(|(s, _)| row_sections(s)).collect();
    wanted
        .iter()
        .filter(|section| {
            !named
                .iter()
                .any(|n| n == *section || n.starts_with(&format!("{section}.")))
        })
        .cloned()
        .collect()
}

/// The top-level sections of the configuration, and `banks.inverter`.
fn config_sections() -> Vec<String> {
    let value = serde_json::to_value(Config::default()).unwrap();
    let mut sections: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    sections.push("banks.inverter".to_owned());
    sections
}

/// The keys of each table section whose row lists them all: the section's
/// name as its README row gives it, and its keys.
fn table_sections_and_keys() -> Vec<(String, Vec<String>)> {
    let value = serde_json::to_value(Config::default()).unwrap();
    let mut out = Vec::new();
    for (name, section) in value.as_object().unwrap() {
        let Some(keys) = section.as_object() else {
            continue;
        };
        // `streams` and `outputs` have a row per table, not one of their own.
        if name == "streams" || name == "outputs" {
            continue;
        }
        out.push((name.clone(), keys.keys().cloned().collect()));
    }
    let inverter =
        serde_json::to_value(packgate::config::InverterConfig::slcan("/dev/ttyACM0")).unwrap();
    out.push((
        "banks.inverter".to_owned(),
        inverter.as_object().unwrap().keys().cloned().collect(),
    ));
    out
}

#[test]
fn every_section_has_a_row_in_the_readme_table() {
    let rows = readme_section_rows(README);
    assert!(rows.len() >= 15, "the README's table of sections: {rows:?}");
    let missing = sections_without_a_row(&rows, &config_sections());
    assert!(
        missing.is_empty(),
        "sections without a row in the README's table (\"Every section and its keys\"): {missing:?}"
    );
    for (section, keys) in table_sections_and_keys() {
        let row = rows
            .iter()
            .find(|(s, _)| row_sections(s).contains(&section))
            .unwrap_or_else(|| panic!("no README row names [{section}] itself"));
        let listed = row_keys(&row.1);
        let unlisted: Vec<&String> = keys.iter().filter(|k| !listed.contains(*k)).collect();
        assert!(
            unlisted.is_empty(),
            "README row of [{section}] lacks the keys {unlisted:?}"
        );
    }
}

#[test]
fn the_readme_table_reader_sees_rows_and_their_sections() {
    let text = "Every section and its keys:\n\n| section | keys |\n| --- | --- |\n\
                | `data_dir` | databases |\n\
                | `[streams.samples]`, `.events` | `max_bytes` |\n\
                | `[[banks]]` | `name`, `pin = { chip, line }` |\n\
                \nafter\n| `[mqtt]` | not in the table |\n";
    let rows = readme_section_rows(text);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        row_sections(&rows[1].0),
        ["events", "streams.samples"].map(String::from).into()
    );
    assert_eq!(
        row_keys(&rows[2].1),
        ["chip", "line", "name", "pin"].map(String::from).into()
    );
    assert_eq!(
        row_keys("`[control.site_limits]`"),
        ["control", "control.site_limits", "site_limits"]
            .map(String::from)
            .into()
    );
    let wanted = ["data_dir", "streams", "banks", "mqtt", "banks.inverter"].map(String::from);
    assert_eq!(
        sections_without_a_row(&rows, &wanted),
        ["mqtt", "banks.inverter"]
    );
}
