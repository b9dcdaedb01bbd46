//! Replaying a small candump log through the Pylontech decoder.
// Test helpers panic on failure like the tests themselves.
#![allow(clippy::unwrap_used)]

use packgate_drivers::can::candump::{decode_log, describe, replay};
use packgate_drivers::can::{BmsFrame, CanPackState};
use packgate_protocol::DataQuality;
use std::time::{Duration, Instant};

/// One burst of a Pylontech BMS as `candump -l` writes it, one line in the
/// default form, a comment, a frame of another device and a broken line.
const LOG: &str = "\
# captured on the test bench
(1700000000.100000) can0 351#3002F401F401C201
(1700000000.100200) can0 355#4B006300
(1700000000.100400) can0 356#1415E6FFF000
(1700000000.100600) can0 359#0000000001504E
(1700000000.100800) can0 35C#C000
(1700000000.101000) can0 35E#50594C4F4E202020
  can0  373   [8]  E4 0C 02 0D 2A 01 2C 01
(1700000000.102000) can0 18FF50E5#0102
(1700000000.103000) can0 356#14
this is not a frame
";

#[test]
fn can_the_log_decodes_into_a_reading() {
    let entries: Vec<_> = decode_log(LOG).collect();
    assert_eq!(entries.len(), 10);
    assert!(entries[9].is_err());
    let t0 = Instant::now();
    let mut state = CanPackState::new(16);
    let mut rejected = 0;
    for entry in entries.into_iter().flatten() {
        assert_eq!(entry.interface, "can0");
        if state.feed(&entry.frame, t0).is_err() {
            rejected += 1;
        }
    }
    assert_eq!(rejected, 2, "the extended frame and the short 0x356");
    let (r, q) = state.sample(t0, Duration::from_secs(1)).unwrap();
    assert_eq!(q, DataQuality::Fresh);
    assert_eq!(r.soc_pct, 75.0);
    assert!((r.pack_voltage_v - 53.96).abs() < 1e-3);
    assert!((r.current_a + 2.6).abs() < 1e-3);
    assert_eq!(r.cell_voltages_v.0, vec![3.3, 3.33]);
    assert!(r.charge_enabled && r.discharge_enabled);
    assert_eq!(state.manufacturer(), Some("PYLON"));
}

#[test]
fn can_replay_prints_one_line_per_log_line() {
    let lines: Vec<String> = replay(LOG).collect();
    assert_eq!(lines.len(), 10);
    assert_eq!(
        lines[2],
        "(1700000000.100400) can0 356#1415E6FFF000  0x356 measurements: 53.96 V, -2.6 A, 24.0 °C"
    );
    assert_eq!(
        lines[5],
        "(1700000000.101000) can0 35E#50594C4F4E202020  0x35e manufacturer: \"PYLON\""
    );
    assert!(
        lines[6].starts_with("can0 373#E40C020D2A012C01  0x373 cells: 3.300..3.330 V"),
        "{}",
        lines[6]
    );
    assert!(lines[7].contains("unknown extended id"), "{}", lines[7]);
    assert!(lines[8].contains("needs at least 6"), "{}", lines[8]);
    assert_eq!(lines[9], "error: line 11: not a candump line");
    for line in &lines {
        println!("{line}");
    }
    let entry = decode_log(LOG).nth(1).unwrap().unwrap();
    assert!(describe(&entry.frame).contains("soc 75 %"));
    assert!(matches!(
        packgate_drivers::can::decode_frame(&entry.frame),
        Ok(BmsFrame::SocSoh(_))
    ));
}
