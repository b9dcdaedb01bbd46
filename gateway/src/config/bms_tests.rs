use std::time::Duration;

use super::super::{BusLinkConfig, Config, DriverConfig};
use super::*;
use packgate_drivers::bms::pylon_ascii::PylonAsciiLayout;

const LINES: &str = "[[buses]]\nname = \"rack\"\nkind = \"bms_serial\"\nport = \"/dev/ttyUSB1\"\n\
     [[buses]]\nname = \"solo\"\nkind = \"bms_serial\"\nport = \"/dev/ttyUSB2\"\nbaud_rate = 19200\n\
     [[buses]]\nname = \"rtu\"\nkind = \"modbus_rtu\"\nport = \"/dev/ttyUSB3\"\n";

fn parse(packs: &str) -> Result<Config, String> {
    Config::from_toml_str(&format!("{LINES}{packs}"), "x.toml").map_err(|e| e.to_string())
}

fn pack(id: &str, driver: &str, bus: &str, extra: &str) -> String {
    format!("[[packs]]\nid = \"{id}\"\ndriver = \"{driver}\"\nbus = \"{bus}\"\n{extra}")
}

#[test]
fn each_framed_driver_reads_with_its_defaults() {
    let text = [
        pack("p2", "pylon_ascii", "rack", "address = 2\n"),
        pack("p3", "pylon_ascii", "rack", "address = 3\n"),
        pack("d", "daly", "solo", ""),
    ]
    .concat();
    let config = parse(&text).unwrap();
    assert_eq!(
        config.packs[0].bms_protocol(),
        Some((BmsProtocol::PylonAscii, Some(2)))
    );
    let DriverConfig::Daly(daly) = &config.packs[2].driver else {
        panic!("{:?}", config.packs[2]);
    };
    assert_eq!(daly.host_address, 0x40);
    let BusLinkConfig::BmsSerial(line) = &config.buses[1].link else {
        panic!("{:?}", config.buses[1]);
    };
    assert_eq!(line.baud_rate, Some(19_200));
    assert_eq!(line.inter_frame_gap_ms, None);
    // What check-config prints reads back as the same configuration.
    let printed = toml::to_string_pretty(&config).unwrap();
    assert!(printed.contains("kind = \"bms_serial\""), "{printed}");
    assert_eq!(Config::from_toml_str(&printed, "printed").unwrap(), config);
    for driver in ["jbd", "jk"] {
        let config = parse(&pack("x", driver, "solo", "")).unwrap();
        assert_eq!(config.packs[0].bus(), Some("solo"), "{driver}");
        assert_eq!(config.packs[0].bms_protocol().map(|(_, a)| a), Some(None));
    }
}

#[test]
fn a_pylon_ascii_pack_reads_the_layout_it_is_given() {
    let text = [
        pack("p", "pylon_ascii", "rack", "address = 2\n"),
        pack(
            "s",
            "pylon_ascii",
            "rack",
            "address = 0\nlayout = \"seplos_v2\"\n",
        ),
        pack(
            "c",
            "pylon_ascii",
            "rack",
            "address = 15\nlayout = \"pace\"\n",
        ),
    ]
    .concat();
    let config = parse(&text).unwrap();
    let layouts: Vec<_> = config
        .packs
        .iter()
        .map(|p| match &p.driver {
            DriverConfig::PylonAscii(p) => (p.address, p.layout),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        layouts,
        [
            (2, PylonAsciiLayout::Pylontech),
            (0, PylonAsciiLayout::SeplosV2),
            (15, PylonAsciiLayout::Pace)
        ]
    );
    let printed = toml::to_string_pretty(&config).unwrap();
    assert!(printed.contains("layout = \"seplos_v2\""), "{printed}");
    assert_eq!(Config::from_toml_str(&printed, "printed").unwrap(), config);
}

#[test]
fn protocol_defaults_are_the_usual_rates_and_gaps() {
    assert_eq!(BmsProtocol::Jk.default_baud_rate(), 115_200);
    assert_eq!(BmsProtocol::Jbd.default_baud_rate(), 9_600);
    assert_eq!(
        BmsProtocol::Jk.default_inter_frame_gap(),
        Duration::from_millis(100)
    );
    assert_eq!(
        BmsProtocol::Daly.default_inter_frame_gap(),
        Duration::from_millis(20)
    );
    assert!(BmsProtocol::PylonAscii.multi_drop());
    assert!(!BmsProtocol::Daly.multi_drop());
}

#[test]
fn a_framed_pack_needs_a_bms_serial_bus_and_a_real_address() {
    let e = parse(&pack("x", "jbd", "rtu", "")).unwrap_err();
    assert!(
        e.contains("packs[0].bus") && e.contains("driver = \"jbd\" needs a bms_serial bus"),
        "{e}"
    );
    let e = parse(&pack(
        "x",
        "modbus",
        "rack",
        "unit_id = 1\nprofile = \"packgate-sim\"\n",
    ))
    .unwrap_err();
    assert!(e.contains("needs a modbus_rtu or modbus_tcp bus"), "{e}");
    for address in [0, 255] {
        let e = parse(&pack(
            "x",
            "pylon_ascii",
            "rack",
            &format!("address = {address}\n"),
        ))
        .unwrap_err();
        assert!(e.contains("packs[0].address"), "{e}");
    }
    let e = parse(&pack("x", "pylon_ascii", "rack", "")).unwrap_err();
    assert!(e.contains("missing field `address`"), "{e}");
    // Seplos and Pace packs take 0 to 15 (four DIP switches).
    let e = parse(&pack(
        "x",
        "pylon_ascii",
        "rack",
        "address = 16\nlayout = \"seplos_v2\"\n",
    ))
    .unwrap_err();
    assert!(
        e.contains("packs[0].address")
            && e.contains("no Seplos V2 pack's address: must be 0 to 15"),
        "{e}"
    );
    let e = parse(&pack(
        "x",
        "pylon_ascii",
        "rack",
        "address = 2\nlayout = \"seplos\"\n",
    ))
    .unwrap_err();
    assert!(
        e.contains("unknown variant") && e.contains("seplos_v2"),
        "{e}"
    );
    let e = parse(&pack("x", "jk", "rack", "address = 2\n")).unwrap_err();
    assert!(
        e.contains("unknown field `address`") && e.contains("driver = \"jk\""),
        "{e}"
    );
}

#[test]
fn one_protocol_per_line_and_one_pack_where_there_are_no_addresses() {
    let two_jbd = [pack("a", "jbd", "solo", ""), pack("b", "jbd", "solo", "")].concat();
    let e = parse(&two_jbd).unwrap_err();
    assert!(
        e.contains("packs[1].driver") && e.contains("one pack per line"),
        "{e}"
    );
    let mixed = [
        pack("a", "pylon_ascii", "rack", "address = 2\n"),
        pack("b", "daly", "rack", ""),
    ]
    .concat();
    let e = parse(&mixed).unwrap_err();
    assert!(
        e.contains("one protocol per line") && e.contains("pylon_ascii"),
        "{e}"
    );
    let same_address = [
        pack("a", "pylon_ascii", "rack", "address = 2\n"),
        pack("b", "pylon_ascii", "rack", "address = 2\n"),
    ]
    .concat();
    let e = parse(&same_address).unwrap_err();
    assert!(
        e.contains("packs[1].address") && e.contains("address 2 on bus \"rack\""),
        "{e}"
    );
    // Two lines on one serial device would talk over each other.
    let e = Config::from_toml_str(
        "[[buses]]\nname = \"a\"\nkind = \"bms_serial\"\nport = \"/dev/ttyUSB1\"\n\
         [[buses]]\nname = \"b\"\nkind = \"modbus_rtu\"\nport = \"/dev/ttyUSB1\"\n",
        "x.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("buses[1].port"), "{e}");
}
