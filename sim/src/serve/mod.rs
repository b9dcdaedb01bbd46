//! The simulator served as real devices: Modbus RTU on a serial line (or a
//! pty) and Modbus TCP, several packs (units) behind one endpoint, each
//! with its own injected [`Faults`](crate::Faults).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::rng::Rng;
use crate::SimPack;

pub mod can_frames;
pub mod daly;
pub mod framed;
pub mod jbd;
pub mod jk;
pub mod modbus_rtu;
pub mod modbus_tcp;
pub mod pylon_ascii;
pub mod pylon_ascii_layouts;
pub mod registers;
pub mod slcan;
pub mod sunspec;

pub use daly::DalyDevice;
pub use jbd::JbdDevice;
pub use jk::JkDevice;
pub use modbus_rtu::{serve_modbus_rtu, RtuServerOptions};
pub use modbus_tcp::serve_modbus_tcp;
pub use pylon_ascii::{PaceDevice, PylonAsciiDevice, PylonAsciiSimLayout, SeplosV2Device};
pub use slcan::{serve_slcan, serve_slcan_with, SlcanServerOptions};
/// The shutdown signal every server takes, re-exported so callers need no
/// tokio-util dependency of their own.
pub use tokio_util::sync::CancellationToken;

use crate::model::{CHARGE_CURRENT_LIMIT_A, DISCHARGE_CURRENT_LIMIT_A};
use registers::Request;
pub use sunspec::SunSpecLayout;

/// One simulated pack behind a Modbus unit id.
#[derive(Debug, Clone)]
pub struct SimUnit {
    /// The Modbus unit (slave) id, 1 to 247.
    pub unit_id: u8,
    /// The pack.
    pub pack: SimPack,
    /// The serial number the pack reports (registers 11-12).
    pub serial_number: u32,
    /// Served as a SunSpec battery in this layout instead of the
    /// "packgate-sim" register map; `None` for that map.
    pub sunspec: Option<SunSpecLayout>,
}

impl SimUnit {
    /// The pack built with `seed` behind `unit_id`; its serial number is
    /// derived from the seed (see [`registers::serial_number_from_seed`]).
    pub fn new(unit_id: u8, pack: SimPack, seed: u64) -> Self {
        Self {
            unit_id,
            pack,
            serial_number: registers::serial_number_from_seed(seed),
            sunspec: None,
        }
    }

    /// The same unit served as a SunSpec battery in `layout`.
    pub fn with_sunspec(mut self, layout: SunSpecLayout) -> Self {
        self.sunspec = Some(layout);
        self
    }
}

/// Counters of a device server, shared by its clones (clone one before
/// handing it to a server to read it while the server runs).
#[derive(Debug, Clone, Default)]
pub struct ServerStats {
    inner: Arc<StatsInner>,
}

#[derive(Debug, Default)]
struct StatsInner {
    requests: AtomicU64,
    crc_errors: AtomicU64,
    malformed: AtomicU64,
    exceptions: AtomicU64,
}

impl ServerStats {
    /// Requests addressed to a served unit (or broadcast) and handled.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// RTU frames dropped for a bad CRC.
    pub fn crc_errors(&self) -> u64 {
        self.inner.crc_errors.load(Ordering::Relaxed)
    }

    /// Frames dropped as too short or badly framed.
    pub fn malformed(&self) -> u64 {
        self.inner.malformed.load(Ordering::Relaxed)
    }

    /// Exception responses sent.
    pub fn exceptions(&self) -> u64 {
        self.inner.exceptions.load(Ordering::Relaxed)
    }

    pub(crate) fn count_request(&self) {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_crc_error(&self) {
        self.inner.crc_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_malformed(&self) {
        self.inner.malformed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_exception(&self) {
        self.inner.exceptions.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a unit sends back for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Nothing (unresponsive, or a broadcast).
    Silent,
    /// A response PDU (an exception response included).
    Pdu(Vec<u8>),
    /// Random bytes, sent as they are instead of a framed response.
    Garbage(Vec<u8>),
}

/// Serves `pdu` for `unit` under its faults: waits the configured delay,
/// stays silent, answers garbage or an injected exception, or serves the
/// request against the pack. Writes change the pack through
/// [`SimPack::apply_setting`]; reads advance its model to now first.
pub(crate) async fn answer(
    unit: &SimUnit,
    pdu: &[u8],
    rng: &mut Rng,
    stats: &ServerStats,
) -> Answer {
    let faults = unit.pack.faults();
    if faults.unresponsive {
        return Answer::Silent;
    }
    if faults.response_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.response_delay_ms)).await;
    }
    stats.count_request();
    if faults.garbage {
        let len = 4 + (rng.next_u64() % 13) as usize;
        return Answer::Garbage((0..len).map(|_| rng.next_u64() as u8).collect());
    }
    let function = pdu.first().copied().unwrap_or(0);
    let response = match faults.exception {
        Some(code) => registers::exception_response(function, code),
        None => serve_pdu(unit, pdu),
    };
    if response.first().is_some_and(|fc| fc & 0x80 != 0) {
        stats.count_exception();
    }
    Answer::Pdu(response)
}

/// Serves one request PDU against the pack, without faults: the response
/// PDU, or an exception response.
pub(crate) fn serve_pdu(unit: &SimUnit, pdu: &[u8]) -> Vec<u8> {
    let function = pdu.first().copied().unwrap_or(0);
    let result = registers::parse_request(pdu).and_then(|request| match request {
        Request::Read {
            function,
            start,
            count,
        } => {
            let reading = unit.pack.advance_to(tokio::time::Instant::now().into_std());
            if let Some(layout) = unit.sunspec {
                let image = sunspec::SunSpecImage::encode(&reading, unit.serial_number, layout);
                return Ok(registers::read_response(
                    function,
                    &image.read(start, count)?,
                ));
            }
            let [charge, discharge] = [CHARGE_CURRENT_LIMIT_A, DISCHARGE_CURRENT_LIMIT_A]
                .map(|name| unit.pack.setting(name).unwrap_or(0.0));
            let image =
                registers::RegisterImage::encode(&reading, charge, discharge, unit.serial_number);
            Ok(registers::read_response(
                function,
                &image.read(start, count)?,
            ))
        }
        Request::Write { .. } if unit.sunspec.is_some() => {
            Err(registers::EXCEPTION_ILLEGAL_DATA_ADDRESS)
        }
        Request::Write {
            function,
            start,
            values,
        } => {
            apply_writes(&unit.pack, &registers::setting_writes(start, &values)?)?;
            Ok(registers::write_response(function, start, &values))
        }
    });
    result.unwrap_or_else(|code| registers::exception_response(function, code))
}

/// Applies every write, or none: a refused value undoes the ones before
/// it and gives "illegal data value".
fn apply_writes(pack: &SimPack, writes: &[(&'static str, f64)]) -> Result<(), u8> {
    let before: Vec<Option<f64>> = writes.iter().map(|(name, _)| pack.setting(name)).collect();
    for (i, (name, value)) in writes.iter().enumerate() {
        if pack.apply_setting(name, *value).is_err() {
            for ((name, _), old) in writes.iter().zip(&before).take(i) {
                if let Some(old) = old {
                    // Restoring a value the pack held before cannot fail.
                    let _ = pack.apply_setting(name, *old);
                }
            }
            return Err(registers::EXCEPTION_ILLEGAL_DATA_VALUE);
        }
    }
    Ok(())
}

/// Applies a broadcast (unit 0) request to every unit: writes only, no
/// answer. Unresponsive units miss it.
pub(crate) fn apply_broadcast(units: &[SimUnit], pdu: &[u8], stats: &ServerStats) {
    if !matches!(registers::parse_request(pdu), Ok(Request::Write { .. })) {
        return;
    }
    stats.count_request();
    for unit in units.iter().filter(|u| !u.pack.faults().unresponsive) {
        let _ = serve_pdu(unit, pdu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Faults, SimPackConfig};

    fn unit() -> SimUnit {
        SimUnit::new(1, SimPack::new(&SimPackConfig::default()), 3)
    }

    #[test]
    fn reads_and_writes_are_served_against_the_pack() {
        let u = unit();
        let response = serve_pdu(&u, &[3, 0, 4, 0, 2]);
        assert_eq!(response, vec![3, 4, 0, 16, 0, 4]);
        assert_eq!(
            serve_pdu(&u, &[16, 0, 100, 0, 2, 4, 0, 150, 0, 200]),
            vec![16, 0, 100, 0, 2]
        );
        assert_eq!(u.pack.setting(CHARGE_CURRENT_LIMIT_A), Some(15.0));
        assert_eq!(u.pack.setting(DISCHARGE_CURRENT_LIMIT_A), Some(20.0));
        assert_eq!(serve_pdu(&u, &[3, 0, 100, 0, 1]), vec![3, 2, 0, 150]);
        // 2100 A is past the pack's range: refused, nothing changed.
        assert_eq!(
            serve_pdu(&u, &[16, 0, 100, 0, 2, 4, 0, 1, 0x52, 0x08]),
            vec![0x90, 3]
        );
        assert_eq!(u.pack.setting(CHARGE_CURRENT_LIMIT_A), Some(15.0));
        assert_eq!(serve_pdu(&u, &[6, 0, 5, 0, 1]), vec![0x86, 2]);
        assert_eq!(serve_pdu(&u, &[3, 0, 64, 0, 1]), vec![0x83, 2]);
        assert_eq!(serve_pdu(&u, &[0x2B, 0, 0]), vec![0xAB, 1]);
    }

    #[tokio::test]
    async fn faults_shape_the_answer() {
        let u = unit();
        let stats = ServerStats::default();
        let mut rng = Rng::new(1, 2);
        u.pack.set_faults(Faults {
            exception: Some(4),
            ..Faults::default()
        });
        assert_eq!(
            answer(&u, &[3, 0, 0, 0, 1], &mut rng, &stats).await,
            Answer::Pdu(vec![0x83, 4])
        );
        u.pack.set_faults(Faults {
            garbage: true,
            ..Faults::default()
        });
        assert!(matches!(
            answer(&u, &[3, 0, 0, 0, 1], &mut rng, &stats).await,
            Answer::Garbage(bytes) if bytes.len() >= 4
        ));
        u.pack.set_faults(Faults {
            unresponsive: true,
            ..Faults::default()
        });
        assert_eq!(
            answer(&u, &[3, 0, 0, 0, 1], &mut rng, &stats).await,
            Answer::Silent
        );
        assert_eq!((stats.requests(), stats.exceptions()), (2, 1));
    }

    #[test]
    fn broadcast_writes_reach_every_responsive_unit() {
        let a = unit();
        let b = SimUnit::new(2, SimPack::new(&SimPackConfig::default()), 4);
        b.pack.set_faults(Faults {
            unresponsive: true,
            ..Faults::default()
        });
        let stats = ServerStats::default();
        apply_broadcast(&[a.clone(), b.clone()], &[6, 0, 100, 0, 70], &stats);
        assert_eq!(a.pack.setting(CHARGE_CURRENT_LIMIT_A), Some(7.0));
        assert_eq!(b.pack.setting(CHARGE_CURRENT_LIMIT_A), Some(100.0));
        apply_broadcast(std::slice::from_ref(&a), &[3, 0, 0, 0, 1], &stats);
        assert_eq!(stats.requests(), 1);
    }
}
