use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::serve::framed::{serve_framed, FramedServerOptions};
use crate::serve::CancellationToken;
use crate::{SimPack, SimPackConfig};

/// The document's read-all request.
const READ_ALL: [u8; 21] = [
    0x4E, 0x57, 0x00, 0x13, 0, 0, 0, 0, 0x06, 0x03, 0x00, 0x00, 0, 0, 0, 0, 0x68, 0, 0, 0x01, 0x29,
];

fn unit() -> FramedUnit {
    FramedUnit::new(1, SimPack::new(&SimPackConfig::default()), 9)
}

/// The switch write users report working on B-series packs, `AB`/`AC`
/// and a value.
fn write(id: u8, value: u8) -> Vec<u8> {
    let mut frame = vec![
        0x4E, 0x57, 0x00, 0x14, 0, 0, 0, 0, 0x02, 0x03, 0x00, id, value,
    ];
    frame.extend_from_slice(&[0, 0, 0, 0, 0x68]);
    let sum: u32 = frame.iter().map(|b| u32::from(*b)).sum();
    frame.extend_from_slice(&sum.to_be_bytes());
    frame
}

/// The information field of a BMS frame, after checking the frame.
fn info_of(frame: &[u8], command: u8) -> Vec<u8> {
    let total = usize::from(u16::from_be_bytes([frame[2], frame[3]])) + 2;
    assert_eq!(frame.len(), total);
    assert_eq!(&frame[..2], b"NW");
    assert_eq!((frame[8], frame[9], frame[10]), (command, 0x00, 0x01));
    assert_eq!(frame[total - 5], 0x68);
    let sum: u32 = frame[..total - 4].iter().map(|b| u32::from(*b)).sum();
    assert_eq!(frame[total - 4..], (sum & 0xFFFF).to_be_bytes());
    frame[11..total - 9].to_vec()
}

/// The value after `id`, walking the field with the document's lengths.
fn value(info: &[u8], id: u8) -> Vec<u8> {
    let mut at = 0;
    while at < info.len() {
        let len = match info[at] {
            0x79 => 1 + usize::from(info[at + 1]),
            0x85 | 0x86 | 0x9D | 0xA9 | 0xAB | 0xAC | 0xAE | 0xAF | 0xB1 | 0xB3 | 0xB8 | 0xC0 => 1,
            0x89 | 0xAA | 0xB5 | 0xB6 | 0xB9 => 4,
            0xB2 => 10,
            0xB4 => 8,
            0xB7 => 15,
            0xBA => 24,
            _ => 2,
        };
        if info[at] == id {
            return info[at + 1..at + 1 + len].to_vec();
        }
        at += 1 + len;
    }
    panic!("no id {id:#04x}");
}

#[test]
fn requests_are_delimited_and_checked() {
    assert_eq!(
        JkDevice::scan_request(&READ_ALL[..3]),
        RequestScan::NeedMore
    );
    assert_eq!(
        JkDevice::scan_request(&READ_ALL[..20]),
        RequestScan::NeedMore
    );
    assert_eq!(JkDevice::scan_request(&READ_ALL), RequestScan::Frame(21));
    assert_eq!(
        JkDevice::scan_request(&[0x4E, 0x4E, 0x57]),
        RequestScan::Junk(1)
    );
    assert_eq!(
        JkDevice::scan_request(&[0x4E, 0x57, 0x00, 0x05]),
        RequestScan::Junk(1)
    );
    assert_eq!(JkDevice::address(&READ_ALL), Ok(None));
    let mut bad = READ_ALL;
    bad[20] ^= 1;
    assert_eq!(JkDevice::address(&bad), Err(BadRequest::Checksum));
    let mut bad = READ_ALL;
    bad[16] = 0x69;
    assert_eq!(JkDevice::address(&bad), Err(BadRequest::Malformed));
}

#[test]
fn read_all_carries_the_pack() {
    let u = unit();
    let frames = JkDevice::answer(&u, &READ_ALL);
    let info = info_of(&frames[0], 0x06);
    let r = u.pack.reading();
    let cells = value(&info, 0x79);
    assert_eq!(cells.len(), 1 + 3 * 16);
    assert_eq!(cells[1], 1);
    let mv = u16::from_be_bytes([cells[2], cells[3]]);
    assert_eq!(mv, (r.cell_voltages_v.0[0] * 1000.0).round() as u16);
    assert_eq!(
        value(&info, 0x83),
        ((r.pack_voltage_v * 100.0).round() as u16).to_be_bytes()
    );
    assert_eq!(value(&info, 0x85), [r.soc_pct.round() as u8]);
    assert_eq!(value(&info, 0x86), [2]);
    assert_eq!(value(&info, 0x8A), [0, 16]);
    assert_eq!(value(&info, 0x8C)[1] & 0b11, 0b11);
    assert_eq!(value(&info, 0xC0), [1]);
    assert_eq!(&value(&info, 0xBA)[..13], b"PGSIM00000009");
    let t1 = u16::from_be_bytes(value(&info, 0x81).try_into().unwrap());
    assert_eq!(f32::from(t1), r.temperatures_c.0[0].round());
}

#[test]
fn currents_and_temperatures_in_the_documents_forms() {
    assert_eq!(jk_temperature(25.4), [0, 25]);
    assert_eq!(jk_temperature(-1.0), [0, 101]);
    assert_eq!(jk_temperature(-55.0), [0, 140]);
    assert_eq!(warning_bits(AlarmFlags::OVER_TEMPERATURE), 1 << 4);
    assert_eq!(warning_bits(AlarmFlags::SHORT_CIRCUIT), 0);
    let mut r = unit().pack.reading();
    r.current_a = 20.0;
    let info = read_all_info(&unit(), &r);
    assert_eq!(value(&info, 0x84), [0x87, 0xD0], "charging 20 A");
    r.current_a = -20.0;
    let info = read_all_info(&unit(), &r);
    assert_eq!(value(&info, 0x84), [0x07, 0xD0], "discharging 20 A");
}

#[test]
fn switch_writes_are_applied_and_acknowledged() {
    let u = unit();
    let frames = JkDevice::answer(&u, &write(0xAB, 0));
    assert_eq!(info_of(&frames[0], 0x02), [0xAB]);
    assert_eq!(u.pack.setting(CHARGE_SWITCH_ON), Some(0.0));
    let info = info_of(&JkDevice::answer(&u, &READ_ALL)[0], 0x06);
    assert_eq!(value(&info, 0xAB), [0]);
    assert_eq!(value(&info, 0x8C)[1] & 0b11, 0b10);
    assert!(JkDevice::answer(&u, &write(0xAC, 2)).is_empty());
    assert!(JkDevice::answer(&u, &write(0x9D, 0)).is_empty());
    assert_eq!(u.pack.setting(DISCHARGE_SWITCH_ON), Some(1.0));
}

#[tokio::test]
async fn served_on_a_line_a_bad_checksum_is_ignored() {
    let (mut master, device) = tokio::io::duplex(4096);
    let options = FramedServerOptions::default();
    let stats = options.stats.clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_framed::<JkDevice, _>(
        device,
        vec![unit()],
        options,
        shutdown.clone(),
    ));
    let mut bad = READ_ALL;
    bad[19] = 0x02;
    master.write_all(&bad).await.unwrap();
    master.write_all(&write(0xAC, 0)).await.unwrap();
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while got.len() < 21 {
        let n = master.read(&mut buf).await.unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(info_of(&got, 0x02), [0xAC]);
    assert_eq!((stats.crc_errors(), stats.requests()), (1, 1));
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
