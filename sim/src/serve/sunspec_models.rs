//! The bodies of the models the simulator serves (registers after each
//! header), per the SunSpec model definitions; offsets in the comments
//! count from the first register after the header.

use packgate_protocol::PackReading;

use super::{evt1, fixed_i16, fixed_u16, text};

/// Not implemented: uint16, enum16.
const NI_U16: u16 = 0xFFFF;
/// Not implemented: int16, sunssf.
const NI_I16: u16 = 0x8000;

/// Scale factors served.
const V_SF: i32 = -2;
const A_SF: i32 = -1;
const PCT_SF: i32 = -1;
const CELL_V_SF: i32 = -3;
const TMP_SF: i32 = -1;

fn sf(v: i32) -> u16 {
    (v as i16) as u16
}

/// Model 1, `length` 65 or 66: Mn, Md, Opt, Vr, SN, DA (and Pad).
pub(super) fn common(serial_number: u32, length: u16) -> Vec<u16> {
    let mut regs = text("packgate", 16);
    regs.extend(text("packgate-sim", 16));
    regs.extend(text("lfp", 8));
    regs.extend(text("1.0", 8));
    regs.extend(text(&serial_number.to_string(), 16));
    regs.push(1); // DA
    if length > 65 {
        regs.push(NI_I16); // Pad
    }
    regs
}

/// A vendor model of `length` registers: values that would read as wild
/// scale factors and measurements if taken for model 802.
pub(super) fn vendor(length: u16) -> Vec<u16> {
    (0..length).map(|i| 0x7F00 | i).collect()
}

fn cell_stats(reading: &PackReading) -> Option<(f64, f64, f64)> {
    let cells = &reading.cell_voltages_v.0;
    let max = cells.iter().copied().map(f64::from).reduce(f64::max)?;
    let min = cells.iter().copied().map(f64::from).reduce(f64::min)?;
    let avg = cells.iter().copied().map(f64::from).sum::<f64>() / cells.len() as f64;
    Some((max, min, avg))
}

fn temp_stats(reading: &PackReading) -> Option<(f64, f64, f64)> {
    let temps = &reading.temperatures_c.0;
    let max = temps.iter().copied().map(f64::from).reduce(f64::max)?;
    let min = temps.iter().copied().map(f64::from).reduce(f64::min)?;
    let avg = temps.iter().copied().map(f64::from).sum::<f64>() / temps.len() as f64;
    Some((max, min, avg))
}

/// `ChaSt` of a current with packgate's sign.
fn charge_status(current_a: f32) -> u16 {
    if current_a > 0.0 {
        4 // CHARGING
    } else if current_a < 0.0 {
        3 // DISCHARGING
    } else {
        6 // HOLDING
    }
}

/// Model 802 (L=62).
pub(super) fn battery(reading: &PackReading) -> Vec<u16> {
    let mut r = vec![NI_U16; 62];
    r[0] = 100; // AHRtg
    r[1] = 5120; // WHRtg
    r[2] = 5000; // WChaRteMax
    r[3] = 5000; // WDisChaRteMax
    r[9] = fixed_u16(f64::from(reading.soc_pct), PCT_SF); // SoC
    r[11] = reading
        .soh_pct
        .map_or(NI_U16, |soh| fixed_u16(f64::from(soh), PCT_SF)); // SoH
    r[14] = charge_status(reading.current_a); // ChaSt
    r[15] = 0; // LocRemCtl: remote
    r[18] = 0; // AlmRst
    r[19] = 4; // Typ: lithium-ion
    r[20] = if reading.charge_enabled && reading.discharge_enabled {
        3
    } else {
        4
    }; // State
    let e = evt1(reading.alarms);
    r[24] = (e >> 16) as u16; // Evt1
    r[25] = e as u16;
    r[26..32].fill(0); // Evt2, EvtVnd1, EvtVnd2
    r[32] = fixed_u16(f64::from(reading.pack_voltage_v), V_SF); // V
    if let Some((max, min, avg)) = cell_stats(reading) {
        r[35] = fixed_u16(max, CELL_V_SF);
        r[38] = fixed_u16(min, CELL_V_SF);
        r[41] = fixed_u16(avg, CELL_V_SF);
    }
    // A: positive while discharging (see the module's notes).
    r[42] = fixed_i16(-f64::from(reading.current_a), A_SF);
    r[43] = 1000; // AChaMax
    r[44] = 1000; // ADisChaMax
    let watts = -f64::from(reading.pack_voltage_v) * f64::from(reading.current_a);
    r[45] = fixed_i16(watts, 0); // W
    r[47] = NI_I16; // ReqW
    r[48] = 1; // SetOp: connect
    r[49] = 3; // SetInvState: started
    r[50..54].copy_from_slice(&[0, 0, 0, NI_I16]); // AHRtg..DisChaRte SF
    r[54] = sf(PCT_SF); // SoC_SF
    r[55] = NI_I16; // DoD_SF
    r[56] = sf(PCT_SF); // SoH_SF
    r[57] = sf(V_SF);
    r[58] = sf(CELL_V_SF);
    r[59] = sf(A_SF);
    r[60] = sf(A_SF); // AMax_SF
    r[61] = 0; // W_SF
    r
}

/// Model 803 with one string (L=26+32).
pub(super) fn bank(reading: &PackReading) -> Vec<u16> {
    let mut r = vec![NI_U16; 26 + 32];
    r[0] = 1; // NStr
    r[1] = 1; // NStrCon
    let (tmax, tmin, tavg) = temp_stats(reading).map_or((NI_I16, NI_I16, NI_I16), |(a, b, c)| {
        (
            fixed_i16(a, TMP_SF),
            fixed_i16(b, TMP_SF),
            fixed_i16(c, TMP_SF),
        )
    });
    r[2] = tmax;
    r[5] = tmin;
    r[8] = tavg;
    r[14] = NI_I16; // StrAMax
    r[16] = NI_I16; // StrAMin
    r[18] = NI_I16; // StrAAvg
    r[19] = reading.balancing.count() as u16; // NCellBal
    r[20..26].copy_from_slice(&[
        sf(CELL_V_SF),
        sf(TMP_SF),
        sf(A_SF),
        sf(PCT_SF),
        sf(PCT_SF),
        sf(V_SF),
    ]);
    // String 1.
    let s = 26;
    r[s] = 1; // StrNMod
    r[s + 1..s + 3].copy_from_slice(&[0, 3]); // StrSt: enabled, contactor closed
    r[s + 4] = fixed_u16(f64::from(reading.soc_pct), PCT_SF);
    r[s + 5] = reading
        .soh_pct
        .map_or(NI_U16, |soh| fixed_u16(f64::from(soh), PCT_SF));
    r[s + 6] = fixed_i16(-f64::from(reading.current_a), A_SF);
    if let Some((max, min, avg)) = cell_stats(reading) {
        r[s + 7] = fixed_u16(max, CELL_V_SF);
        r[s + 9] = fixed_u16(min, CELL_V_SF);
        r[s + 11] = fixed_u16(avg, CELL_V_SF);
    }
    r[s + 12] = tmax;
    r[s + 14] = tmin;
    r[s + 16] = tavg;
    let e = evt1(reading.alarms);
    r[s + 20..s + 22].copy_from_slice(&[(e >> 16) as u16, e as u16]); // StrEvt1
    r[s + 30..s + 32].fill(NI_I16); // Pad1, Pad2
    r
}
