//! A SunSpec battery on a [`ModbusLink`]: the marker probed at the
//! configured bases, the model chain walked header by header, then models
//! 802 (and 803 where present) read where the chain put them on every
//! poll. The models are looked for again on the first poll, after the link
//! reconnected, and after any failed poll (a decode failure included).

use packgate_protocol::{DataQuality, PackReading};

use super::link::ModbusLink;
use crate::profile::ReadFunction;
use crate::sunspec::chain::{self, BatteryModels, ChainWalk, ModelEntry, ModelMap, Step};
use crate::sunspec::{decode, serial_number, DiscoveryError, DEFAULT_BASES};
use crate::{DriverError, DriverResult, Polled};

/// Most registers one Modbus read may ask for.
const MAX_READ: u16 = 125;
/// Registers read of model 803: its fixed part (the string groups after it
/// are not used).
const BANK_FIXED_LEN: u16 = 26;
/// Requests a poll may take when it has to discover the models first: the
/// bases probed, a few headers, the models.
pub const SUNSPEC_POLL_REQUESTS: usize = 16;

/// How a SunSpec battery is found and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SunSpecOptions {
    /// Addresses where the "SunS" marker is looked for, in order.
    pub bases: Vec<u16>,
    /// Flip the sign of the current when `ChaSt` does not tell the
    /// direction (see [`crate::sunspec::SunSpecReading::reading`]).
    pub invert_current: bool,
}

impl Default for SunSpecOptions {
    /// The bases 40000, 0, 50000; the device's sign.
    fn default() -> Self {
        Self {
            bases: DEFAULT_BASES.to_vec(),
            invert_current: false,
        }
    }
}

/// The models found on the device, and over which connection.
#[derive(Debug, Clone, PartialEq)]
struct Located {
    models: BatteryModels,
    serial_number: Option<String>,
    opens: u64,
}

/// The SunSpec state of one pack: its options and the models found.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SunSpecReader {
    options: SunSpecOptions,
    located: Option<Located>,
}

/// Reads `count` registers from `start`, in reads of at most 125.
async fn read_span(
    link: &mut ModbusLink,
    unit: u8,
    start: u16,
    count: u16,
) -> DriverResult<Vec<u16>> {
    let mut out = Vec::with_capacity(usize::from(count));
    let mut done = 0u16;
    while done < count {
        let n = (count - done).min(MAX_READ);
        let at = start.checked_add(done).ok_or_else(|| {
            DriverError::Protocol(format!("registers {start}+{count} pass 65535"))
        })?;
        match link
            .read_registers(unit, ReadFunction::Holding, at, n)
            .await?
        {
            Ok(regs) => out.extend(regs),
            Err(exception) => return Ok(Err(exception)),
        }
        done += n;
    }
    Ok(Ok(out))
}

/// Finds the marker at one of `bases` and walks the chain: the model map,
/// or why there is none. A base the device refuses is skipped; a header it
/// refuses breaks the chain.
pub async fn scan(
    link: &mut ModbusLink,
    unit: u8,
    bases: &[u16],
) -> Result<Result<ModelMap, DiscoveryError>, DriverError> {
    let mut found = None;
    for &base in bases {
        if let Ok(regs) = link
            .read_registers(unit, ReadFunction::Holding, base, 2)
            .await?
        {
            if chain::is_marker(&regs) {
                found = Some(base);
                break;
            }
        }
    }
    let Some(base) = found else {
        return Ok(Err(DiscoveryError::NoMarker(bases.to_vec())));
    };
    let mut walk = ChainWalk::new(base);
    loop {
        let header = match link
            .read_registers(unit, ReadFunction::Holding, walk.next_header(), 2)
            .await?
        {
            Ok(regs) if regs.len() == 2 => regs,
            _ => return Ok(Err(walk.broken())),
        };
        match walk.push_header(header[0], header[1]) {
            Ok(Step::Next(_)) => {}
            Ok(Step::Done(map)) => return Ok(Ok(map)),
            Err(e) => return Ok(Err(e)),
        }
    }
}

fn protocol(unit: u8, what: impl std::fmt::Display) -> DriverError {
    DriverError::Protocol(format!("SunSpec unit {unit}: {what}"))
}

/// The registers of `model`'s body, at most `limit` of them.
async fn read_body(
    link: &mut ModbusLink,
    unit: u8,
    model: ModelEntry,
    limit: u16,
) -> DriverResult<Vec<u16>> {
    read_span(link, unit, model.body(), model.length.min(limit)).await
}

impl SunSpecReader {
    /// A reader with `options`; nothing located yet.
    pub(super) fn new(options: SunSpecOptions) -> Self {
        Self {
            options,
            located: None,
        }
    }

    /// The options.
    pub(super) fn options(&self) -> &SunSpecOptions {
        &self.options
    }

    async fn discover(&self, link: &mut ModbusLink, unit: u8) -> DriverResult<Located> {
        let map = scan(link, unit, &self.options.bases)
            .await?
            .map_err(|e| protocol(unit, e))?;
        let models = chain::battery_models(&map).map_err(|e| protocol(unit, e))?;
        let serial_number = match models.common {
            Some(common) => match read_body(link, unit, common, 66).await? {
                Ok(body) => serial_number(&body),
                Err(exception) => return Ok(Err(exception)),
            },
            None => None,
        };
        Ok(Ok(Located {
            models,
            serial_number,
            opens: link.error_counts().opens,
        }))
    }

    async fn read_models(
        &self,
        link: &mut ModbusLink,
        unit: u8,
        located: &Located,
    ) -> DriverResult<(PackReading, Option<String>)> {
        let battery = match read_body(link, unit, located.models.battery, MAX_READ).await? {
            Ok(regs) => regs,
            Err(exception) => return Ok(Err(exception)),
        };
        let bank = match located.models.bank {
            Some(bank) => match read_body(link, unit, bank, BANK_FIXED_LEN).await? {
                Ok(regs) => Some(regs),
                Err(exception) => return Ok(Err(exception)),
            },
            None => None,
        };
        let read = decode(&battery, bank.as_deref(), None).map_err(|e| protocol(unit, e))?;
        let reading = read
            .reading(self.options.invert_current)
            .map_err(|e| protocol(unit, e))?;
        Ok(Ok((reading, located.serial_number.clone())))
    }

    /// One poll: the models located if need be, then read and decoded.
    /// Any failure forgets the models, so the next poll looks again.
    pub(super) async fn poll(&mut self, link: &mut ModbusLink, unit: u8) -> DriverResult<Polled> {
        let result = self.poll_once(link, unit).await;
        if !matches!(result, Ok(Ok(_))) {
            self.located = None;
        }
        result
    }

    async fn poll_once(&mut self, link: &mut ModbusLink, unit: u8) -> DriverResult<Polled> {
        for _ in 0..2 {
            let located = match self.located.take() {
                Some(l) if l.opens == link.error_counts().opens => l,
                _ => match self.discover(link, unit).await? {
                    Ok(l) => l,
                    Err(exception) => return Ok(Err(exception)),
                },
            };
            let read = self.read_models(link, unit, &located).await?;
            // A reconnect during the reads may have reached another device:
            // look again before trusting them.
            if located.opens != link.error_counts().opens {
                continue;
            }
            self.located = Some(located);
            return Ok(read.map(|(reading, serial_number)| Polled {
                reading,
                quality: DataQuality::Fresh,
                serial_number,
            }));
        }
        Err(protocol(unit, "the link reconnected twice during one poll"))
    }
}
