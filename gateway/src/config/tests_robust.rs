//! Values that parse but cannot work are refused at load, naming the key
//! as the file spells it and its line.

use super::*;

/// The error `text` is refused with, panicking when it is accepted.
fn refused(text: &str) -> String {
    match Config::from_toml_str(text, "x.toml") {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts `text` is refused naming `key` on `line`.
fn refused_at(text: &str, key: &str, line: usize) -> String {
    let err = refused(text);
    assert!(
        err.contains(&format!("x.toml: line {line}: {key}: ")),
        "expected {key} on line {line}: {err}"
    );
    err
}

const RTU: &str = "[[buses]]\nname = \"rs485\"\nkind = \"modbus_rtu\"\nport = \"/dev/ttyUSB0\"\n";

#[test]
fn an_inflight_window_past_its_ceiling_is_refused() {
    let err = refused_at(
        "[collect]\ninflight_max = 18446744073709551615\n",
        "collect.inflight_max",
        2,
    );
    assert!(err.contains("1 to 65536"), "{err}");
    refused_at(
        "[collect]\ninflight_max = 1024\npending_max = 99999999999\n",
        "collect.pending_max",
        3,
    );
}

#[test]
fn a_poll_period_that_would_overflow_is_refused() {
    let can = "[[buses]]\nname = \"can\"\nkind = \"slcan\"\nport = \"/dev/ttyACM0\"\n\
               [[packs]]\nid = \"lv\"\ndriver = \"can\"\nbus = \"can\"\n";
    let err = refused_at(
        &format!("[collect]\npoll_interval_ms = 9000000000000000000\n{can}"),
        "collect.poll_interval_ms",
        2,
    );
    assert!(err.contains("10 to 86400000"), "{err}");
    // Spelt as a float, it is a type error naming the key and line.
    let err = refused(&format!("[collect]\npoll_interval_ms = 9e18\n{can}"));
    assert!(
        err.contains("poll_interval_ms") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn polling_as_fast_as_possible_is_for_the_benchmark_only() {
    let err = refused_at(
        "[collect]\npoll_interval_ms = 0\n",
        "collect.poll_interval_ms",
        2,
    );
    assert!(err.contains("packgate bench"), "{err}");
    refused_at(
        "[collect]\npoll_interval_ms = 5\n",
        "collect.poll_interval_ms",
        2,
    );
    Config::from_toml_str("[collect]\npoll_interval_ms = 10\n", "x.toml").unwrap();
}

#[test]
fn every_duration_has_a_ceiling() {
    for (section, key) in [
        ("collect", "request_timeout_ms"),
        ("collect", "offline_backoff_max_ms"),
        ("collect", "publish_retry_max_ms"),
        ("data", "shutdown_drain_ms"),
        ("data", "retention_interval_s"),
        ("monitor", "snapshot_interval_s"),
        ("broker", "request_timeout_ms"),
        ("cloud", "upload_interval_ms"),
        ("control", "default_deadline_ms"),
        ("control", "max_command_ttl_s"),
        ("control", "max_clock_skew_ms"),
        ("control", "max_in_flight"),
    ] {
        refused_at(
            &format!("[{section}]\n{key} = 9223372036854775807\n"),
            &format!("{section}.{key}"),
            2,
        );
    }
}

#[test]
fn two_buses_on_one_port_interface_or_endpoint_are_refused() {
    let second = |kind: &str, key: &str, value: &str| {
        format!("{RTU}[[buses]]\nname = \"b2\"\nkind = \"{kind}\"\n{key} = \"{value}\"\n")
    };
    let err = refused_at(
        &second("modbus_rtu", "port", "/dev/ttyUSB0"),
        "buses[1].port",
        8,
    );
    assert!(err.contains("already buses[0] (\"rs485\")"), "{err}");
    refused_at(&second("slcan", "port", "/dev/ttyUSB0"), "buses[1].port", 8);
    Config::from_toml_str(&second("slcan", "port", "/dev/ttyACM0"), "x.toml").unwrap();
    let tcp = "[[buses]]\nname = \"t1\"\nkind = \"modbus_tcp\"\naddress = \"10.0.0.5:502\"\n\
               [[buses]]\nname = \"t2\"\nkind = \"modbus_tcp\"\naddress = \"10.0.0.5:502\"\n";
    refused_at(tcp, "buses[1].address", 8);
    let can = "[[buses]]\nname = \"c1\"\nkind = \"socketcan\"\ninterface = \"can0\"\n\
               [[buses]]\nname = \"c2\"\nkind = \"socketcan\"\ninterface = \"can0\"\n";
    refused_at(can, "buses[1].interface", 8);
}

#[test]
fn a_tcp_address_must_be_host_and_port() {
    let tcp = |address: &str| {
        format!("[[buses]]\nname = \"t\"\nkind = \"modbus_tcp\"\naddress = \"{address}\"\n")
    };
    for bad in [
        "10.0.0.5",
        "10.0.0.5:0",
        ":502",
        "h:99999",
        "h:port",
        "::1:502",
        " :502",
    ] {
        refused_at(&tcp(bad), "buses[0].address", 4);
    }
    for good in ["10.0.0.5:502", "[::1]:502", "converter.local:5020"] {
        Config::from_toml_str(&tcp(good), "x.toml").unwrap();
    }
}

#[test]
fn a_bus_needs_a_name_and_sane_serial_settings() {
    refused_at(&RTU.replace("\"rs485\"", "\"\""), "buses[0].name", 2);
    refused_at(&RTU.replace("\"rs485\"", "\"  \""), "buses[0].name", 2);
    refused_at(&format!("{RTU}baud_rate = 0\n"), "buses[0].baud_rate", 5);
    refused_at(
        &format!("{RTU}reconnect_backoff_max_ms = 0\n"),
        "buses[0].reconnect_backoff_max_ms",
        5,
    );
    let slcan = "[[buses]]\nname = \"c\"\nkind = \"slcan\"\nport = \"/dev/ttyACM0\"\n\
                 can_bitrate_bps = 333\n";
    let err = refused_at(slcan, "buses[0].can_bitrate_bps", 5);
    assert!(err.contains("500000"), "{err}");
}

#[test]
fn a_stream_larger_than_any_disk_is_refused() {
    let err = refused_at(
        "[streams.samples]\nmax_bytes = 9223372036854775807\nmax_age_s = 604800\n",
        "streams.samples.max_bytes",
        2,
    );
    assert!(err.contains("1 TiB"), "{err}");
    refused_at(
        "[streams.events]\nmax_bytes = 268435456\nmax_age_s = 18446744073709551615\n",
        "streams.events.max_age_s",
        3,
    );
}

#[test]
fn a_key_left_to_its_default_is_reported_at_its_section() {
    // pending_max is not in the file; inflight_max makes it wrong.
    let err = refused("\n[collect]\ninflight_max = 60000\npending_max = 100\n");
    assert!(err.contains("line 4: collect.pending_max"), "{err}");
    let err = refused("\n\n[collect]\ninflight_max = 0\n");
    assert!(err.contains("line 4: collect.inflight_max"), "{err}");
}

#[test]
fn packs_and_sim_packs_have_a_documented_maximum() {
    let mut config = Config::default();
    let err = config.add_sim_packs(1_000_000_000).unwrap_err().to_string();
    assert!(err.contains("at most 1000"), "{err}");
    assert!(config.packs.is_empty());
    config.add_sim_packs(MAX_PACKS).unwrap();
    config.validate("x").unwrap();
    assert!(config.add_sim_packs(1).is_err());
    let many: String = (0..=MAX_PACKS)
        .map(|n| format!("[[packs]]\nid = \"p{n}\"\ndriver = \"sim\"\n"))
        .collect();
    let err = refused(&many);
    assert!(err.contains("packs: 1001 packs"), "{err}");
}

#[test]
fn a_profile_with_conflicting_settings_is_refused_through_its_pack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let base = packgate_drivers::profile::Profile::builtin_source("packgate-sim").unwrap();
    let setting = |name: &str| {
        format!("\n[[settings]]\nname = \"{name}\"\nregister = 900\ntype = \"u16\"\nmin = 0.0\nmax = 5.0\n")
    };
    std::fs::write(&path, format!("{base}{}{}", setting("a"), setting("b"))).unwrap();
    let text = format!(
        "{RTU}[[packs]]\nid = \"p\"\ndriver = \"modbus\"\nbus = \"rs485\"\nunit_id = 1\n\
         profile = \"{}\"\n",
        path.display()
    );
    let err = refused_at(&text, "packs[0].profile", 10);
    assert!(err.contains("settings["), "{err}");
    assert!(err.contains("holding register 900"), "{err}");
}

#[test]
fn cloud_secrets_load_but_are_never_printed() {
    for (key, extra) in [
        ("password", "user = \"gw\"\n"),
        ("token", ""),
        ("nkey_seed", ""),
    ] {
        let text = format!("[cloud]\n{extra}{key} = \"hunter2-{key}\"\n");
        let config = Config::from_toml_str(&text, "x.toml").unwrap();
        let secret = match key {
            "password" => &config.cloud.password,
            "token" => &config.cloud.token,
            _ => &config.cloud.nkey_seed,
        };
        assert_eq!(secret.as_ref().unwrap().expose(), format!("hunter2-{key}"));
        let printed = toml::to_string_pretty(&config).unwrap();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains(&format!("{key} = \"***\"")), "{printed}");
        assert!(!format!("{config:?}").contains("hunter2"));
        // The printed configuration fed back in is refused at the secret.
        let err = refused(&printed);
        assert!(err.contains(&format!("cloud.{key}: ")), "{err}");
        assert!(err.contains("line "), "{err}");
    }
}

#[test]
fn a_misspelt_secret_key_is_refused_without_quoting_its_line() {
    let err = refused("[cloud]\nuser = \"gw\"\npasword = \"hunter2\"\n");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("line 3, column 1"), "{err}");
    assert!(err.contains("unknown field `pasword`"), "{err}");
    let err = refused("[cloud]\ntoken = [\"hunter2\"]\n");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn two_names_of_one_serial_device_are_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("ttyUSB7");
    std::fs::write(&device, "").unwrap();
    let by_id = dir.path().join("usb-FTDI_FT232R-if00-port0");
    std::os::unix::fs::symlink(&device, &by_id).unwrap();
    let bus = |name: &str, port: &std::path::Path| {
        format!(
            "[[buses]]\nname = \"{name}\"\nkind = \"modbus_rtu\"\nport = {:?}\n",
            port.display().to_string()
        )
    };
    let err = refused_at(&(bus("a", &device) + &bus("b", &by_id)), "buses[1].port", 8);
    assert!(err.contains("already buses[0] (\"a\")"), "{err}");
}
