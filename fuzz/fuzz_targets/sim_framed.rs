//! The simulated BMSs' side of the framed serial protocols (Pylontech
//! ASCII, JBD, Daly, JK): requests delimited from any bytes as the device
//! server reads them, their address and checksum, and the answers of a
//! unit built from a default pack. What the unit sends must be what the
//! gateway's codec of the same protocol takes: whole frames by its
//! framing (a checksum error under the `corrupt_crc` fault), replies its
//! decoders accept, and polls that map to readings passing the sample
//! rules.
//!
//! Input: `selector` (bits 0-1 the protocol: Pylontech ASCII, JBD, Daly,
//! JK; bit 2 the unit's `corrupt_crc` fault; bit 3 its over-temperature
//! fault, the pack 15 minutes into it; bits 4-7 an injected exception
//! code, none when 0), then the bytes the device receives. The same
//! bytes are then read as the contents of requests (each a length byte
//! and that many bytes: the Pylontech address, CID2 and INFO; the JBD
//! operation, register and data; the Daly host address, data id and
//! data; the JK command, transport type and information), built with
//! good checksums so the device serves any contents.
#![no_main]

#[path = "common/chunks.rs"]
mod chunks;

use std::sync::OnceLock;

use chunks::{at, contents};
use libfuzzer_sys::fuzz_target;
use packgate_drivers::bms::daly::codec as daly;
use packgate_drivers::bms::jbd::codec as jbd;
use packgate_drivers::bms::jk::codec as jk;
use packgate_drivers::bms::pylon_ascii::{codec as pylon, info as pylon_info};
use packgate_drivers::bms::{self, FrameError, FrameStatus, Framing};
use packgate_protocol::PackReading;
use packgate_sim::serve::framed::{FramedDevice, FramedUnit, RequestScan, MAX_REQUEST_LEN};
use packgate_sim::serve::{DalyDevice, JbdDevice, JkDevice, PylonAsciiDevice};
use packgate_sim::{Faults, PackModel, SimPack, SimPackConfig};

/// The default pack, and the same pack 15 minutes into an
/// over-temperature fault.
fn models() -> &'static (PackModel, PackModel) {
    static MODELS: OnceLock<(PackModel, PackModel)> = OnceLock::new();
    MODELS.get_or_init(|| {
        let pack = SimPack::new(&SimPackConfig::default());
        let cool = pack.with_model(|m| m.clone());
        pack.set_faults(Faults {
            over_temperature: true,
            ..Faults::default()
        });
        pack.advance(900.0);
        (cool, pack.with_model(|m| m.clone()))
    })
}

fn check_reading(reading: &PackReading) {
    assert_eq!(reading.validate(), Ok(()), "{reading:?}");
}

/// What the unit makes of one request the server delimited, as the
/// server does: a request with a bad checksum or layout is ignored; the
/// answer goes out corrupted under `corrupt_crc`.
fn serve_one<D: FramedDevice, F: Framing>(
    unit: &FramedUnit,
    request: &[u8],
    accept: fn(&FramedUnit, &[u8], &[Vec<u8>]),
) {
    let Ok(address) = D::address(request) else {
        return;
    };
    // A unit at every address: the line's unit for this one.
    let unit = match address {
        Some(address) => FramedUnit {
            address,
            ..unit.clone()
        },
        None => unit.clone(),
    };
    let answers = D::answer(&unit, request);
    let corrupt = unit.pack.faults().corrupt_crc;
    let mut wire = Vec::new();
    for frame in &answers {
        let mut sent = frame.clone();
        if corrupt {
            D::corrupt(&mut sent);
            assert!(
                matches!(
                    F::frame_len(&sent),
                    FrameStatus::Invalid(FrameError::Checksum { .. })
                ),
                "corrupted {sent:02x?}: {:?}",
                F::frame_len(&sent)
            );
        }
        wire.extend_from_slice(&sent);
    }
    if corrupt {
        return;
    }
    // The answer as the gateway's link reads it off the line: each frame
    // whole, the next one behind it.
    let mut at = 0;
    for frame in &answers {
        assert_eq!(wire.get(at), Some(&F::START), "{frame:02x?}");
        assert_eq!(
            F::frame_len(&wire[at..]),
            FrameStatus::Complete(frame.len()),
            "{frame:02x?}"
        );
        at += frame.len();
    }
    accept(&unit, request, &answers);
}

/// Where a request of `n` bytes may be cut as it arrives, from 0 to
/// `n - 1`: every place within 16 bytes of either end, a few in between.
fn cuts(n: usize) -> impl Iterator<Item = usize> {
    let ends = 16.min(n);
    let tail = n.saturating_sub(16).max(ends);
    (0..ends)
        .chain((ends..tail).step_by((n / 8).max(1)))
        .chain(tail..n)
}

/// Delimits `pending` as the device server does and serves each request.
fn serve<D: FramedDevice, F: Framing>(
    unit: &FramedUnit,
    mut pending: &[u8],
    accept: fn(&FramedUnit, &[u8], &[Vec<u8>]),
) {
    loop {
        match D::scan_request(pending) {
            RequestScan::NeedMore => break,
            RequestScan::Junk(n) => {
                assert!(
                    n > 0 && n <= pending.len(),
                    "Junk({n}) of {}",
                    pending.len()
                );
                pending = &pending[n..];
            }
            RequestScan::Frame(n) => {
                assert!(
                    n > 0 && n <= pending.len(),
                    "Frame({n}) of {}",
                    pending.len()
                );
                let request = &pending[..n];
                // However the request's bytes arrive, it is the same frame.
                if n <= MAX_REQUEST_LEN {
                    assert_eq!(D::scan_request(request), RequestScan::Frame(n));
                    for k in cuts(n) {
                        assert_eq!(
                            D::scan_request(&request[..k]),
                            RequestScan::NeedMore,
                            "the first {k} bytes of a {n}-byte request"
                        );
                    }
                }
                serve_one::<D, F>(unit, request, accept);
                pending = &pending[n..];
            }
        }
    }
}

fn pylon_accepts(unit: &FramedUnit, request: &[u8], answers: &[Vec<u8>]) {
    let [frame] = answers else {
        assert!(answers.is_empty(), "{} frames", answers.len());
        return;
    };
    let address = unit.address;
    let reply = pylon::parse_frame(frame).expect("the gateway parses the answer");
    assert_eq!((reply.address, reply.cid1), (address, pylon::CID1_BATTERY));
    if let Some(code) = unit.pack.faults().exception {
        assert_eq!(reply.cid2, code);
        return;
    }
    if reply.cid2 != 0 {
        // Another CID1, an unknown command, another pack's command value.
        assert!(
            matches!(reply.cid2, 0x04 | 0x05 | 0x90),
            "RTN {}",
            reply.cid2
        );
        return;
    }
    let asked = pylon::parse_frame(request).expect("a request the pack served parses");
    let one = std::slice::from_ref(frame);
    match asked.cid2 {
        pylon::CID2_ANALOG_VALUE => {
            let analog = pylon_info::decode_analog_reply(one, address)
                .expect("the analog values decode")
                .expect("no refusal");
            // The rest of the driver's poll.
            let alarm_answers = PylonAsciiDevice::answer(unit, &pylon::alarm_info_request(address));
            let alarm = pylon_info::decode_alarm_reply(&alarm_answers, address)
                .expect("the alarm info decodes")
                .expect("no refusal");
            let reading = bms::pylon_ascii::pack_reading(&analog, &alarm).expect("a reading");
            check_reading(&reading);
        }
        pylon::CID2_ALARM_INFO => {
            let alarm = pylon_info::decode_alarm_reply(one, address)
                .expect("the alarm info decodes")
                .expect("no refusal");
            let _ = alarm.alarm_flags();
        }
        pylon::CID2_SERIAL_NUMBER => {
            let serial_number = pylon_info::decode_serial_number_reply(one, address)
                .expect("the serial number decodes")
                .expect("no refusal");
            assert_eq!(serial_number, unit.serial_number);
        }
        other => panic!("command {other:#04x} served"),
    }
}

fn jbd_basic(unit: &FramedUnit) -> jbd::BasicInfo {
    let answers = JbdDevice::answer(unit, &jbd::read_request(jbd::REG_BASIC_INFO));
    let data = jbd::expect_reply(
        jbd::single_frame(&answers).expect("one frame"),
        jbd::REG_BASIC_INFO,
    )
    .expect("the basic information's frame")
    .expect("no refusal");
    jbd::decode_basic_info(data).expect("the basic information decodes")
}

fn jbd_accepts(unit: &FramedUnit, request: &[u8], answers: &[Vec<u8>]) {
    let frame = jbd::single_frame(answers).expect("one frame to every request");
    let reply = jbd::parse_reply(frame).expect("the gateway parses the answer");
    let (op, register) = (request[1], request[2]);
    assert_eq!(reply.register, register);
    if reply.status != jbd::STATUS_OK {
        let refused = jbd::expect_reply(frame, register)
            .expect("a refusal's frame")
            .expect_err("a refusal");
        assert_eq!(refused.code, reply.status);
        return;
    }
    match (op, register) {
        (jbd::OP_READ, jbd::REG_BASIC_INFO) => {
            let basic = jbd::decode_basic_info(reply.data).expect("the basic information decodes");
            // The rest of the driver's poll.
            let answers = JbdDevice::answer(unit, &jbd::read_request(jbd::REG_CELL_VOLTAGES));
            let data = jbd::expect_reply(
                jbd::single_frame(&answers).expect("one frame"),
                jbd::REG_CELL_VOLTAGES,
            )
            .expect("the cell voltages' frame")
            .expect("no refusal");
            let cells =
                jbd::decode_cell_voltages(data, basic.cell_count).expect("the cells decode");
            check_reading(&bms::jbd::pack_reading(&basic, &cells));
        }
        (jbd::OP_READ, jbd::REG_CELL_VOLTAGES) => {
            let count = jbd_basic(unit).cell_count;
            jbd::decode_cell_voltages(reply.data, count).expect("the cells decode");
        }
        (jbd::OP_READ, jbd::REG_HARDWARE_VERSION) => {
            let model = jbd::decode_hardware_version(reply.data).expect("the model decodes");
            assert_eq!(model, unit.serial_number);
        }
        (jbd::OP_WRITE, jbd::REG_MOS_CONTROL) => {
            assert!(reply.data.is_empty());
            // The write shows in the next basic information.
            let xx = request[5];
            let basic = jbd_basic(unit);
            assert_eq!(basic.protection.software_mos_lock(), xx != 0, "{xx:#04x}");
            assert!(!(basic.charge_mos_on && xx & 1 != 0), "{xx:#04x}");
            assert!(!(basic.discharge_mos_on && xx & 2 != 0), "{xx:#04x}");
        }
        other => panic!("request {other:02x?} served"),
    }
}

fn daly_ask(unit: &FramedUnit, command: u8) -> Vec<Vec<u8>> {
    DalyDevice::answer(
        unit,
        &daly::encode_request(daly::HOST_ADDRESS_UART, command),
    )
}

/// The driver's poll of the unit, mapped to a reading.
fn daly_poll(unit: &FramedUnit) -> PackReading {
    let status = daly::decode_pack_status(&daly_ask(unit, daly::CMD_PACK_STATUS)).expect("0x90");
    let switches = daly::decode_switches(&daly_ask(unit, daly::CMD_SWITCHES)).expect("0x93");
    let system =
        daly::decode_system_status(&daly_ask(unit, daly::CMD_SYSTEM_STATUS)).expect("0x94");
    let cell_voltages_mv = daly::decode_cell_voltages(
        &daly_ask(unit, daly::CMD_CELL_VOLTAGES),
        usize::from(system.cells),
    )
    .expect("0x95");
    let temperatures_c = daly::decode_temperatures(
        &daly_ask(unit, daly::CMD_TEMPERATURES),
        usize::from(system.temperature_sensors),
    )
    .expect("0x96");
    let balancing_bits =
        daly::decode_balancing(&daly_ask(unit, daly::CMD_BALANCING)).expect("0x97");
    let failures = daly::decode_failures(&daly_ask(unit, daly::CMD_FAILURES)).expect("0x98");
    bms::daly::pack_reading(&bms::daly::DalyPoll {
        status,
        switches,
        system,
        cell_voltages_mv,
        temperatures_c,
        balancing_bits,
        failures,
    })
    .expect("a reading")
}

fn daly_accepts(unit: &FramedUnit, request: &[u8], answers: &[Vec<u8>]) {
    let command = request[2];
    for frame in answers {
        daly::reply_data(frame, command).expect("a reply from the BMS to the command");
    }
    let cells = || {
        daly::decode_system_status(&daly_ask(unit, daly::CMD_SYSTEM_STATUS))
            .expect("0x94")
            .cells
    };
    match command {
        daly::CMD_PACK_STATUS => {
            daly::decode_pack_status(answers).expect("0x90");
            check_reading(&daly_poll(unit));
        }
        daly::CMD_CELL_EXTREMES => {
            let e = daly::decode_cell_extremes(answers).expect("0x91");
            let n = cells();
            assert!((1..=n).contains(&e.max_cell) && (1..=n).contains(&e.min_cell));
            assert!(e.min_cell_mv <= e.max_cell_mv);
        }
        daly::CMD_TEMPERATURE_EXTREMES => {
            let e = daly::decode_temperature_extremes(answers).expect("0x92");
            assert!(e.min_c <= e.max_c);
        }
        daly::CMD_SWITCHES => {
            daly::decode_switches(answers).expect("0x93");
        }
        daly::CMD_SYSTEM_STATUS => {
            daly::decode_system_status(answers).expect("0x94");
        }
        daly::CMD_CELL_VOLTAGES => {
            let n = usize::from(cells());
            assert_eq!(answers.len(), daly::cell_voltage_frames(n));
            let mv = daly::decode_cell_voltages(answers, n).expect("0x95");
            assert_eq!(mv.len(), n);
        }
        daly::CMD_TEMPERATURES => {
            let system =
                daly::decode_system_status(&daly_ask(unit, daly::CMD_SYSTEM_STATUS)).expect("0x94");
            let n = usize::from(system.temperature_sensors);
            assert_eq!(answers.len(), daly::temperature_frames(n));
            assert_eq!(
                daly::decode_temperatures(answers, n).expect("0x96").len(),
                n
            );
        }
        daly::CMD_BALANCING => {
            daly::decode_balancing(answers).expect("0x97");
        }
        daly::CMD_FAILURES => {
            daly::decode_failures(answers).expect("0x98");
        }
        // Silence on any other data id.
        _ => assert!(answers.is_empty()),
    }
}

fn jk_read_all(unit: &FramedUnit) -> jk::ReadAll {
    let answers = JkDevice::answer(unit, &jk::read_all_request(0));
    jk::decode_read_all(jk::single_frame(&answers).expect("one frame")).expect("the values decode")
}

fn jk_accepts(unit: &FramedUnit, request: &[u8], answers: &[Vec<u8>]) {
    let command = request[8];
    let info = &request[jk::HEADER_LEN..request.len() - jk::TRAILER_LEN];
    match command {
        jk::CMD_READ_ALL => {
            let frame = jk::single_frame(answers).expect("one frame");
            let values = jk::decode_read_all(frame).expect("the values decode");
            assert_eq!(values.serial_number(), Some(unit.serial_number.as_str()));
            check_reading(&bms::jk::pack_reading(&values));
        }
        jk::CMD_WRITE if !answers.is_empty() => {
            let frame = jk::single_frame(answers).expect("one frame");
            let (id, on) = (info[0], info[1] == 1);
            jk::decode_write_ack(frame, id).expect("the write's acknowledgement");
            // The write shows in the next read-all.
            let values = jk_read_all(unit);
            let (setting, mos) = if id == jk::ID_CHARGE_SWITCH {
                (values.charge_switch_on, values.status.charge_mos_on())
            } else {
                (values.discharge_switch_on, values.status.discharge_mos_on())
            };
            assert_eq!(setting, Some(on));
            assert!(on || !mos, "MOS {id:#04x} on after it was switched off");
        }
        // No error frame: anything else goes unanswered.
        _ => assert!(answers.is_empty()),
    }
}

/// `address`, `cid2`, INFO, by the gateway's own encoder; every such
/// request is taken.
fn pylon_request(c: &[u8]) -> (Vec<u8>, bool) {
    let info = c.get(2..).unwrap_or_default();
    let request = pylon::encode_frame(at(c, 0), at(c, 1), info).expect("INFO within LENID");
    (request, true)
}

/// `operation`, `register`, data; taken when the operation is a read or
/// a write.
fn jbd_request(c: &[u8]) -> (Vec<u8>, bool) {
    let data = c.get(2..).unwrap_or_default();
    let mut request = vec![jbd::START, at(c, 0), at(c, 1), data.len() as u8];
    request.extend_from_slice(data);
    let checksum = jbd::checksum(&request[2..]);
    request.extend_from_slice(&checksum.to_be_bytes());
    request.push(jbd::END);
    (request, matches!(at(c, 0), jbd::OP_READ | jbd::OP_WRITE))
}

/// `host address`, `command`, the eight data bytes; taken from either
/// host address.
fn daly_request(c: &[u8]) -> (Vec<u8>, bool) {
    let mut request = vec![daly::START, at(c, 0), at(c, 1), daly::DATA_LEN];
    request.extend((2..10).map(|i| at(c, i)));
    request.push(daly::checksum(&request));
    let host = matches!(
        at(c, 0),
        daly::HOST_ADDRESS_UART | daly::HOST_ADDRESS_ALTERNATE
    );
    (request, host)
}

/// `command`, `transport`, information, from a PC to terminal 0; every
/// such request is taken.
fn jk_request(c: &[u8]) -> (Vec<u8>, bool) {
    let info = c.get(2..).unwrap_or_default();
    let len = (jk::MIN_FRAME_LEN - 2 + info.len()) as u16;
    let mut request = vec![jk::START, jk::START_2];
    request.extend_from_slice(&len.to_be_bytes());
    request.extend_from_slice(&[0, 0, 0, 0, at(c, 0), jk::SOURCE_PC, at(c, 1)]);
    request.extend_from_slice(info);
    request.extend_from_slice(&[0, 0, 0, 0, jk::END]);
    let checksum = jk::checksum(&request);
    request.extend_from_slice(&checksum.to_be_bytes());
    (request, true)
}

/// The stream as the device receives it, then the same bytes as the
/// contents of requests built by the document (checksums good, so the
/// device serves any contents): each one the device takes is delimited
/// whole and its checksum and layout pass.
fn run<D: FramedDevice, F: Framing>(
    unit: &FramedUnit,
    stream: &[u8],
    request: fn(&[u8]) -> (Vec<u8>, bool),
    accept: fn(&FramedUnit, &[u8], &[Vec<u8>]),
) {
    serve::<D, F>(unit, stream, accept);
    let mut line = Vec::new();
    for (built, taken) in contents(stream).map(request) {
        if taken {
            assert_eq!(D::scan_request(&built), RequestScan::Frame(built.len()));
            assert!(D::address(&built).is_ok(), "{built:02x?}");
        }
        line.extend_from_slice(&built);
    }
    serve::<D, F>(unit, &line, accept);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let faults = Faults {
        corrupt_crc: selector & 4 != 0,
        over_temperature: selector & 8 != 0,
        exception: Some(selector >> 4).filter(|code| *code != 0),
        ..Faults::default()
    };
    let (cool, hot) = models();
    let model = if faults.over_temperature { hot } else { cool };
    let pack = SimPack::from_model(model.clone());
    pack.set_faults(faults);
    let unit = FramedUnit::new(2, pack, 7);
    match selector & 3 {
        0 => run::<PylonAsciiDevice, pylon::PylonAsciiFraming>(
            &unit,
            stream,
            pylon_request,
            pylon_accepts,
        ),
        1 => run::<JbdDevice, jbd::JbdFraming>(&unit, stream, jbd_request, jbd_accepts),
        2 => run::<DalyDevice, daly::DalyFraming>(&unit, stream, daly_request, daly_accepts),
        _ => run::<JkDevice, jk::JkFraming>(&unit, stream, jk_request, jk_accepts),
    }
});
