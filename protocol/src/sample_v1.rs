//! Samples as schema version 1 wrote them (state of health always a
//! number), read so that an upgrade loses none of what is still on a
//! stream or set aside in a dead-letter table.

use serde::Deserialize;

use crate::ids::{BootId, PackId};
use crate::sample::{
    AlarmFlags, BalancingState, CellVoltages, ClockQuality, DataQuality, PackReading, Sample,
    Temperatures,
};

/// A version 1 reading: the fields of today's, in the same order, with
/// `soh_pct` a plain number.
#[derive(Deserialize)]
struct PackReadingV1 {
    pack_voltage_v: f32,
    current_a: f32,
    soc_pct: f32,
    soh_pct: f32,
    cell_voltages_v: CellVoltages,
    temperatures_c: Temperatures,
    balancing: BalancingState,
    alarms: AlarmFlags,
    charge_enabled: bool,
    discharge_enabled: bool,
}

/// A version 1 sample.
#[derive(Deserialize)]
struct SampleV1 {
    pack_id: PackId,
    boot_id: BootId,
    seq: u64,
    timestamp_ms: i64,
    quality: DataQuality,
    reading: PackReadingV1,
    clock: ClockQuality,
}

impl From<SampleV1> for Sample {
    fn from(v1: SampleV1) -> Self {
        let r = v1.reading;
        Sample {
            pack_id: v1.pack_id,
            boot_id: v1.boot_id,
            seq: v1.seq,
            timestamp_ms: v1.timestamp_ms,
            quality: v1.quality,
            reading: PackReading {
                pack_voltage_v: r.pack_voltage_v,
                current_a: r.current_a,
                soc_pct: r.soc_pct,
                soh_pct: Some(r.soh_pct),
                cell_voltages_v: r.cell_voltages_v,
                temperatures_c: r.temperatures_c,
                balancing: r.balancing,
                alarms: r.alarms,
                charge_enabled: r.charge_enabled,
                discharge_enabled: r.discharge_enabled,
            },
            clock: v1.clock,
        }
    }
}

/// Decodes a version 1 sample payload into today's [`Sample`].
pub(crate) fn take_sample_v1(payload: &[u8]) -> postcard::Result<(Sample, &[u8])> {
    let (v1, rest): (SampleV1, &[u8]) = postcard::take_from_bytes(payload)?;
    Ok((v1.into(), rest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::codec::{decode, encode};

    /// Version 1 bytes of a sample, written field by field as that
    /// version's encoder laid them out (postcard: varints, f32 little
    /// endian, enums by index).
    fn v1_bytes(quality_index: u8) -> Vec<u8> {
        let mut b = vec![1u8, 1]; // schema 1, kind Sample
        b.extend_from_slice(&[2, b'p', b'1']); // pack id "p1"
        b.push(0x2A); // boot id 42
        b.push(7); // seq 7
        b.extend_from_slice(&[0xD0, 0x0F]); // timestamp 1000 ms, zigzag varint
        b.push(quality_index);
        for v in [52.5f32, -10.0, 80.0, 97.5] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(2); // two cells
        for v in [3.3f32, 3.31] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(1); // one sensor
        b.extend_from_slice(&21.5f32.to_le_bytes());
        b.extend_from_slice(&[2, 0, 1, 0, 0]); // balancing 2, no alarm, charge on, discharge off, clock trusted
        b
    }

    #[test]
    fn a_version_1_sample_reads_with_its_state_of_health() {
        let sample: Sample = decode(&v1_bytes(1)).unwrap();
        assert_eq!(sample.pack_id.as_str(), "p1");
        assert_eq!((sample.boot_id, sample.seq), (BootId(42), 7));
        assert_eq!(sample.timestamp_ms, 1000);
        assert_eq!(sample.quality, DataQuality::Stale);
        let r = &sample.reading;
        assert_eq!(
            (r.pack_voltage_v, r.current_a, r.soc_pct),
            (52.5, -10.0, 80.0)
        );
        assert_eq!(r.soh_pct, Some(97.5));
        assert_eq!(r.cell_voltages_v.0, vec![3.3, 3.31]);
        assert_eq!(r.temperatures_c.0, vec![21.5]);
        assert_eq!(r.balancing, BalancingState(2));
        assert!(r.alarms.is_empty() && r.charge_enabled && !r.discharge_enabled);
        assert_eq!(sample.clock, ClockQuality::Trusted);
        // Written again, it is a version 2 message that reads the same.
        let again: Sample = decode(&encode(&sample)).unwrap();
        assert_eq!(again, sample);
        assert_eq!(encode(&sample)[0], <Sample as crate::WireMessage>::VERSION);
    }

    #[test]
    fn a_broken_version_1_sample_is_malformed_not_misread() {
        let bytes = v1_bytes(0);
        assert!(decode::<Sample>(&bytes[..bytes.len() - 3]).is_err());
        // Version 1 never had the suspect quality.
        let mut bytes = v1_bytes(0);
        bytes[9] = 9;
        assert!(decode::<Sample>(&bytes).is_err());
    }
}
