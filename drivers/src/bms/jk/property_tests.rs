//! The JK codec on arbitrary read-all values and arbitrary bytes.

use super::*;

/// A read-all information field carrying `values` (all its ids, in the
/// document's order, `C0` as its current form says).
fn info_of(v: &ReadAll) -> Vec<u8> {
    let mut info = vec![0x79, (3 * v.cell_voltages_mv.len()) as u8];
    for (i, mv) in v.cell_voltages_mv.iter().enumerate() {
        info.push(i as u8 + 1);
        info.extend_from_slice(&mv.to_be_bytes());
    }
    let raw_temperature = |c: i16| if c < 0 { (100 - c) as u16 } else { c as u16 };
    let mut put = |id: u8, bytes: &[u8]| {
        info.push(id);
        info.extend_from_slice(bytes);
    };
    for (id, t) in [
        (0x80, v.mos_temperature_c),
        (0x81, v.sensor_1_temperature_c),
        (0x82, v.sensor_2_temperature_c),
    ] {
        if let Some(t) = t {
            put(id, &raw_temperature(t).to_be_bytes());
        }
    }
    put(0x83, &v.pack_voltage_10mv.to_be_bytes());
    let raw_current = match v.current_encoding {
        CurrentEncoding::SignMagnitude if v.current_10ma > 0 => 0x8000 | v.current_10ma as u16,
        CurrentEncoding::SignMagnitude => (-v.current_10ma) as u16,
        CurrentEncoding::Offset => (10_000 - v.current_10ma) as u16,
    };
    put(0x84, &raw_current.to_be_bytes());
    put(0x85, &[v.soc_pct]);
    if let Some(n) = v.temperature_sensor_count {
        put(0x86, &[n]);
    }
    if let Some(c) = v.cycles {
        put(0x87, &c.to_be_bytes());
    }
    if let Some(c) = v.cell_count {
        put(0x8A, &c.to_be_bytes());
    }
    put(0x8B, &v.warnings.0.to_be_bytes());
    put(0x8C, &v.status.0.to_be_bytes());
    put(0x9B, &[0x0C, 0xE4]);
    if let Some(on) = v.charge_switch_on {
        put(0xAB, &[u8::from(on)]);
    }
    if let Some(on) = v.discharge_switch_on {
        put(0xAC, &[u8::from(on)]);
    }
    if let Some(version) = v.protocol_version {
        put(0xC0, &[version]);
    }
    info
}

fn read_all_values() -> impl Strategy<Value = ReadAll> {
    let temperature = proptest::option::of(-40i16..=100);
    (
        proptest::collection::vec(0u16..=MAX_CELL_MV, 0..=32),
        (temperature.clone(), temperature.clone(), temperature),
        (any::<u16>(), any::<bool>(), any::<u16>(), 0u8..=100),
        (
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u16>()),
            any::<bool>(),
        ),
        (
            any::<u16>(),
            any::<u16>(),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
        ),
    )
        .prop_map(
            |(
                cells,
                temps,
                (voltage, v1, raw, soc),
                (sensors, cycles, count),
                (warnings, status, charge, discharge),
            )| {
                let (current_10ma, current_encoding) = if v1 {
                    let magnitude = i32::from(raw & 0x7FFF);
                    (
                        if raw & 0x8000 != 0 {
                            magnitude
                        } else {
                            -magnitude
                        },
                        CurrentEncoding::SignMagnitude,
                    )
                } else {
                    (10_000 - i32::from(raw), CurrentEncoding::Offset)
                };
                ReadAll {
                    cell_count: count.then_some(cells.len() as u16),
                    cell_voltages_mv: cells,
                    mos_temperature_c: temps.0,
                    sensor_1_temperature_c: temps.1,
                    sensor_2_temperature_c: temps.2,
                    pack_voltage_10mv: voltage,
                    current_10ma,
                    current_encoding,
                    soc_pct: soc,
                    temperature_sensor_count: sensors,
                    cycles,
                    cycle_capacity_ah: None,
                    warnings: JkWarnings(warnings),
                    status: JkStatus(status),
                    charge_switch_on: charge,
                    discharge_switch_on: discharge,
                    device_id: None,
                    software_version: None,
                    factory_id: None,
                    protocol_version: v1.then_some(1),
                    stopped_at: None,
                }
            },
        )
}

proptest! {
    #[test]
    fn read_all_round_trips(values in read_all_values()) {
        let frame = read_all_reply(&info_of(&values));
        prop_assert_eq!(JkFraming::frame_len(&frame), FrameStatus::Complete(frame.len()));
        prop_assert_eq!(decode_read_all(&frame), Ok(values));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let _ = JkFraming::frame_len(&bytes);
        let _ = decode_read_all(&bytes);
        let _ = decode_read_all_info(&bytes);
        let _ = decode_write_ack(&bytes, ID_CHARGE_SWITCH);
        let mut started = vec![START, START_2];
        started.extend_from_slice(&bytes);
        let _ = JkFraming::frame_len(&started);
        let _ = parse_frame(&started);
        // A frame whose checksum is right whatever its information holds.
        let framed = read_all_reply(&bytes[..bytes.len().min(900)]);
        let _ = decode_read_all(&framed);
    }

    #[test]
    fn a_flipped_byte_is_never_a_different_reading(
        values in read_all_values(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let frame = read_all_reply(&info_of(&values));
        let mut spoiled = frame.clone();
        let at = at.index(frame.len());
        spoiled[at] ^= flip;
        let accepted = match JkFraming::frame_len(&spoiled) {
            FrameStatus::Complete(len) => decode_read_all(&spoiled[..len]).ok(),
            _ => None,
        };
        prop_assert!(accepted.is_none(), "byte {} ^ {:#04x} accepted: {:?}", at, flip, accepted);
    }
}
