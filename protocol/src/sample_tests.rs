use super::*;

pub(super) fn reading() -> PackReading {
    PackReading {
        pack_voltage_v: 52.8,
        current_a: -12.5,
        soc_pct: 71.0,
        soh_pct: Some(98.0),
        cell_voltages_v: CellVoltages(vec![3.30, 3.28, 3.31, 3.29]),
        temperatures_c: Temperatures(vec![24.0, 26.5]),
        balancing: BalancingState(0b0100),
        alarms: AlarmFlags::NONE,
        charge_enabled: true,
        discharge_enabled: true,
    }
}

#[test]
fn min_max_cell_and_temperature() {
    let r = reading();
    assert_eq!(r.cell_voltages_v.min_v(), Some((1, 3.28)));
    assert_eq!(r.cell_voltages_v.max_v(), Some((2, 3.31)));
    assert_eq!(r.max_temperature_c(), 26.5);
    assert!(r.balancing.is_balancing(2));
    assert!(!r.balancing.is_balancing(0));
    assert!(!r.balancing.is_balancing(40));
}

#[test]
fn validate_rejects_bad_counts_and_nan() {
    let mut r = reading();
    (r.cell_voltages_v.0, r.temperatures_c.0) = (vec![], vec![]);
    assert_eq!(r.validate(), Ok(()));
    r.cell_voltages_v.0 = vec![3.3; 33];
    assert_eq!(r.validate(), Err(SampleError::CellCount(33)));
    let mut r = reading();
    r.temperatures_c.0 = vec![20.0; 17];
    assert_eq!(r.validate(), Err(SampleError::TemperatureCount(17)));
    let mut r = reading();
    r.current_a = f32::NAN;
    assert_eq!(r.validate(), Err(SampleError::NotFinite("current_a")));
    assert_eq!(reading().validate(), Ok(()));
}

#[test]
fn alarm_names_cover_known_and_unknown_bits() {
    let flags = AlarmFlags::OVER_TEMPERATURE
        .union(AlarmFlags::CELL_UNDER_VOLTAGE)
        .union(AlarmFlags(1 << 31));
    assert_eq!(
        flags.names(),
        vec!["cell_under_voltage", "over_temperature", "bit_31"]
    );
    assert!(flags.contains(AlarmFlags::OVER_TEMPERATURE));
    assert_eq!(
        flags.difference(AlarmFlags::OVER_TEMPERATURE),
        AlarmFlags::CELL_UNDER_VOLTAGE.union(AlarmFlags(1 << 31))
    );
}

#[test]
fn clock_quality_defaults_to_trusted_and_has_stable_names() {
    assert_eq!(ClockQuality::default(), ClockQuality::Trusted);
    assert!(ClockQuality::Trusted.is_trusted());
    assert!(!ClockQuality::Untrusted.is_trusted());
    assert_eq!(ClockQuality::Trusted.as_str(), "ok");
    assert_eq!(ClockQuality::Untrusted.as_str(), "untrusted");
}

#[test]
fn msg_id_is_pack_boot_seq() {
    let s = Sample {
        pack_id: PackId::new("p1").unwrap(),
        boot_id: BootId(0xff),
        seq: 7,
        timestamp_ms: 0,
        quality: DataQuality::Fresh,
        reading: reading(),
        clock: ClockQuality::Trusted,
    };
    assert_eq!(s.msg_id(), "p1:00000000000000ff:7");
}
