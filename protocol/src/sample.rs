//! One poll of one pack: the measured values and where they came from.

use serde::{Deserialize, Serialize};

use crate::ids::{BootId, PackId};

/// Most cells in series a sample can carry (a 96 V LFP pack has 32).
pub const MAX_CELLS: usize = 32;
/// Most temperature sensors a sample can carry.
pub const MAX_TEMPERATURE_SENSORS: usize = 16;

/// Largest pack voltage, volts, either sign, that any pack can read: far
/// above any battery packgate polls (a few hundred volts at most), so only
/// a broken decoder or writer exceeds it.
pub const MAX_PACK_VOLTAGE_V: f32 = 10_000.0;
/// Largest pack current, amperes, either sign.
pub const MAX_CURRENT_A: f32 = 100_000.0;
/// Range of a cell voltage, volts: no electrochemical cell reads beyond
/// 100 V, and a reversed cell reads at most a few volts below zero.
pub const CELL_VOLTAGE_RANGE_V: (f32, f32) = (-10.0, 100.0);
/// Range of a temperature, degrees Celsius: nothing reads below absolute
/// zero, and no sensor of a pack survives 1000 degrees.
pub const TEMPERATURE_RANGE_C: (f32, f32) = (-273.15, 1000.0);
/// Range of the state of charge and of health, percent.
pub const PERCENT_RANGE: (f32, f32) = (0.0, 100.0);

/// Why a sample or reading is not well-formed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    /// Cell count above [`MAX_CELLS`].
    #[error("{0} cell voltages; a sample carries at most {MAX_CELLS}")]
    CellCount(usize),
    /// Sensor count above [`MAX_TEMPERATURE_SENSORS`].
    #[error("{0} temperatures; a sample carries at most {MAX_TEMPERATURE_SENSORS}")]
    TemperatureCount(usize),
    /// A value is NaN or infinite.
    #[error("field {0} is not a finite number")]
    NotFinite(&'static str),
    /// Sequence numbers start at 1.
    #[error("sequence number 0 is reserved")]
    ZeroSequence,
    /// A sequence number beyond what a store can keep
    /// ([`MAX_STORABLE_SEQ`](crate::limits::MAX_STORABLE_SEQ)).
    #[error("sequence number {0} exceeds the largest storable one")]
    SequenceTooLarge(u64),
    /// A timestamp before the Unix epoch or after the year 9999
    /// ([`MAX_TIMESTAMP_MS`](crate::limits::MAX_TIMESTAMP_MS)).
    #[error("timestamp {0} ms is outside 0..={max}", max = crate::limits::MAX_TIMESTAMP_MS)]
    TimestampOutOfRange(i64),
    /// A value outside what a battery pack can physically read.
    #[error("field {field} = {value} is not physically possible (allowed {min}..={max})")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value.
        value: f32,
        /// Lowest value allowed.
        min: f32,
        /// Highest value allowed.
        max: f32,
    },
}

impl SampleError {
    /// The field a range error is about, `None` for a count error.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            SampleError::NotFinite(field) | SampleError::OutOfRange { field, .. } => Some(field),
            SampleError::ZeroSequence | SampleError::SequenceTooLarge(_) => Some("seq"),
            SampleError::TimestampOutOfRange(_) => Some("timestamp_ms"),
            SampleError::CellCount(_) | SampleError::TemperatureCount(_) => None,
        }
    }
}

/// Checks that `value` lies in `min..=max` (a NaN does not).
fn in_range(field: &'static str, value: f32, (min, max): (f32, f32)) -> Result<(), SampleError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(SampleError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

/// Voltages of the series cells, in volts, cell 1 first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CellVoltages(pub Vec<f32>);

impl CellVoltages {
    /// Lowest cell voltage and its 0-based index, if there is a cell.
    pub fn min_v(&self) -> Option<(usize, f32)> {
        self.0
            .iter()
            .copied()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Highest cell voltage and its 0-based index, if there is a cell.
    pub fn max_v(&self) -> Option<(usize, f32)> {
        self.0
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// Temperatures of the pack's sensors, in degrees Celsius.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Temperatures(pub Vec<f32>);

impl Temperatures {
    /// Highest temperature, if there is a sensor.
    pub fn max_c(&self) -> Option<f32> {
        self.0.iter().copied().max_by(f32::total_cmp)
    }
}

/// Which cells are being bled by the balancer: bit `n` is cell `n + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BalancingState(pub u32);

impl BalancingState {
    /// Whether the balancer bleeds the 0-based cell `index`.
    pub fn is_balancing(self, index: usize) -> bool {
        index < 32 && self.0 & (1 << index) != 0
    }

    /// Number of cells being balanced.
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }
}

/// Protection and alarm flags raised by the BMS.
///
/// A bit set means the condition is active now. Drivers map each BMS's own
/// bits onto these; a condition the BMS does not report stays clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub struct AlarmFlags(pub u32);

macro_rules! alarm_flags {
    ($($(#[$doc:meta])* $name:ident = $bit:expr, $text:literal;)*) => {
        impl AlarmFlags {
            $($(#[$doc])* pub const $name: AlarmFlags = AlarmFlags(1 << $bit);)*
            /// Every named flag with its stable text name.
            pub const ALL: &'static [(AlarmFlags, &'static str)] = &[$((AlarmFlags::$name, $text)),*];
        }
    };
}

alarm_flags! {
    /// A cell is above its over-voltage limit.
    CELL_OVER_VOLTAGE = 0, "cell_over_voltage";
    /// A cell is below its under-voltage limit.
    CELL_UNDER_VOLTAGE = 1, "cell_under_voltage";
    /// The pack voltage is above its limit.
    PACK_OVER_VOLTAGE = 2, "pack_over_voltage";
    /// The pack voltage is below its limit.
    PACK_UNDER_VOLTAGE = 3, "pack_under_voltage";
    /// Charge current above its limit.
    CHARGE_OVER_CURRENT = 4, "charge_over_current";
    /// Discharge current above its limit.
    DISCHARGE_OVER_CURRENT = 5, "discharge_over_current";
    /// A temperature is above its limit.
    OVER_TEMPERATURE = 6, "over_temperature";
    /// A temperature is below its limit.
    UNDER_TEMPERATURE = 7, "under_temperature";
    /// Short circuit protection tripped.
    SHORT_CIRCUIT = 8, "short_circuit";
    /// Cell voltages spread further than allowed.
    CELL_IMBALANCE = 9, "cell_imbalance";
    /// The BMS reports an internal fault.
    BMS_FAULT = 10, "bms_fault";
}

impl AlarmFlags {
    /// No alarm.
    pub const NONE: AlarmFlags = AlarmFlags(0);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: AlarmFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Both sets together.
    pub fn union(self, other: AlarmFlags) -> AlarmFlags {
        AlarmFlags(self.0 | other.0)
    }

    /// Flags set here and not in `other`.
    pub fn difference(self, other: AlarmFlags) -> AlarmFlags {
        AlarmFlags(self.0 & !other.0)
    }

    /// The names of the set flags, `bit_N` for a bit without a name.
    pub fn names(self) -> Vec<String> {
        (0..32)
            .filter(|bit| self.0 & (1 << bit) != 0)
            .map(|bit| {
                AlarmFlags::ALL
                    .iter()
                    .find(|(flag, _)| flag.0 == 1 << bit)
                    .map_or_else(|| format!("bit_{bit}"), |(_, name)| (*name).to_owned())
            })
            .collect()
    }
}

/// Whether a sample holds values read in this poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DataQuality {
    /// Read from the pack in this poll.
    #[default]
    Fresh,
    /// The pack did not answer this poll: the values are the last ones it
    /// gave (or, for CAN, fields whose frames did not arrive are old).
    Stale,
    /// Read in this poll, but the values are not believable (a cell
    /// outside 0.5-5 V, a current past the pack's maximum, a pack voltage
    /// far from the sum of its cells): a misread map or a failing BMS.
    /// Stored for the record; never taken as a fresh reading.
    Suspect,
}

impl DataQuality {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DataQuality::Fresh => "fresh",
            DataQuality::Stale => "stale",
            DataQuality::Suspect => "suspect",
        }
    }
}

/// Whether the wall clock that stamped a sample's `timestamp_ms` is
/// believed; sequence numbers keep the order regardless.
///
/// A box without a real-time clock boots in the past until NTP syncs, and
/// an NTP step moves the clock by any amount: the collector marks the
/// samples it stamps while it reads before a sane epoch, or just after it
/// saw the clock jump, as [`ClockQuality::Untrusted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub enum ClockQuality {
    /// The wall clock is believed.
    #[default]
    Trusted,
    /// The wall clock read before a sane epoch, or jumped lately: the
    /// timestamp may be far off; order by `seq`, not by time.
    Untrusted,
}

impl ClockQuality {
    /// Stable lower-case name (`ok` or `untrusted`).
    pub fn as_str(self) -> &'static str {
        match self {
            ClockQuality::Trusted => "ok",
            ClockQuality::Untrusted => "untrusted",
        }
    }

    /// Whether the clock is believed.
    pub fn is_trusted(self) -> bool {
        self == ClockQuality::Trusted
    }
}

/// What a BMS reports in one poll, independent of who polled it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PackReading {
    /// Pack terminal voltage, volts.
    pub pack_voltage_v: f32,
    /// Pack current, amperes: positive while charging, negative while
    /// discharging.
    pub current_a: f32,
    /// State of charge, percent (0..=100).
    pub soc_pct: f32,
    /// State of health, percent (0..=100); `None` where the BMS does not
    /// report it (JBD, Daly, JK, Pylontech's RS-485 protocol), never a
    /// made-up number.
    pub soh_pct: Option<f32>,
    /// Series cell voltages.
    pub cell_voltages_v: CellVoltages,
    /// Temperature sensor readings.
    pub temperatures_c: Temperatures,
    /// Cells being balanced.
    pub balancing: BalancingState,
    /// Active protection and alarm conditions.
    pub alarms: AlarmFlags,
    /// Whether the BMS allows charging (its charge switch is closed).
    pub charge_enabled: bool,
    /// Whether the BMS allows discharging.
    pub discharge_enabled: bool,
}

impl PackReading {
    /// Lowest cell voltage, volts (0 when no cell is reported).
    pub fn min_cell_v(&self) -> f32 {
        self.cell_voltages_v.min_v().map_or(0.0, |(_, v)| v)
    }

    /// Highest cell voltage, volts (0 when no cell is reported).
    pub fn max_cell_v(&self) -> f32 {
        self.cell_voltages_v.max_v().map_or(0.0, |(_, v)| v)
    }

    /// Highest temperature, degrees Celsius (0 when no sensor is reported).
    pub fn max_temperature_c(&self) -> f32 {
        self.temperatures_c.max_c().unwrap_or(0.0)
    }

    /// Checks the counts (an empty list: the device reports none), that
    /// every value is a finite number, and that each is physically
    /// possible (see [`MAX_PACK_VOLTAGE_V`] and the other bounds).
    pub fn validate(&self) -> Result<(), SampleError> {
        let cells = self.cell_voltages_v.0.len();
        if cells > MAX_CELLS {
            return Err(SampleError::CellCount(cells));
        }
        let sensors = self.temperatures_c.0.len();
        if sensors > MAX_TEMPERATURE_SENSORS {
            return Err(SampleError::TemperatureCount(sensors));
        }
        let scalars = [
            ("pack_voltage_v", self.pack_voltage_v),
            ("current_a", self.current_a),
            ("soc_pct", self.soc_pct),
            ("soh_pct", self.soh_pct.unwrap_or(0.0)),
        ];
        for (name, value) in scalars {
            if !value.is_finite() {
                return Err(SampleError::NotFinite(name));
            }
        }
        if !self.cell_voltages_v.0.iter().all(|v| v.is_finite()) {
            return Err(SampleError::NotFinite("cell_voltages_v"));
        }
        if !self.temperatures_c.0.iter().all(|v| v.is_finite()) {
            return Err(SampleError::NotFinite("temperatures_c"));
        }
        self.check_physical()
    }

    /// The bounds no real pack can break.
    fn check_physical(&self) -> Result<(), SampleError> {
        in_range(
            "pack_voltage_v",
            self.pack_voltage_v,
            (-MAX_PACK_VOLTAGE_V, MAX_PACK_VOLTAGE_V),
        )?;
        in_range("current_a", self.current_a, (-MAX_CURRENT_A, MAX_CURRENT_A))?;
        in_range("soc_pct", self.soc_pct, PERCENT_RANGE)?;
        if let Some(soh) = self.soh_pct {
            in_range("soh_pct", soh, PERCENT_RANGE)?;
        }
        for &v in &self.cell_voltages_v.0 {
            in_range("cell_voltages_v", v, CELL_VOLTAGE_RANGE_V)?;
        }
        for &t in &self.temperatures_c.0 {
            in_range("temperatures_c", t, TEMPERATURE_RANGE_C)?;
        }
        Ok(())
    }
}

/// One poll of one pack, stamped with who and when.
///
/// `(pack_id, boot_id, seq)` is unique and orders the samples of a pack
/// within one collector run; it is the de-duplication id on the stream and
/// the unique key in every store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The pack polled.
    pub pack_id: PackId,
    /// The collector run that polled it.
    pub boot_id: BootId,
    /// Per-pack sequence number within the run, from 1, no gaps.
    pub seq: u64,
    /// Wall-clock time of the poll, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Whether the values were read in this poll.
    pub quality: DataQuality,
    /// The values.
    pub reading: PackReading,
    /// Whether the wall clock that stamped `timestamp_ms` is believed;
    /// sequence numbers keep the order regardless.
    #[serde(default)]
    pub clock: ClockQuality,
}

impl Sample {
    /// The de-duplication id: `pack:boot:seq`.
    pub fn msg_id(&self) -> String {
        format!("{}:{}:{}", self.pack_id, self.boot_id, self.seq)
    }

    /// Checks the reading and the sequence number (from 1, and storable).
    pub fn validate(&self) -> Result<(), SampleError> {
        if self.seq == 0 {
            return Err(SampleError::ZeroSequence);
        }
        if self.seq > crate::limits::MAX_STORABLE_SEQ {
            return Err(SampleError::SequenceTooLarge(self.seq));
        }
        if !(0..=crate::limits::MAX_TIMESTAMP_MS).contains(&self.timestamp_ms) {
            return Err(SampleError::TimestampOutOfRange(self.timestamp_ms));
        }
        self.reading.validate()
    }
}

#[cfg(test)]
#[path = "sample_bounds_tests.rs"]
mod bounds_tests;

#[cfg(test)]
#[path = "sample_tests.rs"]
mod tests;
