use super::super::buses::SerialParity;
use super::super::Config;
use super::*;

fn error(text: &str) -> String {
    match Config::from_toml_str(text, "x.toml") {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(e) => e.to_string(),
    }
}

const RTU_PACK: &str =
    "[[packs]]\nid = \"p1\"\ndriver = \"modbus\"\nbus = \"rs485\"\nunit_id = 1\nprofile = \"packgate-sim\"\n";

#[test]
fn every_bus_kind_and_driver_reads_with_its_defaults() {
    let text = format!(
        "[[buses]]\nname = \"rs485\"\nkind = \"modbus_rtu\"\nport = \"/dev/ttyUSB0\"\n\
         [[buses]]\nname = \"tcp\"\nkind = \"modbus_tcp\"\naddress = \"10.0.0.5:502\"\n\
         [[buses]]\nname = \"canable\"\nkind = \"slcan\"\nport = \"/dev/ttyACM0\"\n\
         [[buses]]\nname = \"can0\"\nkind = \"socketcan\"\ninterface = \"can0\"\n\
         {RTU_PACK}\
         [[packs]]\nid = \"lv\"\ndriver = \"can\"\nbus = \"canable\"\n\
         [[packs]]\nid = \"s\"\ndriver = \"sim\"\n"
    );
    let config = Config::from_toml_str(&text, "x.toml").unwrap();
    let BusLinkConfig::ModbusRtu(rtu) = &config.buses[0].link else {
        panic!("{:?}", config.buses[0]);
    };
    assert_eq!((rtu.baud_rate, rtu.stop_bits), (9_600, 1));
    assert_eq!(rtu.parity, SerialParity::None);
    assert_eq!(rtu.reconnect_backoff_max_ms, 10_000);
    let BusLinkConfig::Slcan(slcan) = &config.buses[2].link else {
        panic!("{:?}", config.buses[2]);
    };
    assert_eq!((slcan.baud_rate, slcan.can_bitrate_bps), (115_200, 500_000));
    assert_eq!(config.buses[3].link.kind(), "socketcan");
    assert_eq!(
        config.packs[0],
        PackConfig::modbus(PackId::new("p1").unwrap(), "rs485", 1, "packgate-sim")
    );
    assert_eq!(
        config.packs[1],
        PackConfig::can(PackId::new("lv").unwrap(), "canable", 0)
    );
    assert_eq!(
        config.packs[2],
        PackConfig::sim(PackId::new("s").unwrap(), SimPackConfig::default())
    );
    // What check-config prints reads back as the same configuration.
    let printed = toml::to_string_pretty(&config).unwrap();
    assert!(printed.contains("kind = \"modbus_rtu\""), "{printed}");
    assert_eq!(Config::from_toml_str(&printed, "printed").unwrap(), config);
}

#[test]
fn a_misplaced_key_names_the_key_the_kind_and_the_line() {
    let err = error(
        "[[buses]]\nname = \"tcp\"\nkind = \"modbus_tcp\"\naddress = \"10.0.0.5:502\"\nbaud_rate = 9600\n",
    );
    assert!(err.contains("unknown field `baud_rate`"), "{err}");
    assert!(err.contains("kind = \"modbus_tcp\""), "{err}");
    assert!(err.contains("line 1"), "{err}");
    assert!(!err.contains("ModbusTcp"), "{err}");
    let err = error(&format!(
        "[[buses]]\nname = \"rs485\"\nkind = \"modbus_rtu\"\nport = \"/dev/ttyUSB0\"\n{RTU_PACK}cells_in_series = 16\n"
    ));
    assert!(err.contains("unknown field `cells_in_series`"), "{err}");
    assert!(err.contains("driver = \"modbus\""), "{err}");
    assert!(err.contains("line 5"), "{err}");
}

#[test]
fn a_missing_key_names_the_key() {
    let err = error("[[buses]]\nname = \"rs485\"\nkind = \"modbus_rtu\"\nbaud_rate = 9600\n");
    assert!(err.contains("missing field `port`"), "{err}");
    assert!(err.contains("kind = \"modbus_rtu\""), "{err}");
    let err = error("[[buses]]\nkind = \"modbus_tcp\"\naddress = \"h:502\"\n");
    assert!(err.contains("missing field `name`"), "{err}");
    let err = error("[[buses]]\nname = \"a\"\nport = \"/dev/ttyUSB0\"\n");
    assert!(err.contains("missing field `kind`"), "{err}");
    let err = error("[[packs]]\nid = \"p\"\ndriver = \"modbus\"\nbus = \"x\"\nunit_id = 1\n");
    assert!(err.contains("missing field `profile`"), "{err}");
}

#[test]
fn an_unknown_kind_lists_the_known_ones() {
    let err = error("[[buses]]\nname = \"a\"\nkind = \"modbus\"\n");
    assert!(
        err.contains(
            "unknown kind = \"modbus\", expected one of modbus_rtu, modbus_tcp, slcan, socketcan"
        ),
        "{err}"
    );
    let err = error("[[packs]]\nid = \"a\"\ndriver = \"victron\"\n");
    assert!(err.contains("unknown driver = \"victron\""), "{err}");
}

#[test]
fn references_and_values_are_checked_in_config_words() {
    let err = error(&format!(
        "[[buses]]\nname = \"rs485\"\nkind = \"slcan\"\nport = \"/dev/ttyACM0\"\n{RTU_PACK}"
    ));
    assert!(err.contains("packs[0].bus"), "{err}");
    assert!(
        err.contains("driver = \"modbus\" needs a modbus_rtu or modbus_tcp bus"),
        "{err}"
    );
    assert!(err.contains("kind = \"slcan\""), "{err}");
    let err = error(RTU_PACK);
    assert!(err.contains("no bus named \"rs485\""), "{err}");
    let err = error(
        "[[buses]]\nname = \"rs485\"\nkind = \"modbus_rtu\"\nport = \"/dev/ttyUSB0\"\nstop_bits = 3\n",
    );
    assert!(err.contains("buses[0].stop_bits: must be 1 or 2"), "{err}");
    let err = error(&format!(
        "[[buses]]\nname = \"rs485\"\nkind = \"modbus_rtu\"\nport = \"/dev/ttyUSB0\"\n{}",
        RTU_PACK.replace("unit_id = 1", "unit_id = 248")
    ));
    assert!(
        err.contains("packs[0].unit_id: 248 is not a Modbus unit id"),
        "{err}"
    );
}
