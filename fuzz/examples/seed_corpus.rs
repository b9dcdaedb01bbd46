//! Writes the seed corpus of every fuzz target into `corpus/<target>/`:
//! small valid inputs built with the crates' own encoders, so the fuzzer
//! starts from real messages, frames, logs and profiles.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus`

use std::fs;
use std::path::{Path, PathBuf};

use embedded_can::Frame;

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
use packgate_sim::serve::registers::RegisterImage;

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

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let c = Corpus { root };
    envelope(&c);
    modbus(&c);
    can(&c);
    profiles(&c);
}
