//! The Seplos V2 and Pace layouts of the Pylontech-style protocol end to
//! end on a real pseudo-terminal pair: the simulator's BMSs at several
//! addresses on one line, one `PylonAsciiDriver` per pack in the line's
//! layout; a dead unit leaves the others answering; a pack read in
//! another layout than it speaks is refused, naming its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod framed_line;

use framed_line::{assert_matches, pack, Line, Resolution, REQUEST_TIMEOUT};
use packgate_drivers::bms::pylon_ascii::{PylonAsciiDriver, PylonAsciiLayout};
use packgate_drivers::bms::{FrameErrorKind, SerialFrameLink};
use packgate_drivers::{BusLink, DriverError, PackDriver};
use packgate_protocol::{DataQuality, PackId, PackReading};
use packgate_sim::serve::framed::{FramedDevice, FramedUnit};
use packgate_sim::serve::{PaceDevice, PylonAsciiDevice, SeplosV2Device};
use packgate_sim::{Faults, LoadProfile, SimPack, SimPackConfig};

/// Seplos: 10 mA, 10 mV, SoC in 0.1 %.
const SEPLOS: Resolution = Resolution {
    pack_voltage_v: 0.01,
    current_a: 0.01,
    soc_pct: 0.1,
    cell_v: 0.001,
    temperature_c: 0.1,
};

/// Pace: 10 mA, 1 mV, SoC from capacities in 10 mAh of 100 Ah.
const PACE: Resolution = Resolution {
    pack_voltage_v: 0.001,
    current_a: 0.01,
    soc_pct: 0.02,
    cell_v: 0.001,
    temperature_c: 0.1,
};

/// Packs at `first`, `first + 1`...: charging, discharging, resting.
fn units(first: u8, count: u8) -> Vec<FramedUnit> {
    let currents = [12.34, -7.71, 0.0];
    (0..count)
        .map(|i| {
            let seed = u64::from(i) + 1;
            FramedUnit::new(first + i, pack(currents[usize::from(i) % 3], seed), seed)
        })
        .collect()
}

/// A pack charging near full, its top cells bled by the balancer.
fn balancing_pack(seed: u64) -> SimPack {
    let config = SimPackConfig {
        load: LoadProfile::Constant { current_a: 20.0 },
        initial_soc_pct: 97.0,
        ..SimPackConfig::default()
    }
    .for_pack_index(seed);
    let pack = SimPack::new(&config);
    pack.advance(1.0);
    pack
}

fn driver(unit: &FramedUnit, layout: PylonAsciiLayout) -> PylonAsciiDriver {
    let id = PackId::new(format!("{layout}-{}", unit.address)).unwrap();
    PylonAsciiDriver::with_layout(id, unit.address, layout)
}

async fn read(d: &mut PylonAsciiDriver, link: &mut SerialFrameLink) -> PackReading {
    let polled = d.poll(link).await.unwrap().unwrap();
    assert_eq!(polled.quality, DataQuality::Fresh);
    assert_eq!(polled.serial_number, None, "neither layout sends one");
    polled.reading
}

/// Four packs on one line, one of them hot (protections, switches open)
/// and one balancing; every field read as the simulator holds it.
async fn several_units_read_as_held<D: FramedDevice>(
    layout: PylonAsciiLayout,
    first: u8,
    r: Resolution,
) {
    let mut units = units(first, 3);
    units.push(FramedUnit::new(first + 3, balancing_pack(9), 9));
    assert_ne!(units[3].pack.reading().balancing.0, 0, "a pack balances");
    units[2].pack.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    units[2].pack.advance(900.0);
    let mut line = Line::start::<D>(&units);
    let mut drivers: Vec<_> = units.iter().map(|u| driver(u, layout)).collect();
    for _ in 0..2 {
        for (d, unit) in drivers.iter_mut().zip(&units) {
            let polled = read(d, &mut line.link).await;
            let held = unit.pack.reading();
            // Balancing: Seplos reports it, Pace's sources disagree.
            assert_matches(&polled, &held, r, layout == PylonAsciiLayout::SeplosV2);
            match layout {
                PylonAsciiLayout::SeplosV2 => {
                    let soh = polled.soh_pct.unwrap();
                    assert!((soh - held.soh_pct.unwrap()).abs() <= 0.1 + 1e-4);
                }
                _ => assert_eq!(polled.soh_pct, None, "Pace sends no SoH"),
            }
        }
    }
    let hot = units[2].pack.reading();
    assert!(!hot.alarms.is_empty() && !hot.charge_enabled && !hot.discharge_enabled);
    assert!(units[0].pack.reading().current_a > 12.0);
    assert!(units[1].pack.reading().current_a < -7.0);
    // 0x42 and 0x44 each poll, nothing else.
    let counts = line.link.error_counts().unwrap();
    assert_eq!((counts.requests, counts.errors()), (16, 0));
    line.stop().await;
}

#[tokio::test]
async fn seplos_packs_on_one_line_read_as_the_simulator_holds_them() {
    several_units_read_as_held::<SeplosV2Device>(PylonAsciiLayout::SeplosV2, 0, SEPLOS).await;
}

#[tokio::test]
async fn pace_packs_on_one_line_read_as_the_simulator_holds_them() {
    several_units_read_as_held::<PaceDevice>(PylonAsciiLayout::Pace, 1, PACE).await;
}

/// A silent unit times out alone; the others keep answering.
async fn a_dead_unit_leaves_the_others<D: FramedDevice>(
    layout: PylonAsciiLayout,
    first: u8,
    r: Resolution,
) {
    let units = units(first, 3);
    let mut line = Line::start::<D>(&units);
    let mut drivers: Vec<_> = units.iter().map(|u| driver(u, layout)).collect();
    units[1].pack.set_faults(Faults {
        unresponsive: true,
        ..Faults::default()
    });
    for _ in 0..2 {
        for (i, (d, unit)) in drivers.iter_mut().zip(&units).enumerate() {
            if i == 1 {
                assert_eq!(
                    d.poll(&mut line.link).await,
                    Err(DriverError::Timeout(REQUEST_TIMEOUT))
                );
            } else {
                let polled = read(d, &mut line.link).await;
                let seplos = layout == PylonAsciiLayout::SeplosV2;
                assert_matches(&polled, &unit.pack.reading(), r, seplos);
            }
        }
    }
    assert_eq!(line.link.error_counts().unwrap().timeouts, 2);
    line.stop().await;
}

#[tokio::test]
async fn a_dead_seplos_unit_leaves_the_others_answering() {
    a_dead_unit_leaves_the_others::<SeplosV2Device>(PylonAsciiLayout::SeplosV2, 0, SEPLOS).await;
}

#[tokio::test]
async fn a_dead_pace_unit_leaves_the_others_answering() {
    a_dead_unit_leaves_the_others::<PaceDevice>(PylonAsciiLayout::Pace, 1, PACE).await;
}

/// The error of reading a pack that speaks one layout in another.
async fn refusal<D: FramedDevice>(configured: PylonAsciiLayout) -> String {
    let units = units(1, 1);
    let mut line = Line::start::<D>(&units);
    let mut d = driver(&units[0], configured);
    let err = d.poll(&mut line.link).await.unwrap_err();
    let DriverError::Frame(e) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(e.kind(), FrameErrorKind::Unexpected);
    line.stop().await;
    err.to_string()
}

#[tokio::test]
async fn a_pack_read_in_another_layout_is_refused_naming_its_own() {
    let e = refusal::<SeplosV2Device>(PylonAsciiLayout::Pylontech).await;
    assert!(
        e.contains("user-defined count 10: this looks like a Seplos V2 pack, not Pylontech; set layout = \"seplos_v2\""),
        "{e}"
    );
    let e = refusal::<PylonAsciiDevice>(PylonAsciiLayout::SeplosV2).await;
    assert!(
        e.contains("user-defined count 4: this looks like a Pylontech pack, not Seplos V2; set layout = \"pylontech\""),
        "{e}"
    );
    let e = refusal::<PaceDevice>(PylonAsciiLayout::Pylontech).await;
    assert!(e.contains("set layout = \"pace\""), "{e}");
    let e = refusal::<PaceDevice>(PylonAsciiLayout::SeplosV2).await;
    assert!(e.contains("Pace pack, not Seplos V2"), "{e}");
    let e = refusal::<SeplosV2Device>(PylonAsciiLayout::Pace).await;
    assert!(e.contains("Seplos V2 pack, not Pace"), "{e}");
}
