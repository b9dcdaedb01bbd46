//! The framed serial BMS codecs (Pylontech ASCII, JBD, Daly, JK) on a
//! byte stream split into frames as the serial link splits it: a frame's
//! length lies within the buffer and the protocol's maximum, a frame
//! arriving in pieces is never refused before it is whole, every complete
//! frame goes through every decoder of its protocol, and what decodes
//! keeps the decoders' rules and maps to readings that pass the sample
//! rules.
//!
//! Input: `selector` (bits 0-1 the protocol: Pylontech ASCII, JBD, Daly,
//! JK; bits 2-7 `p`: the Pylontech address asked, the JBD cell count,
//! the Daly cell count and, `p & 31`, sensor count), then the bytes as
//! they come from the line. The same bytes are then read as the contents
//! of frames (each a length byte and that many bytes: the Pylontech
//! address, CID2 and INFO; the JBD register, status and data; the Daly
//! address, data id and data; the JK command, transport type and
//! information), built with good checksums so the decoders see any
//! contents.
#![no_main]

#[path = "common/chunks.rs"]
mod chunks;

use chunks::{at, contents};
use libfuzzer_sys::fuzz_target;
use packgate_drivers::bms::daly::codec as daly;
use packgate_drivers::bms::jbd::codec as jbd;
use packgate_drivers::bms::jk::codec as jk;
use packgate_drivers::bms::pylon_ascii::{codec as pylon, info as pylon_info, pace, seplos};
use packgate_drivers::bms::{self, FrameError, FrameStatus, Framing};
use packgate_drivers::DeviceException;
use packgate_protocol::{PackReading, MAX_CELLS, MAX_TEMPERATURE_SENSORS};

/// Where a frame of `n` bytes may be cut as it arrives, from 1 to `n - 1`:
/// every place within 16 bytes of either end (the header, the length,
/// the checksum and end byte), a few in between.
fn cuts(n: usize) -> impl Iterator<Item = usize> {
    let ends = 16.min(n);
    let tail = n.saturating_sub(16).max(ends);
    (1..ends)
        .chain((ends..tail).step_by((n / 8).max(1)))
        .chain(tail..n)
}

/// Splits `stream` as the serial link does: bytes before a start byte are
/// dropped, a complete frame is taken whole, an invalid one loses its
/// start byte, an incomplete end waits for more.
fn split<F: Framing>(mut stream: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Some(start) = stream.iter().position(|b| *b == F::START) {
        stream = &stream[start..];
        match F::frame_len(stream) {
            FrameStatus::Complete(n) => {
                assert!(
                    n > 0 && n <= stream.len() && n <= F::MAX_LEN,
                    "Complete({n}) of {} bytes, at most {}",
                    stream.len(),
                    F::MAX_LEN
                );
                let frame = &stream[..n];
                assert_eq!(F::frame_len(frame), FrameStatus::Complete(n));
                for k in cuts(n) {
                    assert_eq!(
                        F::frame_len(&frame[..k]),
                        FrameStatus::Incomplete,
                        "the first {k} bytes of a {n}-byte frame"
                    );
                }
                frames.push(frame.to_vec());
                stream = &stream[n..];
            }
            FrameStatus::Invalid(e) => {
                assert!(!e.kind().as_str().is_empty());
                stream = &stream[1..];
            }
            FrameStatus::Incomplete => {
                // A frame announcing more than the maximum is malformed,
                // never awaited.
                assert!(stream.len() < F::MAX_LEN, "{} bytes", stream.len());
                break;
            }
        }
    }
    frames
}

fn check_reading(reading: &PackReading) {
    assert_eq!(reading.validate(), Ok(()), "{reading:?}");
}

fn check_refusal(refused: &DeviceException, code: u8) {
    assert_eq!(refused.code, code);
    assert_ne!(refused.code, 0);
    assert!(!refused.message.is_empty());
}

fn printable(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7F).contains(&b))
}

fn pylon_analog(v: &pylon_info::AnalogValues) {
    assert!(v
        .cell_voltages_mv
        .iter()
        .all(|mv| *mv <= pylon_info::MAX_CELL_MV));
    assert!(v
        .temperatures_dk
        .iter()
        .all(|t| pylon_info::temperature_c(*t).is_ok()));
    assert!(v.total_capacity_mah > 0 && v.remaining_capacity_mah <= v.total_capacity_mah);
    assert!((0.0..=100.0).contains(&v.soc_pct()), "{v:?}");
}

fn pylon_serial_number(s: &str) {
    assert!(
        s.len() <= pylon_info::SERIAL_NUMBER_LEN && printable(s),
        "{s:?}"
    );
    assert!(!s.ends_with(' '));
}

/// The Seplos V2 and Pace layouts of one frame's INFO, with the latest
/// replies of each layout so far: what decodes keeps its layout's limits,
/// and a reading made of both replies passes the sample rules.
#[derive(Default)]
struct OtherLayouts {
    seplos: (Option<seplos::SeplosAnalog>, Option<seplos::SeplosAlarm>),
    pace: (Option<pace::PaceAnalog>, Option<pace::PaceAlarm>),
}

impl OtherLayouts {
    fn take(&mut self, info: &[u8]) {
        if let Ok(v) = seplos::decode_seplos_analog(info) {
            assert!(v.cell_voltages_mv.len() <= seplos::SEPLOS_MAX_CELLS);
            assert_eq!(v.temperatures_dk.len(), seplos::SEPLOS_TEMPERATURES);
            assert!(v.soc_permille <= 1000 && v.soh_permille <= 1000);
            self.seplos.0 = Some(v);
        }
        if let Ok(a) = seplos::decode_seplos_alarm(info) {
            let _ = a.alarm_flags();
            self.seplos.1 = Some(a);
        }
        if let Ok(v) = pace::decode_pace_analog(info) {
            assert!(v.full_capacity_10mah > 0);
            assert!(v.remaining_capacity_10mah <= v.full_capacity_10mah);
            self.pace.0 = Some(v);
        }
        if let Ok(a) = pace::decode_pace_alarm(info) {
            let _ = a.alarm_flags();
            self.pace.1 = Some(a);
        }
        if let (Some(v), Some(a)) = &self.seplos {
            if let Ok(reading) = seplos::seplos_pack_reading(v, a) {
                check_reading(&reading);
                assert_eq!(reading.alarms, a.alarm_flags());
            }
        }
        if let (Some(v), Some(a)) = &self.pace {
            if let Ok(reading) = pace::pace_pack_reading(v, a) {
                check_reading(&reading);
                assert_eq!(reading.soh_pct, None);
            }
        }
    }
}

fn pylon_frames(address: u8, frames: &[Vec<u8>]) {
    let mut analog = None;
    let mut alarm = None;
    let mut others = OtherLayouts::default();
    for bytes in frames {
        let one = std::slice::from_ref(bytes);
        let frame = match pylon::parse_frame(bytes) {
            Ok(frame) => frame,
            // LENID counts characters: an odd one is no whole INFO.
            Err(FrameError::Malformed(_)) if (bytes.len() - pylon::FRAME_OVERHEAD) % 2 == 1 => {
                continue
            }
            Err(e) => panic!("a complete frame does not parse: {e}"),
        };
        assert_eq!(
            pylon::FRAME_OVERHEAD + 2 * frame.info.len(),
            bytes.len(),
            "{frame:?}"
        );
        // The address asked, and the frame's own (so its address matches).
        let mut addresses = vec![address];
        if frame.address != address {
            addresses.push(frame.address);
        }
        for asked in addresses {
            match pylon::reply_info(one, asked, pylon::CID2_ANALOG_VALUE) {
                Ok(Ok(info)) => {
                    assert_eq!((frame.address, frame.cid1, frame.cid2), (asked, 0x46, 0));
                    assert_eq!(info, frame.info);
                }
                Ok(Err(refused)) => {
                    assert_eq!((frame.address, frame.cid1), (asked, 0x46));
                    check_refusal(&refused, frame.cid2);
                }
                Err(_) => {}
            }
            if let Ok(Ok(v)) = pylon_info::decode_analog_reply(one, asked) {
                assert_eq!(v.command_value, asked);
                pylon_analog(&v);
            }
            if let Ok(Ok(a)) = pylon_info::decode_alarm_reply(one, asked) {
                assert_eq!(a.command_value, asked);
            }
            if let Ok(Ok(s)) = pylon_info::decode_serial_number_reply(one, asked) {
                pylon_serial_number(&s);
            }
        }
        if let Ok(v) = pylon_info::decode_analog_values(&frame.info) {
            pylon_analog(&v);
            let _ = v.bms_temperature_c();
            analog = Some(v);
        }
        if let Ok(a) = pylon_info::decode_alarm_info(&frame.info) {
            let _ = a.alarm_flags();
            alarm = Some(a);
        }
        if let Ok(s) = pylon_info::decode_serial_number(&frame.info) {
            pylon_serial_number(&s);
        }
        others.take(&frame.info);
        // Each new value with the latest of the other, as one poll.
        if let (Some(v), Some(a)) = (&analog, &alarm) {
            let cells = v.cell_voltages_mv.len();
            let temperatures = v.temperatures_dk.len().saturating_sub(1);
            let fits = cells <= MAX_CELLS
                && temperatures <= MAX_TEMPERATURE_SENSORS
                && a.cell_states.len() == cells
                && a.temperature_states.len() == v.temperatures_dk.len();
            match bms::pylon_ascii::pack_reading(v, a) {
                Ok(reading) => {
                    assert!(fits);
                    check_reading(&reading);
                    assert_eq!(reading.cell_voltages_v.0.len(), cells);
                    assert_eq!(reading.temperatures_c.0.len(), temperatures);
                    assert_eq!(reading.alarms, a.alarm_flags());
                }
                Err(e) => assert!(!fits, "{e}"),
            }
        }
    }
}

fn jbd_basic(b: &jbd::BasicInfo) {
    assert!(usize::from(b.cell_count) <= MAX_CELLS);
    assert!(b.ntc_temperatures_dk.len() <= MAX_TEMPERATURE_SENSORS);
    assert!(b.soc_pct <= 100);
    let (min, max) = jbd::NTC_RANGE_C;
    assert!(
        b.temperatures_c().all(|c| (min..=max).contains(&c)),
        "{b:?}"
    );
}

fn jbd_cells(cells: &jbd::CellVoltagesMv, count: u8) {
    assert_eq!(cells.0.len(), usize::from(count));
    assert!(cells.0.iter().all(|mv| *mv <= jbd::MAX_CELL_MV));
}

fn jbd_frames(cell_count: u8, frames: &[Vec<u8>]) {
    let mut basic: Option<jbd::BasicInfo> = None;
    for bytes in frames {
        let one = std::slice::from_ref(bytes);
        assert_eq!(jbd::single_frame(one).ok(), Some(&bytes[..]));
        let reply = jbd::parse_reply(bytes).expect("a complete frame takes apart");
        assert_eq!(reply.data.len() + jbd::OVERHEAD, bytes.len());
        for register in [
            jbd::REG_BASIC_INFO,
            jbd::REG_CELL_VOLTAGES,
            jbd::REG_HARDWARE_VERSION,
            jbd::REG_MOS_CONTROL,
        ] {
            match jbd::expect_reply(bytes, register) {
                Ok(Ok(data)) => {
                    assert_eq!((reply.register, reply.status), (register, jbd::STATUS_OK));
                    assert_eq!(data, reply.data);
                }
                Ok(Err(refused)) => {
                    assert_eq!(reply.register, register);
                    check_refusal(&refused, reply.status);
                }
                Err(_) => assert_ne!(reply.register, register),
            }
        }
        if let Ok(b) = jbd::decode_basic_info(reply.data) {
            jbd_basic(&b);
            let _ = (b.production_date.year(), b.production_date.month());
            let _ = b.protection.software_mos_lock();
            basic = Some(b);
        }
        if let Ok(cells) = jbd::decode_cell_voltages(reply.data, cell_count) {
            jbd_cells(&cells, cell_count);
        }
        if let Ok(name) = jbd::decode_hardware_version(reply.data) {
            assert!(
                name.len() <= jbd::MAX_MODEL_LEN && printable(&name),
                "{name:?}"
            );
        }
        // As the driver reads them: the cells by the count of the latest
        // basic information.
        if let Some(b) = &basic {
            if let Ok(cells) = jbd::decode_cell_voltages(reply.data, b.cell_count) {
                jbd_cells(&cells, b.cell_count);
                let reading = bms::jbd::pack_reading(b, &cells);
                check_reading(&reading);
                assert_eq!(reading.cell_voltages_v.0.len(), usize::from(b.cell_count));
                assert_eq!(reading.temperatures_c.0.len(), b.ntc_temperatures_dk.len());
                assert_eq!(
                    reading.balancing.0.checked_shr(u32::from(b.cell_count)),
                    (b.cell_count < 32).then_some(0),
                    "balancing bits past cell {}",
                    b.cell_count
                );
                assert_eq!(reading.alarms, b.protection.alarm_flags());
            }
        }
    }
}

fn daly_cells(frames: &[Vec<u8>], cells: usize) -> Option<Vec<u16>> {
    let decoded = daly::decode_cell_voltages(frames, cells).ok()?;
    assert!(cells <= daly::MAX_CELLS);
    assert_eq!(decoded.len(), cells, "{decoded:?}");
    assert!(decoded.iter().all(|mv| *mv <= daly::MAX_CELL_MV));
    Some(decoded)
}

fn daly_temperatures(frames: &[Vec<u8>], sensors: usize) -> Option<Vec<i16>> {
    let decoded = daly::decode_temperatures(frames, sensors).ok()?;
    assert!(sensors <= daly::MAX_TEMPERATURE_SENSORS);
    assert_eq!(decoded.len(), sensors, "{decoded:?}");
    assert!(decoded
        .iter()
        .all(|c| (-daly::TEMPERATURE_OFFSET_C..=daly::MAX_TEMPERATURE_C).contains(c)));
    Some(decoded)
}

/// The frames `frames[at..]` a multi-frame reply of `count` values would
/// take, `per` values a frame.
fn window(frames: &[Vec<u8>], at: usize, count: usize, per: usize) -> Option<&[Vec<u8>]> {
    frames.get(at..at.checked_add(count.div_ceil(per))?)
}

fn daly_frames(p: u8, frames: &[Vec<u8>]) {
    let mut status = None;
    let mut switches = None;
    let mut system: Option<daly::SystemStatus> = None;
    let mut balancing = None;
    let mut failures = None;
    // Lists decoded with the latest system status's counts.
    let mut cells: Option<Vec<u16>> = None;
    let mut temperatures: Option<Vec<i16>> = None;
    for (at, bytes) in frames.iter().enumerate() {
        let one = std::slice::from_ref(bytes);
        let frame = daly::parse_frame(bytes).expect("a complete frame takes apart");
        assert_eq!(bytes.len(), daly::FRAME_LEN);
        assert_eq!(&frame.data[..], &bytes[4..12]);
        match daly::reply_data(bytes, frame.command) {
            Ok(data) => {
                assert_eq!(frame.address, daly::BMS_ADDRESS);
                assert_eq!(data, frame.data);
            }
            Err(e) => assert!(matches!(e, FrameError::WrongAddress { .. }), "{e}"),
        }
        if let Ok(s) = daly::decode_pack_status(one) {
            assert!(s.soc_permille <= 1000);
            status = Some(s);
        }
        let _ = daly::decode_cell_extremes(one);
        let _ = daly::decode_temperature_extremes(one);
        if let Ok(s) = daly::decode_switches(one) {
            switches = Some(s);
        }
        if let Ok(s) = daly::decode_system_status(one) {
            assert!(usize::from(s.cells) <= daly::MAX_CELLS);
            assert!(usize::from(s.temperature_sensors) <= daly::MAX_TEMPERATURE_SENSORS);
            if system != Some(s) {
                cells = None;
                temperatures = None;
            }
            system = Some(s);
        }
        if let Ok(b) = daly::decode_balancing(one) {
            balancing = Some(b);
        }
        if let Ok(f) = daly::decode_failures(one) {
            let _ = f.alarm_flags();
            failures = Some(f);
        }
        // The multi-frame replies, from here on, for the counts the input
        // gives and for those the latest system status announced.
        let (p_cells, p_sensors) = (usize::from(p), usize::from(p & 31));
        if let Some(w) = window(frames, at, p_cells, daly::CELLS_PER_FRAME) {
            daly_cells(w, p_cells);
        }
        if let Some(w) = window(frames, at, p_sensors, daly::TEMPERATURES_PER_FRAME) {
            daly_temperatures(w, p_sensors);
        }
        if p_cells > daly::MAX_CELLS {
            assert!(daly::decode_cell_voltages(&[], p_cells).is_err());
        }
        if let Some(s) = system {
            let (n, m) = (usize::from(s.cells), usize::from(s.temperature_sensors));
            if let Some(w) = window(frames, at, n, daly::CELLS_PER_FRAME) {
                cells = daly_cells(w, n).or(cells);
            }
            if let Some(w) = window(frames, at, m, daly::TEMPERATURES_PER_FRAME) {
                temperatures = daly_temperatures(w, m).or(temperatures);
            }
        }
        let (Some(status), Some(switches), Some(system), Some(balancing), Some(failures)) =
            (status, switches, system, balancing, failures)
        else {
            continue;
        };
        let (Some(cell_voltages_mv), Some(temperatures_c)) = (&cells, &temperatures) else {
            continue;
        };
        let poll = bms::daly::DalyPoll {
            status,
            switches,
            system,
            cell_voltages_mv: cell_voltages_mv.clone(),
            temperatures_c: temperatures_c.clone(),
            balancing_bits: balancing,
            failures,
        };
        match bms::daly::pack_reading(&poll) {
            Ok(reading) => {
                check_reading(&reading);
                assert_eq!(reading.cell_voltages_v.0.len(), usize::from(system.cells));
                assert_eq!(
                    reading.temperatures_c.0.len(),
                    usize::from(system.temperature_sensors)
                );
                assert_eq!(
                    u64::from(reading.balancing.0) >> system.cells,
                    0,
                    "balancing bits past cell {}",
                    system.cells
                );
                assert_eq!(reading.alarms, failures.alarm_flags());
            }
            Err(e) => assert!(usize::from(system.cells) > MAX_CELLS, "{e}"),
        }
    }
}

fn jk_values(v: &jk::ReadAll) {
    assert!(v.cell_voltages_mv.len() <= MAX_CELLS);
    assert!(v.cell_voltages_mv.iter().all(|mv| *mv <= jk::MAX_CELL_MV));
    if let Some(count) = v.cell_count {
        assert_eq!(usize::from(count), v.cell_voltages_mv.len());
    }
    assert!(v.soc_pct <= 100);
    for c in [
        v.mos_temperature_c,
        v.sensor_1_temperature_c,
        v.sensor_2_temperature_c,
    ]
    .into_iter()
    .flatten()
    {
        assert!((-40..=100).contains(&c), "{c} °C");
    }
    match v.current_encoding {
        jk::CurrentEncoding::SignMagnitude => assert_eq!(v.protocol_version, Some(1)),
        jk::CurrentEncoding::Offset => {
            assert!(matches!(v.protocol_version, None | Some(0)));
            assert!(v.protocol_version.is_some() || v.stopped_at.is_none());
        }
    }
    if let Some(serial_number) = v.serial_number() {
        assert!(!serial_number.is_empty() && printable(serial_number));
    }
    let reading = bms::jk::pack_reading(v);
    check_reading(&reading);
    assert_eq!(reading.cell_voltages_v.0.len(), v.cell_voltages_mv.len());
    assert!(reading.temperatures_c.0.len() <= 2);
    assert_eq!(reading.alarms, v.warnings.alarm_flags());
    assert_eq!(
        (reading.charge_enabled, reading.discharge_enabled),
        (v.status.charge_mos_on(), v.status.discharge_mos_on())
    );
}

fn jk_frames(frames: &[Vec<u8>]) {
    for bytes in frames {
        let one = std::slice::from_ref(bytes);
        assert_eq!(jk::single_frame(one).ok(), Some(&bytes[..]));
        let frame = jk::parse_frame(bytes).expect("a complete frame takes apart");
        assert_eq!(frame.info.len() + jk::MIN_FRAME_LEN, bytes.len());
        for id in [jk::ID_CHARGE_SWITCH, jk::ID_DISCHARGE_SWITCH] {
            if jk::decode_write_ack(bytes, id).is_ok() {
                assert_eq!(
                    (frame.command, frame.transport),
                    (jk::CMD_WRITE, jk::TRANSPORT_REPLY)
                );
                assert_eq!(frame.info.first(), Some(&id));
            }
        }
        if let Ok(v) = jk::decode_read_all(bytes) {
            assert_eq!(frame.command, jk::CMD_READ_ALL);
            jk_values(&v);
        }
        // The values whatever the header says.
        if let Ok(v) = jk::decode_read_all_info(frame.info) {
            jk_values(&v);
        }
    }
}

/// `address`, `cid2`, INFO: by the gateway's own encoder.
fn pylon_frame(c: &[u8]) -> Vec<u8> {
    let info = c.get(2..).unwrap_or_default();
    pylon::encode_frame(at(c, 0), at(c, 1), info).expect("INFO within LENID")
}

/// `register`, `status`, data.
fn jbd_frame(c: &[u8]) -> Vec<u8> {
    let data = c.get(2..).unwrap_or_default();
    let mut frame = vec![jbd::START, at(c, 0), at(c, 1), data.len() as u8];
    frame.extend_from_slice(data);
    let checksum = jbd::checksum(&frame[2..]);
    frame.extend_from_slice(&checksum.to_be_bytes());
    frame.push(jbd::END);
    frame
}

/// `address`, `command`, the eight data bytes.
fn daly_frame(c: &[u8]) -> Vec<u8> {
    let mut frame = vec![daly::START, at(c, 0), at(c, 1), daly::DATA_LEN];
    frame.extend((2..10).map(|i| at(c, i)));
    frame.push(daly::checksum(&frame));
    frame
}

/// `command`, `transport`, information, from terminal 0 and the BMS.
fn jk_frame(c: &[u8]) -> Vec<u8> {
    let info = c.get(2..).unwrap_or_default();
    let len = (jk::MIN_FRAME_LEN - 2 + info.len()) as u16;
    let mut frame = vec![jk::START, jk::START_2];
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0, at(c, 0), jk::SOURCE_BMS, at(c, 1)]);
    frame.extend_from_slice(info);
    frame.extend_from_slice(&[0, 0, 0, 0, jk::END]);
    let checksum = jk::checksum(&frame);
    frame.extend_from_slice(&checksum.to_be_bytes());
    frame
}

/// The stream as it comes from the line, then the same bytes as the
/// contents of frames built by the document (checksums good, so the
/// decoders see any contents), which the framing must take back whole.
fn run<F: Framing>(stream: &[u8], frame: fn(&[u8]) -> Vec<u8>, decode: impl Fn(&[Vec<u8>])) {
    decode(&split::<F>(stream));
    let built: Vec<Vec<u8>> = contents(stream).map(frame).collect();
    assert_eq!(split::<F>(&built.concat()), built);
    decode(&built);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let p = selector >> 2;
    match selector & 3 {
        0 => run::<pylon::PylonAsciiFraming>(stream, pylon_frame, |f| pylon_frames(p, f)),
        1 => run::<jbd::JbdFraming>(stream, jbd_frame, |f| jbd_frames(p, f)),
        2 => run::<daly::DalyFraming>(stream, daly_frame, |f| daly_frames(p, f)),
        _ => run::<jk::JkFraming>(stream, jk_frame, jk_frames),
    }
});
