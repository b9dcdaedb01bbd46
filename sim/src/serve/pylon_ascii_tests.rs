use super::*;
use crate::{Faults, SimPack, SimPackConfig};

fn unit(address: u8) -> FramedUnit {
    FramedUnit::new(address, SimPack::new(&SimPackConfig::default()), 7)
}

/// A request written out by hand from the document: chapter 4's
/// "get analog value" of ADR 2 (its CHKSUM FD33 as printed there).
const ANALOG_REQUEST_ADR2: &[u8] = b"~20024642E00202FD33\r";

#[test]
fn frames_match_the_documents_arithmetic() {
    assert_eq!(chksum(b"1203400456ABCEFE"), 0xFC71);
    assert_eq!(lchksum(18), 0xD);
    assert_eq!(lchksum(0), 0);
    assert_eq!(reply(2, 4, &[]), b"~200246040000FDAE\r".to_vec());
    assert_eq!(
        PylonAsciiDevice::scan_request(b"xx~2002"),
        RequestScan::Junk(2)
    );
    assert_eq!(
        PylonAsciiDevice::scan_request(ANALOG_REQUEST_ADR2),
        RequestScan::Frame(ANALOG_REQUEST_ADR2.len())
    );
    assert_eq!(PylonAsciiDevice::address(ANALOG_REQUEST_ADR2), Ok(Some(2)));
}

#[test]
fn a_request_is_answered_from_the_pack() {
    let u = unit(2);
    let frames = PylonAsciiDevice::answer(&u, ANALOG_REQUEST_ADR2);
    let [frame] = frames.as_slice() else {
        panic!("one frame")
    };
    let answer = parse(frame).unwrap();
    assert_eq!((answer.address, answer.cid2), (2, 0));
    let reading = u.pack.reading();
    // Command value, 16 cells, the first cell's mV.
    assert_eq!(&answer.info[1..3], &[2, 16]);
    let mv = u16::from_be_bytes([answer.info[3], answer.info[4]]);
    assert_eq!(mv, clamp_u16(reading.cell_voltages_v.0[0] * 1000.0));
    // Five temperatures: the board and the four sensors.
    assert_eq!(answer.info[3 + 32], 5);
    // An unknown command gets RTN 04; another pack's command value 90.
    let unknown = reply(2, 0x4F, &[2]);
    assert_eq!(
        parse(&PylonAsciiDevice::answer(&u, &unknown)[0])
            .unwrap()
            .cid2,
        4
    );
    let foreign = reply(2, 0x42, &[3]);
    assert_eq!(
        parse(&PylonAsciiDevice::answer(&u, &foreign)[0])
            .unwrap()
            .cid2,
        0x90
    );
    u.pack.set_faults(Faults {
        exception: Some(0x91),
        ..Faults::default()
    });
    assert_eq!(
        parse(&PylonAsciiDevice::answer(&u, ANALOG_REQUEST_ADR2)[0])
            .unwrap()
            .cid2,
        0x91
    );
}

#[test]
fn a_bad_checksum_request_is_ignored_and_corrupt_frames_fail_their_checksum() {
    let mut bad = ANALOG_REQUEST_ADR2.to_vec();
    bad[15] = b'E';
    assert_eq!(PylonAsciiDevice::address(&bad), Err(BadRequest::Checksum));
    assert!(PylonAsciiDevice::answer(&unit(2), &bad).is_empty());
    assert_eq!(
        PylonAsciiDevice::address(b"~2002464ZE00202FD33\r"),
        Err(BadRequest::Malformed)
    );
    let mut frame = reply(2, 0, &[1, 2, 3]);
    PylonAsciiDevice::corrupt(&mut frame);
    assert_eq!(parse(&frame).err(), Some(BadRequest::Checksum));
}

#[test]
fn each_layout_answers_in_its_own_version_and_commands() {
    let u = unit(2);
    // Pace answers VER 25 whatever VER it was asked with; Seplos 20.
    let pace = PaceDevice::answer(&u, ANALOG_REQUEST_ADR2);
    assert!(pace[0].starts_with(b"~25024600"), "{:?}", pace[0]);
    let info = parse(&pace[0]).unwrap().info;
    // Flag, command value, 16 cells, six temperatures, P = 3.
    assert_eq!((info[1], info[2], info[3 + 32]), (2, 16, 6));
    assert_eq!(info[info.len() - 7], 3);
    let seplos = SeplosV2Device::answer(&u, ANALOG_REQUEST_ADR2);
    assert!(seplos[0].starts_with(b"~20024600"), "{:?}", seplos[0]);
    assert_eq!(parse(&seplos[0]).unwrap().info.len(), 75);
    // No serial number command outside Pylontech's layout; a command
    // value other than the address is a format error.
    let serial = reply(2, 0x93, &[2]);
    assert_eq!(
        parse(&SeplosV2Device::answer(&u, &serial)[0]).unwrap().cid2,
        4
    );
    assert_eq!(
        parse(&PylonAsciiDevice::answer(&u, &serial)[0])
            .unwrap()
            .cid2,
        0
    );
    let foreign = reply(2, 0x44, &[3]);
    assert_eq!(parse(&PaceDevice::answer(&u, &foreign)[0]).unwrap().cid2, 5);
    assert_eq!(
        "seplos-v2".parse::<PylonAsciiSimLayout>(),
        Ok(PylonAsciiSimLayout::SeplosV2)
    );
    assert!("seplos".parse::<PylonAsciiSimLayout>().is_err());
}

#[test]
fn alarms_and_switches_are_encoded() {
    let u = unit(2);
    u.pack.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    let reading = u.pack.advance(900.0);
    assert!(reading.alarms.contains(AlarmFlags::OVER_TEMPERATURE));
    let info = alarm_info(2, &reading);
    // 16 cell states, then 5 temperature states, 3 value states, and
    // the status bytes.
    let status = &info[3 + 16 + 1 + 5 + 3..];
    assert_eq!(status[0] & 0x60, 0x60);
    assert_eq!(status[1] & 0x06, 0, "both switches open");
    assert!(info[3 + 16 + 2..3 + 16 + 6].contains(&2));
}
