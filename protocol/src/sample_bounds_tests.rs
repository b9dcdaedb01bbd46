//! Tests of the bounds a sample's values must keep.

use super::tests::reading;
use super::*;
use crate::ids::{BootId, PackId};

#[test]
fn validate_rejects_what_no_pack_can_read() {
    type Breaker = fn(&mut PackReading);
    let cases: [(&str, Breaker); 6] = [
        ("soc_pct", |r| r.soc_pct = 6553.5),
        ("soh_pct", |r| r.soh_pct = Some(-1.0)),
        ("pack_voltage_v", |r| r.pack_voltage_v = 1.0e6),
        ("current_a", |r| r.current_a = -1.0e9),
        ("cell_voltages_v", |r| r.cell_voltages_v.0[1] = 655.35),
        ("temperatures_c", |r| r.temperatures_c.0[0] = -300.0),
    ];
    for (field, break_it) in cases {
        let mut r = reading();
        break_it(&mut r);
        let err = r.validate().unwrap_err();
        assert!(
            matches!(err, SampleError::OutOfRange { field: f, .. } if f == field),
            "{field}: {err}"
        );
        assert_eq!(err.field(), Some(field));
    }
    // The edges are allowed.
    let mut r = reading();
    r.soc_pct = 100.0;
    r.soh_pct = Some(0.0);
    assert_eq!(r.validate(), Ok(()));
    r.soh_pct = None;
    r.temperatures_c.0[0] = -273.15;
    assert_eq!(r.validate(), Ok(()));
}

#[test]
fn a_sequence_number_beyond_i64_is_rejected() {
    let mut s = Sample {
        pack_id: PackId::new("p1").unwrap(),
        boot_id: BootId(1),
        seq: 1 << 63,
        timestamp_ms: 0,
        quality: DataQuality::Fresh,
        reading: reading(),
        clock: ClockQuality::Trusted,
    };
    assert_eq!(s.validate(), Err(SampleError::SequenceTooLarge(1 << 63)));
    s.seq = i64::MAX as u64;
    assert_eq!(s.validate(), Ok(()));
    for bad in [-1, i64::MIN, crate::limits::MAX_TIMESTAMP_MS + 1, i64::MAX] {
        s.timestamp_ms = bad;
        assert_eq!(s.validate(), Err(SampleError::TimestampOutOfRange(bad)));
        assert_eq!(s.validate().unwrap_err().field(), Some("timestamp_ms"));
    }
    s.timestamp_ms = crate::limits::MAX_TIMESTAMP_MS;
    assert_eq!(s.validate(), Ok(()));
}
