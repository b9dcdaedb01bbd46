use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::serve::framed::{serve_framed, FramedServerOptions};
use crate::serve::CancellationToken;
use crate::{SimPack, SimPackConfig};

const READ_BASIC: [u8; 7] = [0xDD, 0xA5, 0x03, 0x00, 0xFF, 0xFD, 0x77];
const READ_CELLS: [u8; 7] = [0xDD, 0xA5, 0x04, 0x00, 0xFF, 0xFC, 0x77];

fn unit() -> FramedUnit {
    FramedUnit::new(1, SimPack::new(&SimPackConfig::default()), 7)
}

/// The data of a reply, after checking its frame.
fn data_of(frame: &[u8], register: u8, status: u8) -> Vec<u8> {
    assert_eq!(&frame[..3], &[0xDD, register, status]);
    let n = usize::from(frame[3]);
    assert_eq!(frame.len(), n + 7);
    assert_eq!(frame[n + 6], 0x77);
    assert_eq!(jbd_checksum(&frame[2..4 + n]), [frame[4 + n], frame[5 + n]]);
    frame[4..4 + n].to_vec()
}

#[test]
fn requests_are_delimited_and_checked() {
    assert_eq!(JbdDevice::scan_request(&[]), RequestScan::NeedMore);
    assert_eq!(JbdDevice::scan_request(&[0x00, 0xDD]), RequestScan::Junk(1));
    assert_eq!(
        JbdDevice::scan_request(&READ_BASIC[..3]),
        RequestScan::NeedMore
    );
    assert_eq!(
        JbdDevice::scan_request(&READ_BASIC[..6]),
        RequestScan::NeedMore
    );
    let mut two = READ_BASIC.to_vec();
    two.extend_from_slice(&READ_CELLS);
    assert_eq!(JbdDevice::scan_request(&two), RequestScan::Frame(7));
    // A reply on the line (another master's BMS) is not a request.
    assert_eq!(
        JbdDevice::scan_request(&[0xDD, 0x03, 0x00]),
        RequestScan::Junk(1)
    );

    assert_eq!(JbdDevice::address(&READ_BASIC), Ok(None));
    let mut bad = READ_BASIC;
    bad[5] ^= 1;
    assert_eq!(JbdDevice::address(&bad), Err(BadRequest::Checksum));
    let mut bad = READ_BASIC;
    bad[6] = 0x78;
    assert_eq!(JbdDevice::address(&bad), Err(BadRequest::Malformed));
}

#[test]
fn basic_information_and_cells_are_the_packs() {
    let u = unit();
    let frames = JbdDevice::answer(&u, &READ_BASIC);
    let data = data_of(&frames[0], 0x03, 0);
    let r = u.pack.reading();
    let be16 = |at: usize| u16::from_be_bytes([data[at], data[at + 1]]);
    assert_eq!(be16(0), (r.pack_voltage_v * 100.0).round() as u16);
    assert_eq!(be16(2) as i16, (r.current_a * 100.0).round() as i16);
    assert_eq!(data[19], r.soc_pct.round() as u8);
    assert_eq!(data[20], 0b11);
    assert_eq!((data[21], data[22]), (16, 4));
    assert_eq!(data.len(), 23 + 8);
    let t0 = (f32::from(be16(23)) - 2731.0) / 10.0;
    assert!((t0 - r.temperatures_c.0[0]).abs() <= 0.05);

    let frames = JbdDevice::answer(&u, &READ_CELLS);
    let data = data_of(&frames[0], 0x04, 0);
    assert_eq!(data.len(), 32);
    let cell1 = u16::from_be_bytes([data[0], data[1]]);
    assert_eq!(cell1, (r.cell_voltages_v.0[0] * 1000.0).round() as u16);

    let frames = JbdDevice::answer(&u, &[0xDD, 0xA5, 0x05, 0x00, 0xFF, 0xFB, 0x77]);
    assert_eq!(data_of(&frames[0], 0x05, 0), b"PGSIM00000007");
}

#[test]
fn mos_control_holds_switches_open_and_unknown_registers_are_refused() {
    let u = unit();
    // The document's "software closes the discharge MOS".
    let frames = JbdDevice::answer(&u, &[0xDD, 0x5A, 0xE1, 0x02, 0x00, 0x02, 0xFF, 0x1B, 0x77]);
    assert_eq!(frames, vec![vec![0xDD, 0xE1, 0x00, 0x00, 0x00, 0x00, 0x77]]);
    assert_eq!(u.pack.setting(CHARGE_SWITCH_ON), Some(1.0));
    assert_eq!(u.pack.setting(DISCHARGE_SWITCH_ON), Some(0.0));
    let data = data_of(&JbdDevice::answer(&u, &READ_BASIC)[0], 0x03, 0);
    assert_eq!(data[20], 0b01, "discharge FET open");
    assert_eq!(data[16] & 0x10, 0x10, "software lock, bit 12");

    let refused = JbdDevice::answer(&u, &[0xDD, 0x5A, 0xE1, 0x02, 0x00, 0x04, 0xFF, 0x19, 0x77]);
    assert_eq!(data_of(&refused[0], 0xE1, STATUS_ERROR), b"");
    assert_eq!(u.pack.setting(DISCHARGE_SWITCH_ON), Some(0.0));
    let refused = JbdDevice::answer(&u, &[0xDD, 0xA5, 0x06, 0x00, 0xFF, 0xFA, 0x77]);
    assert_eq!(data_of(&refused[0], 0x06, STATUS_ERROR), b"");
}

#[test]
fn protection_bits_follow_alarms_and_switches() {
    assert_eq!(protection_bits(AlarmFlags::NONE, false), 0);
    assert_eq!(
        protection_bits(AlarmFlags::OVER_TEMPERATURE, true),
        1 << 4 | 1 << 6 | 1 << 12
    );
    assert_eq!(
        protection_bits(
            AlarmFlags::CELL_UNDER_VOLTAGE.union(AlarmFlags::UNDER_TEMPERATURE),
            false
        ),
        1 << 1 | 1 << 5
    );
}

#[tokio::test]
async fn served_on_a_line_a_bad_checksum_is_ignored() {
    let (mut master, device) = tokio::io::duplex(1024);
    let options = FramedServerOptions::default();
    let stats = options.stats.clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_framed::<JbdDevice, _>(
        device,
        vec![unit()],
        options,
        shutdown.clone(),
    ));
    let mut bad = READ_BASIC;
    bad[4] = 0x00;
    master.write_all(&[0x11, 0x22]).await.unwrap();
    master.write_all(&bad).await.unwrap();
    master.write_all(&READ_CELLS).await.unwrap();
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while got.len() < 39 {
        let n = master.read(&mut buf).await.unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(data_of(&got, 0x04, 0).len(), 32);
    assert_eq!((stats.crc_errors(), stats.requests()), (1, 1));
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
