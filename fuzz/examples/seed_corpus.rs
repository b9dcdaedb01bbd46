//! Writes the seed corpus of every fuzz target into `corpus/<target>/`:
//! small valid inputs built with the crates' own encoders, so the fuzzer
//! starts from real messages, frames, logs and profiles.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus`

use std::fs;
use std::path::{Path, PathBuf};

use embedded_can::Frame;

use packgate_drivers::bms::daly::codec as daly;
use packgate_drivers::bms::jbd::codec::{self as jbd, MosControl};
use packgate_drivers::bms::jk::codec as jk;
use packgate_drivers::bms::pylon_ascii::codec as pylon;
use packgate_drivers::bms::switch::MosSwitch;
use packgate_drivers::can::slcan::encode_frame;
use packgate_drivers::can::CanFrame;
use packgate_drivers::modbus::frame::{read_request, rtu_frame, tcp_frame, write_request};
use packgate_drivers::profile::Profile;
use packgate_protocol::{
    encode, AlarmFlags, BalancingState, BootId, CellVoltages, ClockQuality, Command, CommandId,
    CommandOrigin, CommandOutcome, CommandReply, DataQuality, Event, EventKind, LatencySummary,
    MetricsSnapshot, PackId, PackReading, Sample, SettingName, Temperatures,
};
use packgate_sim::serve::can_frames::{bms_frames, BmsLimits};
use packgate_sim::serve::framed::{FramedDevice, FramedUnit};
use packgate_sim::serve::registers::RegisterImage;
use packgate_sim::serve::{DalyDevice, JbdDevice, JkDevice, PylonAsciiDevice};
use packgate_sim::{Faults, SimPack, SimPackConfig};

struct Corpus {
    root: PathBuf,
}

impl Corpus {
    fn put(&self, target: &str, name: &str, bytes: impl AsRef<[u8]>) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).expect("corpus folder");
        fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed file");
    }
}

fn reading() -> PackReading {
    PackReading {
        pack_voltage_v: 52.81,
        current_a: -12.4,
        soc_pct: 71.3,
        soh_pct: Some(98.0),
        cell_voltages_v: CellVoltages((0..16).map(|i| 3.30 + 0.001 * i as f32).collect()),
        temperatures_c: Temperatures(vec![24.5, 25.0, 23.9, 26.1]),
        balancing: BalancingState(0b0100),
        alarms: AlarmFlags::NONE,
        charge_enabled: true,
        discharge_enabled: true,
    }
}

fn limits() -> BmsLimits {
    BmsLimits {
        charge_voltage_limit_v: 56.8,
        charge_current_limit_a: 50.0,
        discharge_current_limit_a: 100.0,
        discharge_voltage_limit_v: 44.8,
    }
}

fn envelope(c: &Corpus) {
    let pack_id = PackId::new("rack1-pack1").expect("pack id");
    let sample = Sample {
        pack_id: pack_id.clone(),
        boot_id: BootId(0x1234_5678_9abc_def0),
        seq: 42,
        timestamp_ms: 1_700_000_000_123,
        quality: DataQuality::Fresh,
        reading: reading(),
        clock: ClockQuality::Trusted,
    };
    c.put("envelope", "sample", encode(&sample));
    let stale = Sample {
        quality: DataQuality::Stale,
        clock: ClockQuality::Untrusted,
        reading: PackReading {
            alarms: AlarmFlags::OVER_TEMPERATURE,
            cell_voltages_v: CellVoltages(vec![3.3]),
            temperatures_c: Temperatures(vec![61.0]),
            ..reading()
        },
        ..sample
    };
    c.put("envelope", "sample-stale", encode(&stale));
    let kinds = [
        (
            "raised",
            EventKind::AlarmRaised(AlarmFlags::OVER_TEMPERATURE),
        ),
        ("cleared", EventKind::AlarmCleared(AlarmFlags(0b11))),
        ("online", EventKind::PackOnline),
        (
            "offline",
            EventKind::PackOffline {
                reason: "no answer within 500ms".into(),
            },
        ),
    ];
    for (name, kind) in kinds {
        let event = Event {
            pack_id: pack_id.clone(),
            boot_id: BootId(7),
            seq: 3,
            timestamp_ms: 1_700_000_000_000,
            kind,
        };
        c.put("envelope", &format!("event-{name}"), encode(&event));
    }
    let command = Command {
        id: CommandId("cmd-0001".into()),
        pack_id: pack_id.clone(),
        setting: SettingName("charge_current_limit_a".into()),
        value: 50.0,
        origin: CommandOrigin::Cloud,
        issued_at_ms: 1_700_000_000_000,
        expires_at_ms: 1_700_000_030_000,
    };
    c.put("envelope", "command", encode(&command));
    let outcomes = [
        ("applied", CommandOutcome::Applied { read_back: 50.0 }),
        (
            "rejected",
            CommandOutcome::Rejected {
                reason: "above max 80".into(),
            },
        ),
        (
            "failed",
            CommandOutcome::Failed {
                error: "device exception 0x02".into(),
            },
        ),
        ("timed-out", CommandOutcome::TimedOut),
    ];
    for (name, outcome) in outcomes {
        let reply = CommandReply {
            command_id: CommandId("cmd-0001".into()),
            outcome,
        };
        c.put("envelope", &format!("reply-{name}"), encode(&reply));
    }
    let snapshot = MetricsSnapshot {
        worker: "collect".into(),
        instance: "box-1".into(),
        timestamp_ms: 1_700_000_000_000,
        uptime_s: 3600,
        version: "0.1.0".into(),
        rss_bytes: 12 << 20,
        cpu_s: 1.5,
        counters: vec![("polls".into(), 3600), ("poll_errors".into(), 2)],
        gauges: vec![("pending".into(), 0.0)],
        latencies: vec![LatencySummary {
            name: "poll".into(),
            count: 60,
            p50_ms: 12.0,
            p99_ms: 40.0,
            max_ms: 55.0,
        }],
        notes: vec![("link_error".into(), "certificate unknown".into())],
    };
    c.put("envelope", "metrics", encode(&snapshot));
}

/// `mode`, `unit`, request length, request, reply: the layout of the
/// `modbus_frame` target.
fn master(mode: u8, unit: u8, request: &[u8], reply: &[u8]) -> Vec<u8> {
    let mut out = vec![mode, unit, request.len() as u8];
    out.extend_from_slice(request);
    out.extend_from_slice(reply);
    out
}

fn read_reply(function: u8, registers: &[u16]) -> Vec<u8> {
    let mut pdu = vec![function, (2 * registers.len()) as u8];
    for r in registers {
        pdu.extend_from_slice(&r.to_be_bytes());
    }
    pdu
}

fn modbus(c: &Corpus) {
    let image = RegisterImage::encode(&reading(), 50.0, 100.0, 0xDEAD_BEEF);
    let registers = image.read(0, 64).expect("sim registers");
    let read = read_request(3, 0, 64);
    let reply = read_reply(3, &registers);
    c.put(
        "modbus_frame",
        "rtu-read",
        master(0, 1, &read, &rtu_frame(1, &reply)),
    );
    c.put(
        "modbus_frame",
        "tcp-read",
        master(1, 1, &read, &tcp_frame(9, 1, &reply)),
    );
    let short = read_request(4, 100, 2);
    c.put(
        "modbus_frame",
        "rtu-read-input",
        master(0, 2, &short, &rtu_frame(2, &read_reply(4, &[500, 1205]))),
    );
    c.put(
        "modbus_frame",
        "rtu-exception",
        master(0, 1, &read, &rtu_frame(1, &[0x83, 0x02])),
    );
    c.put(
        "modbus_frame",
        "tcp-exception",
        master(1, 1, &read, &tcp_frame(3, 1, &[0x83, 0x0B])),
    );
    let single = write_request(100, &[500]);
    c.put(
        "modbus_frame",
        "rtu-write-single",
        master(0, 1, &single, &rtu_frame(1, &single)),
    );
    let multiple = write_request(100, &[500, 1000]);
    c.put(
        "modbus_frame",
        "rtu-write-multiple",
        master(0, 1, &multiple, &rtu_frame(1, &multiple[..5])),
    );
    c.put(
        "modbus_frame",
        "tcp-write-multiple",
        master(1, 1, &multiple, &tcp_frame(4, 1, &multiple[..5])),
    );
    let mut bad_crc = rtu_frame(1, &reply);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x55;
    c.put("modbus_frame", "rtu-bad-crc", master(0, 1, &read, &bad_crc));

    let sim = |mode: u8, frame: &[u8]| [&[mode][..], frame].concat();
    c.put("sim_modbus", "rtu-read", sim(0, &rtu_frame(1, &read)));
    c.put(
        "sim_modbus",
        "rtu-write-single",
        sim(0, &rtu_frame(1, &single)),
    );
    c.put(
        "sim_modbus",
        "rtu-write-multiple",
        sim(0, &rtu_frame(1, &multiple)),
    );
    c.put(
        "sim_modbus",
        "rtu-broadcast",
        sim(0, &rtu_frame(0, &single)),
    );
    c.put("sim_modbus", "tcp-read", sim(1, &tcp_frame(1, 1, &read)));
    c.put(
        "sim_modbus",
        "tcp-write-multiple",
        sim(1, &tcp_frame(2, 3, &multiple)),
    );
    c.put(
        "sim_modbus",
        "tcp-unknown-function",
        sim(1, &tcp_frame(2, 3, &[0x2B, 0x0E, 0x01, 0x00])),
    );
}

fn frames() -> Vec<CanFrame> {
    bms_frames(&reading(), &limits())
        .into_iter()
        .map(|(id, data)| CanFrame::standard(id, &data).expect("frame"))
        .collect()
}

fn can(c: &Corpus) {
    // slcan: `cut`, then the adapter's bytes.
    let mut burst = b"V1013\r\r".to_vec();
    for frame in frames() {
        burst.extend(encode_frame(&frame));
    }
    c.put("slcan", "burst", [&[40u8][..], &burst].concat());
    c.put(
        "slcan",
        "timestamps",
        b"\x0at3568D60A1404E6FF0F0001A2B\rt35C2C0001EA5F\r",
    );
    c.put(
        "slcan",
        "extended-remote",
        b"\x05T1ABCDEF0811223344556677889\rr1234\rR1ABCDEF08\r\x07z\r",
    );
    c.put("slcan", "replies", b"\x03\r\x07N1234\rF00\rv0100\rZ\r\n");

    // candump: both text forms.
    let mut log = String::from("# candump -l can0\n");
    let mut default = String::new();
    for (i, frame) in frames().iter().enumerate() {
        log.push_str(&format!("(1700000000.{:06}) can0 {frame} R\n", i * 1000));
        let bytes: Vec<String> = frame.data().iter().map(|b| format!("{b:02X}")).collect();
        default.push_str(&format!(
            " (1700000000.{:06})  can0  {:03X}   [{}]  {}\n",
            i * 1000,
            frame.raw_id(),
            bytes.len(),
            bytes.join(" ")
        ));
    }
    c.put("candump", "log", log);
    c.put("candump", "default", default);
    c.put(
        "candump",
        "remote-extended",
        "(1.000000) vcan0 123#R4\n(1.5) vcan0 1ABCDEF0#DEADBEEF T\n  can0  123   [4]  remote request\n  can1  370   [8]  50 59 4C 4F 4E 20 20 20\n\n",
    );

    // can_decode: `cells`, then frames as flags, id, length, data.
    let mut bytes = vec![16u8];
    for frame in frames() {
        bytes.push(0x10);
        bytes.extend_from_slice(&(frame.raw_id() as u16).to_le_bytes());
        bytes.push(frame.data().len() as u8);
        bytes.extend_from_slice(frame.data());
    }
    c.put("can_decode", "burst", &bytes);
    let mut twice = bytes.clone();
    twice.extend_from_slice(&bytes[1..]);
    twice[1] = 0xF0;
    c.put("can_decode", "two-bursts", twice);
    let mut odd = vec![0u8];
    odd.extend([0x01, 0xF0, 0xDE, 0xBC, 0x1A, 2, 0xAA, 0x55]); // extended
    odd.extend([0x02, 0x56, 0x03, 4]); // remote
    odd.extend([0x00, 0x5E, 0x03, 8]);
    odd.extend(b"PYLON   ");
    c.put("can_decode", "odd-frames", odd);
}

fn profiles(c: &Corpus) {
    for name in Profile::builtin_names() {
        let source = Profile::builtin_source(name).expect("built-in source");
        c.put("profile_compile", name, source);
        let profile = Profile::builtin(name).expect("built-in profile");
        let words: usize = profile.blocks.iter().map(|b| usize::from(b.count)).sum();
        let image: Vec<u8> = (0..words).flat_map(|_| 1u16.to_be_bytes()).collect();
        let index = Profile::builtin_names()
            .iter()
            .position(|n| n == name)
            .unwrap_or(0) as u8;
        c.put(
            "profile_decode",
            &format!("{name}-ones"),
            [&[index, 0][..], &image].concat(),
        );
        let with_image = [source.as_bytes(), &[0], &image].concat();
        c.put("profile_compile", &format!("{name}-ones"), with_image);
    }
    let minimal = "name = \"t\"\n[[blocks]]\nfunction = 3\nstart = 0\ncount = 40\n\
        [fields]\npack_voltage_v = { block = 0, offset = 0, type = \"u16\" }\n\
        current_a = { block = 0, offset = 1, type = \"f32\" }\n\
        soc_pct = { block = 0, offset = 3, type = \"u16\" }\n\
        [cells]\nblock = 0\noffset = 10\ntype = \"u16\"\ncount = 1\n\
        [temperatures]\nblock = 0\noffset = 20\ntype = \"u16\"\ncount = 1\n\
        [[settings]]\nname = \"b\"\nregister = 20\ntype = \"i32\"\nscale = 0.001\nvalue_offset = 5.0\n\
        min = -1000.0\nmax = 1000.0\nword_order = \"little\"\n";
    c.put("profile_compile", "minimal", minimal);

    let image = RegisterImage::encode(&reading(), 50.0, 100.0, 0xDEAD_BEEF);
    let registers = image.read(0, 64).expect("sim registers");
    let bytes: Vec<u8> = registers.iter().flat_map(|r| r.to_be_bytes()).collect();
    c.put(
        "profile_decode",
        "packgate-sim-reading",
        [&[0u8, 0][..], &bytes].concat(),
    );
    c.put(
        "profile_decode",
        "packgate-sim-cut",
        [&[0u8, 32][..], &bytes].concat(),
    );
    // A SunSpec map from the marker: common model 1, then 802, then the end.
    let mut sunspec = vec![0x5375u16, 0x6e53, 1, 66];
    sunspec.extend([0u16; 66]);
    sunspec.extend([802, 62]);
    sunspec.extend((0..62).map(|i| i as u16));
    sunspec.push(0xFFFF);
    let bytes: Vec<u8> = sunspec.iter().flat_map(|r| r.to_be_bytes()).collect();
    c.put(
        "profile_decode",
        "sunspec-map",
        [&[1u8, 0][..], &bytes].concat(),
    );
}

/// A simulated BMS at `address` under `faults`, fresh for each answer so
/// the seeds are the same at every run (the pack's first reading).
fn unit(address: u8, faults: Faults) -> FramedUnit {
    let pack = SimPack::new(&SimPackConfig::default());
    pack.set_faults(faults);
    FramedUnit::new(address, pack, 7)
}

/// The answer frames a simulated `D` sends to each of `requests`. Each
/// answer comes from a fresh unit that has taken the writes before it (a
/// write answers without moving the pack's time), so the seeds are the
/// same at every run.
fn session<D: FramedDevice>(
    address: u8,
    faults: Faults,
    requests: &[Vec<u8>],
    is_write: fn(&[u8]) -> bool,
) -> Vec<Vec<Vec<u8>>> {
    requests
        .iter()
        .enumerate()
        .map(|(i, request)| {
            let u = unit(address, faults);
            for write in requests[..i].iter().filter(|r| is_write(r)) {
                D::answer(&u, write);
            }
            D::answer(&u, request)
        })
        .collect()
}

/// Each request followed by its answer: the bytes on a two-wire line,
/// where a BMS's reader hears its own request too.
fn on_line(requests: &[Vec<u8>], answers: &[Vec<Vec<u8>>]) -> Vec<Vec<u8>> {
    requests
        .iter()
        .zip(answers)
        .map(|(request, frames)| [request.clone(), frames.concat()].concat())
        .collect()
}

/// Frame or request contents as the framed targets read them in their
/// second pass: a length byte, then the bytes.
fn contents(parts: &[&[u8]]) -> Vec<u8> {
    let bytes = parts.concat();
    let len = u8::try_from(bytes.len()).expect("contents of at most 255 bytes");
    [&[len][..], &bytes].concat()
}

/// The framed serial BMS protocols: `bms_frames` gets a selector (the
/// protocol, and the address or counts in bits 2-7) and what the gateway
/// hears on the line, or the simulated BMSs' replies as frame contents;
/// `sim_framed` a selector (the protocol and the unit's faults) and
/// requests from the gateway's own builders, whole or as contents.
fn framed(c: &Corpus) {
    let ok = Faults::default;
    let line = |selector: u8, parts: &[Vec<u8>]| [&[selector][..], &parts.concat()].concat();

    // Pylontech ASCII, pack address 2.
    let pylon_requests = [
        pylon::analog_value_request(2),
        pylon::alarm_info_request(2),
        pylon::serial_number_request(2),
    ];
    let answers = session::<PylonAsciiDevice>(2, ok(), &pylon_requests, |_| false);
    c.put(
        "bms_frames",
        "pylon-poll",
        line(2 << 2, &on_line(&pylon_requests, &answers)),
    );
    let replies: Vec<Vec<u8>> = answers
        .iter()
        .flatten()
        .map(|frame| {
            let f = pylon::parse_frame(frame).expect("a reply");
            contents(&[&[f.address, f.cid2], &f.info])
        })
        .collect();
    c.put("bms_frames", "pylon-contents", line(2 << 2, &replies));
    let refused = Faults {
        exception: Some(0x91),
        ..ok()
    };
    c.put(
        "bms_frames",
        "pylon-refused",
        line(
            2 << 2,
            &on_line(
                &pylon_requests[..1],
                &session::<PylonAsciiDevice>(2, refused, &pylon_requests[..1], |_| false),
            ),
        ),
    );
    // An older pack: 16-bit capacities (two user-defined items), three
    // status bytes; line noise before it.
    let analog = [
        0x00, 2, 2, 0x0C, 0xE4, 0x0C, 0xEE, 2, 0x0B, 0xA5, 0x0A, 0x47, 0xFF, 0xE7, 0x19, 0xD2,
        0x61, 0xA8, 2, 0xC3, 0x50, 0x00, 0x0C,
    ];
    let alarm = [0x00, 2, 2, 0, 2, 2, 0, 1, 0, 0, 0, 0x02, 0x06, 0x40];
    let old = [
        b"\x00\xFF~~\r".to_vec(),
        pylon::encode_frame(2, 0, &analog).expect("frame"),
        pylon::encode_frame(2, 0, &alarm).expect("frame"),
    ];
    c.put("bms_frames", "pylon-old-layout", line(2 << 2, &old));
    let mut pylon_line = pylon_requests.concat();
    pylon_line.extend(pylon::encode_request(
        2,
        pylon::CID2_MANUFACTURER_INFO,
        None,
    ));
    pylon_line.extend(pylon::encode_request(2, pylon::CID2_ANALOG_VALUE, Some(3)));
    pylon_line.extend(pylon::analog_value_request(3));
    c.put("sim_framed", "pylon", [&[0u8][..], &pylon_line].concat());
    let asked = [
        contents(&[&[2, pylon::CID2_ANALOG_VALUE, 2]]),
        contents(&[&[2, pylon::CID2_ALARM_INFO, 2]]),
        contents(&[&[2, pylon::CID2_SERIAL_NUMBER, 2]]),
        contents(&[&[2, pylon::CID2_MANUFACTURER_INFO]]),
        contents(&[&[3, pylon::CID2_ANALOG_VALUE, 2]]),
    ];
    c.put("sim_framed", "pylon-contents", line(0, &asked));
    // Over-temperature and exception 9; corrupt_crc.
    c.put(
        "sim_framed",
        "pylon-faults",
        [&[0x98u8][..], &pylon_line].concat(),
    );
    c.put(
        "sim_framed",
        "pylon-corrupt",
        [&[0x04u8][..], &pylon_line].concat(),
    );

    // JBD: no address; 16 cells in bits 2-7.
    let mos = |charge_on, discharge_on| {
        jbd::mos_control_request(MosControl {
            charge_on,
            discharge_on,
        })
        .to_vec()
    };
    let jbd_requests = [
        jbd::read_request(jbd::REG_BASIC_INFO).to_vec(),
        jbd::read_request(jbd::REG_CELL_VOLTAGES).to_vec(),
        jbd::read_request(jbd::REG_HARDWARE_VERSION).to_vec(),
        mos(false, true),
        jbd::read_request(jbd::REG_BASIC_INFO).to_vec(),
        mos(true, true),
        jbd::read_request(0x06).to_vec(),
    ];
    let answers = session::<JbdDevice>(1, ok(), &jbd_requests, |r| r[1] == jbd::OP_WRITE);
    c.put(
        "bms_frames",
        "jbd-poll",
        line(1 | 16 << 2, &on_line(&jbd_requests, &answers)),
    );
    let replies: Vec<Vec<u8>> = answers
        .iter()
        .flatten()
        .map(|frame| {
            let r = jbd::parse_reply(frame).expect("a reply");
            contents(&[&[r.register, r.status], r.data])
        })
        .collect();
    c.put("bms_frames", "jbd-contents", line(1 | 16 << 2, &replies));
    c.put("sim_framed", "jbd", line(1, &jbd_requests));
    let asked: Vec<Vec<u8>> = jbd_requests
        .iter()
        .map(|r| contents(&[&r[1..3], &r[4..r.len() - 3]]))
        .collect();
    c.put("sim_framed", "jbd-contents", line(1, &asked));
    c.put(
        "sim_framed",
        "jbd-over-temperature",
        line(1 | 8, &jbd_requests),
    );

    // Daly: 16 cells and sensors in bits 2-7 (the pack has 4 sensors: its
    // 0x94 says so).
    let commands = [
        daly::CMD_PACK_STATUS,
        daly::CMD_SWITCHES,
        daly::CMD_SYSTEM_STATUS,
        daly::CMD_CELL_VOLTAGES,
        daly::CMD_TEMPERATURES,
        daly::CMD_BALANCING,
        daly::CMD_FAILURES,
        daly::CMD_CELL_EXTREMES,
        daly::CMD_TEMPERATURE_EXTREMES,
    ];
    let daly_requests: Vec<Vec<u8>> = commands
        .iter()
        .map(|id| daly::encode_request(daly::HOST_ADDRESS_UART, *id).to_vec())
        .collect();
    let answers = session::<DalyDevice>(0, ok(), &daly_requests, |_| false);
    c.put(
        "bms_frames",
        "daly-poll",
        line(2 | 16 << 2, &on_line(&daly_requests, &answers)),
    );
    let replies: Vec<Vec<u8>> = answers
        .iter()
        .flatten()
        .map(|frame| {
            let f = daly::parse_frame(frame).expect("a reply");
            contents(&[&[f.address, f.command], &f.data])
        })
        .collect();
    c.put("bms_frames", "daly-contents", line(2 | 16 << 2, &replies));
    let mut daly_line = daly_requests.concat();
    daly_line.extend(daly::encode_request(
        daly::HOST_ADDRESS_ALTERNATE,
        daly::CMD_PACK_STATUS,
    ));
    daly_line.extend(daly::encode_request(daly::HOST_ADDRESS_UART, 0x50));
    c.put("sim_framed", "daly", [&[2u8][..], &daly_line].concat());
    let asked: Vec<Vec<u8>> = daly_requests
        .iter()
        .map(|r| contents(&[&r[1..3], &r[4..12]]))
        .collect();
    c.put("sim_framed", "daly-contents", line(2, &asked));
    c.put(
        "sim_framed",
        "daly-corrupt",
        [&[2u8 | 4][..], &daly_line].concat(),
    );

    // JK: a read-all, a switch written and its read-back.
    let jk_requests = [
        jk::read_all_request(0),
        jk::switch_write_request(0, MosSwitch::Charge, false),
        jk::read_all_request(0),
        jk::switch_write_request(0, MosSwitch::Charge, true),
        jk::switch_write_request(0, MosSwitch::Discharge, false),
    ];
    let answers = session::<JkDevice>(1, ok(), &jk_requests, |r| r[8] == jk::CMD_WRITE);
    c.put(
        "bms_frames",
        "jk-poll",
        line(3, &on_line(&jk_requests, &answers)),
    );
    // A read-all's values up to the status (8C) and the protocol version,
    // without the settings: a length byte holds no more.
    let replies: Vec<Vec<u8>> = answers
        .iter()
        .flatten()
        .map(|frame| {
            let f = jk::parse_frame(frame).expect("a reply");
            if f.command != jk::CMD_READ_ALL {
                return contents(&[&[f.command, f.transport], f.info]);
            }
            let mut end = 0;
            while let Some(&id) = f.info.get(end).filter(|id| **id <= 0x8C) {
                end += 1 + match id {
                    0x79 => 1 + usize::from(f.info[end + 1]),
                    id => jk::value_len(id).expect("an id of known length"),
                };
            }
            contents(&[&[f.command, f.transport], &f.info[..end], &[0xC0, 1]])
        })
        .collect();
    c.put("bms_frames", "jk-contents", line(3, &replies));
    c.put("sim_framed", "jk", line(3, &jk_requests));
    let asked: Vec<Vec<u8>> = jk_requests
        .iter()
        .map(|r| {
            contents(&[
                &[r[8], r[10]],
                &r[jk::HEADER_LEN..r.len() - jk::TRAILER_LEN],
            ])
        })
        .collect();
    c.put("sim_framed", "jk-contents", line(3, &asked));
    c.put(
        "sim_framed",
        "jk-over-temperature",
        line(3 | 8, &jk_requests),
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let c = Corpus { root };
    envelope(&c);
    modbus(&c);
    can(&c);
    profiles(&c);
    framed(&c);
}
