//! [`CanPackState`]: the latest value of every BMS frame with the time it
//! arrived, turned into a [`PackReading`] on demand.
//!
//! A CAN BMS is not polled: it broadcasts its frames about once a second.
//! The state keeps the last frame of each id and says, per reading, whether
//! every frame behind it arrived within the freshness window.
//!
//! # What a reading holds, and what it never invents
//!
//! - SoC and SoH from `0x355`; voltage, current and the battery
//!   temperature from `0x356`; charge / discharge enable from `0x35C`.
//!   Until each of these three has arrived once there is no reading.
//! - Alarms: the protection word of `0x359` and the alarms of `0x35A`,
//!   whichever the BMS sends; none while neither has arrived.
//! - Cells: the Pylontech frames carry no per-cell voltages. With the
//!   extended frame `0x373` the cell array is **two entries: the lowest and
//!   the highest cell voltage** (not cells 1 and 2). Without `0x373` it is
//!   **one entry: the average cell voltage**, pack voltage divided by the
//!   configured cells in series (no reading when that is 0).
//! - Temperatures: the `0x356` battery temperature first, then, with
//!   `0x373`, the lowest and the highest cell temperature.
//! - Balancing is not reported by this protocol and is always empty.
//!
//! A frame older than the window leaves its fields at their last value and
//! makes the reading [`DataQuality::Stale`]; [`CanPackState::stale_ids`]
//! says which.

use std::time::{Duration, Instant};

use embedded_can::Frame;
use packgate_protocol::{
    AlarmFlags, BalancingState, CellVoltages, DataQuality, PackReading, Temperatures, MAX_CELLS,
};

use super::pylontech::{
    decode_frame, BmsFrame, CellExtremes, FrameError, Limits, Measurements, Protection, Request,
    SmaAlarms, SocSoh,
};

/// A value and when its frame arrived.
#[derive(Debug, Clone, PartialEq)]
struct Stamped<T> {
    value: T,
    at: Instant,
}

/// The last value of every BMS frame, see the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct CanPackState {
    cells_in_series: u8,
    limits: Option<Stamped<Limits>>,
    soc_soh: Option<Stamped<SocSoh>>,
    measurements: Option<Stamped<Measurements>>,
    protection: Option<Stamped<Protection>>,
    sma_alarms: Option<Stamped<SmaAlarms>>,
    request: Option<Stamped<Request>>,
    manufacturer: Option<Stamped<String>>,
    cell_extremes: Option<Stamped<CellExtremes>>,
    last_frame_at: Option<Instant>,
    frames_decoded: u64,
    frames_rejected: u64,
}

fn stamp<T>(value: T, at: Instant) -> Option<Stamped<T>> {
    Some(Stamped { value, at })
}

impl CanPackState {
    /// An empty state for a pack of `cells_in_series` cells (used for the
    /// average cell voltage when the BMS sends no `0x373`; 0 = unknown,
    /// above 32 is taken as 32).
    pub fn new(cells_in_series: u8) -> Self {
        Self {
            cells_in_series: cells_in_series.min(MAX_CELLS as u8),
            ..Self::default()
        }
    }

    /// Decodes `frame` received at `at` and keeps its value. A frame that
    /// does not decode changes nothing but a counter, and is returned as
    /// the error.
    pub fn feed(&mut self, frame: &impl Frame, at: Instant) -> Result<(), FrameError> {
        match decode_frame(frame) {
            Ok(msg) => {
                self.apply(msg, at);
                Ok(())
            }
            Err(e) => {
                self.frames_rejected += 1;
                Err(e)
            }
        }
    }

    /// Keeps the value of an already decoded message received at `at`.
    pub fn apply(&mut self, msg: BmsFrame, at: Instant) {
        self.frames_decoded += 1;
        self.last_frame_at = Some(self.last_frame_at.map_or(at, |last| last.max(at)));
        match msg {
            BmsFrame::Limits(v) => self.limits = stamp(v, at),
            BmsFrame::SocSoh(v) => self.soc_soh = stamp(v, at),
            BmsFrame::Measurements(v) => self.measurements = stamp(v, at),
            BmsFrame::Protection(v) => self.protection = stamp(v, at),
            BmsFrame::SmaAlarms(v) => self.sma_alarms = stamp(v, at),
            BmsFrame::Request(v) => self.request = stamp(v, at),
            BmsFrame::Manufacturer(v) => self.manufacturer = stamp(v, at),
            BmsFrame::CellExtremes(v) => self.cell_extremes = stamp(v, at),
        }
    }

    /// When the newest decodable frame arrived.
    pub fn last_frame_at(&self) -> Option<Instant> {
        self.last_frame_at
    }

    /// Whether any decodable frame arrived within `window` before `now`.
    pub fn received_within(&self, now: Instant, window: Duration) -> bool {
        self.last_frame_at
            .is_some_and(|at| now.saturating_duration_since(at) <= window)
    }

    /// Frames decoded and kept so far.
    pub fn frames_decoded(&self) -> u64 {
        self.frames_decoded
    }

    /// Frames that did not decode so far.
    pub fn frames_rejected(&self) -> u64 {
        self.frames_rejected
    }

    /// The last `0x351` limits.
    pub fn limits(&self) -> Option<Limits> {
        self.limits.as_ref().map(|s| s.value)
    }

    /// The last `0x35E` manufacturer name.
    pub fn manufacturer(&self) -> Option<&str> {
        self.manufacturer.as_ref().map(|s| s.value.as_str())
    }

    /// Ids received at some point but not within `window` before `now`,
    /// ascending.
    pub fn stale_ids(&self, now: Instant, window: Duration) -> Vec<u16> {
        let stamps = [
            (0x351, self.limits.as_ref().map(|s| s.at)),
            (0x355, self.soc_soh.as_ref().map(|s| s.at)),
            (0x356, self.measurements.as_ref().map(|s| s.at)),
            (0x359, self.protection.as_ref().map(|s| s.at)),
            (0x35A, self.sma_alarms.as_ref().map(|s| s.at)),
            (0x35C, self.request.as_ref().map(|s| s.at)),
            (0x35E, self.manufacturer.as_ref().map(|s| s.at)),
            (0x373, self.cell_extremes.as_ref().map(|s| s.at)),
        ];
        stamps
            .into_iter()
            .filter_map(|(id, at)| at.map(|at| (id, at)))
            .filter(|(_, at)| now.saturating_duration_since(*at) > window)
            .map(|(id, _)| id)
            .collect()
    }

    /// The reading from the last frames, [`DataQuality::Fresh`] when every
    /// frame behind it arrived within `window` before `now`, otherwise
    /// [`DataQuality::Stale`]. `None` until `0x355`, `0x356` and `0x35C`
    /// have each arrived once (and `0x373` when cells in series is 0), and
    /// whenever the frames add up to a reading no pack can make (out of
    /// the sample rules); see the [module docs](self) for how each field
    /// is filled.
    pub fn sample(&self, now: Instant, window: Duration) -> Option<(PackReading, DataQuality)> {
        let soc_soh = self.soc_soh.as_ref()?;
        let m = self.measurements.as_ref()?;
        let request = self.request.as_ref()?;

        let (cells, mut temperatures) = (Vec::with_capacity(2), vec![m.value.temperature_c]);
        let cells = match &self.cell_extremes {
            Some(c) => {
                temperatures.extend([
                    c.value.min_cell_temperature_c,
                    c.value.max_cell_temperature_c,
                ]);
                let mut cells = cells;
                cells.extend([c.value.min_cell_v, c.value.max_cell_v]);
                cells
            }
            None if self.cells_in_series > 0 => {
                vec![m.value.pack_voltage_v / f32::from(self.cells_in_series)]
            }
            None => return None,
        };
        let alarms = [
            self.protection
                .as_ref()
                .map(|p| p.value.protection.alarm_flags()),
            self.sma_alarms.as_ref().map(|a| a.value.alarm_flags()),
        ]
        .into_iter()
        .flatten()
        .fold(AlarmFlags::NONE, AlarmFlags::union);

        let reading = PackReading {
            pack_voltage_v: m.value.pack_voltage_v,
            current_a: m.value.current_a,
            soc_pct: f32::from(soc_soh.value.soc_pct),
            soh_pct: Some(f32::from(soc_soh.value.soh_pct)),
            cell_voltages_v: CellVoltages(cells),
            temperatures_c: Temperatures(temperatures),
            balancing: BalancingState::default(),
            alarms,
            charge_enabled: request.value.charge_enable,
            discharge_enabled: request.value.discharge_enable,
        };
        // Frames that add up to a reading no pack can make give none: the
        // pack then goes stale rather than publish it.
        if reading.validate().is_err() {
            return None;
        }
        let behind = [
            Some(soc_soh.at),
            Some(m.at),
            Some(request.at),
            self.protection.as_ref().map(|s| s.at),
            self.sma_alarms.as_ref().map(|s| s.at),
            self.cell_extremes.as_ref().map(|s| s.at),
        ];
        let stale = behind
            .into_iter()
            .flatten()
            .any(|at| now.saturating_duration_since(at) > window);
        let quality = if stale {
            DataQuality::Stale
        } else {
            DataQuality::Fresh
        };
        Some((reading, quality))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::can::frame::CanFrame;

    fn f(id: u16, data: &[u8]) -> CanFrame {
        CanFrame::standard(id, data).unwrap()
    }

    const WINDOW: Duration = Duration::from_secs(2);

    fn basic(state: &mut CanPackState, at: Instant) {
        state.feed(&f(0x355, &[75, 0, 99, 0]), at).unwrap();
        state
            .feed(&f(0x356, &[0x14, 0x15, 0xE6, 0xFF, 0xF0, 0x00]), at)
            .unwrap();
        state.feed(&f(0x35C, &[0xC0]), at).unwrap();
    }

    #[test]
    fn no_reading_until_the_required_frames_arrived() {
        let t0 = Instant::now();
        let mut s = CanPackState::new(16);
        assert!(s.sample(t0, WINDOW).is_none());
        s.feed(&f(0x355, &[75, 0, 99, 0]), t0).unwrap();
        s.feed(&f(0x356, &[0x14, 0x15, 0xE6, 0xFF, 0xF0, 0x00]), t0)
            .unwrap();
        assert!(s.sample(t0, WINDOW).is_none(), "0x35C missing");
        s.feed(&f(0x35C, &[0x80]), t0).unwrap();
        let (r, q) = s.sample(t0, WINDOW).unwrap();
        assert_eq!(q, DataQuality::Fresh);
        r.validate().unwrap();
        assert_eq!(r.soc_pct, 75.0);
        assert_eq!(r.soh_pct, Some(99.0));
        assert!((r.pack_voltage_v - 53.96).abs() < 1e-3);
        assert!((r.current_a + 2.6).abs() < 1e-3);
        assert_eq!(r.temperatures_c.0.len(), 1);
        assert_eq!(r.cell_voltages_v.0.len(), 1, "average cell");
        assert!((r.cell_voltages_v.0[0] - 53.96 / 16.0).abs() < 1e-4);
        assert!(r.charge_enabled && !r.discharge_enabled);
        assert_eq!(r.alarms, AlarmFlags::NONE);
        assert_eq!(r.balancing, BalancingState(0));

        let mut unknown_cells = CanPackState::new(0);
        basic(&mut unknown_cells, t0);
        assert!(unknown_cells.sample(t0, WINDOW).is_none());
    }

    #[test]
    fn frames_adding_up_to_an_impossible_reading_give_none() {
        // Found by the can_decode fuzz target: a 0x356 of -215.04 V (and a
        // temperature of -2184.6 degC) assembled into a reading.
        let t0 = Instant::now();
        let mut s = CanPackState::new(1);
        s.feed(&f(0x355, &[71, 0, 98, 0]), t0).unwrap();
        s.feed(&f(0x356, &[0x00, 0xAC, 0x15, 0x00, 0xA8, 0xAA]), t0)
            .unwrap();
        s.feed(&f(0x35C, &[0xC0]), t0).unwrap();
        assert!(s.sample(t0, WINDOW).is_none());
        // The next good frame makes a reading again.
        s.feed(&f(0x356, &[0x14, 0x15, 0xE6, 0xFF, 0xF0, 0x00]), t0)
            .unwrap();
        let (reading, _) = s.sample(t0, WINDOW).unwrap();
        assert_eq!(reading.validate(), Ok(()));
    }

    #[test]
    fn extremes_give_min_max_cells_and_temperatures_alarms_are_merged() {
        let t0 = Instant::now();
        let mut s = CanPackState::new(0);
        basic(&mut s, t0);
        s.feed(
            &f(0x373, &[0xE4, 0x0C, 0x02, 0x0D, 0x2A, 0x01, 0x2C, 0x01]),
            t0,
        )
        .unwrap();
        s.feed(&f(0x359, &[0x08, 0, 0, 0, 1]), t0).unwrap();
        s.feed(&f(0x35A, &[0, 0, 0x10, 0, 0, 0, 0, 0]), t0).unwrap();
        let (r, q) = s.sample(t0, WINDOW).unwrap();
        assert_eq!(q, DataQuality::Fresh);
        assert_eq!(r.cell_voltages_v.0, vec![3.3, 3.33]);
        assert_eq!(r.temperatures_c.0.len(), 3);
        assert!((r.max_temperature_c() - 26.85).abs() < 1e-3);
        assert_eq!(
            r.alarms,
            AlarmFlags::OVER_TEMPERATURE.union(AlarmFlags::SHORT_CIRCUIT)
        );
    }

    #[test]
    fn a_missing_frame_makes_the_reading_stale_keeping_its_last_value() {
        let t0 = Instant::now();
        let mut s = CanPackState::new(16);
        basic(&mut s, t0);
        s.feed(&f(0x35E, b"SIM"), t0).unwrap();
        let t1 = t0 + Duration::from_secs(3);
        s.feed(&f(0x355, &[80, 0, 99, 0]), t1).unwrap();
        s.feed(&f(0x35C, &[0xC0]), t1).unwrap();
        let (r, q) = s.sample(t1, WINDOW).unwrap();
        assert_eq!(q, DataQuality::Stale);
        assert_eq!(r.soc_pct, 80.0);
        assert!((r.pack_voltage_v - 53.96).abs() < 1e-3, "last value kept");
        assert_eq!(s.stale_ids(t1, WINDOW), vec![0x356, 0x35E]);
        assert!(s.received_within(t1, WINDOW));
        assert_eq!(s.manufacturer(), Some("SIM"));

        s.feed(&f(0x356, &[0, 0x14, 0, 0, 0, 0]), t1).unwrap();
        assert_eq!(s.sample(t1, WINDOW).unwrap().1, DataQuality::Fresh);
        let later = t1 + Duration::from_secs(10);
        assert_eq!(s.sample(later, WINDOW).unwrap().1, DataQuality::Stale);
        assert!(!s.received_within(later, WINDOW));
    }

    #[test]
    fn undecodable_frames_change_nothing_but_a_counter() {
        let t0 = Instant::now();
        let mut s = CanPackState::new(16);
        assert!(s.feed(&f(0x356, &[1]), t0).is_err());
        assert!(s.feed(&f(0x123, &[1]), t0).is_err());
        assert_eq!(s.frames_rejected(), 2);
        assert_eq!(s.frames_decoded(), 0);
        assert_eq!(s.last_frame_at(), None);
        assert!(s.limits().is_none());
        s.feed(&f(0x351, &[0x30, 0x02, 0xF4, 0x01, 0xF4, 0x01]), t0)
            .unwrap();
        assert!(s.limits().is_some());
    }
}
