//! Finding the SunSpec model chain, pure.
//!
//! A SunSpec map starts with the marker "SunS" (0x5375 0x6e53) at a base
//! address, followed by models, each a header (model ID, length `L` of the
//! body in registers) and `L` registers; the ID 0xFFFF ends the chain.
//! [`ChainWalk`] follows the headers one at a time, so a driver reads only
//! the two registers of each header; [`walk_image`] walks a register image
//! read from the base in one piece.

/// The "SunS" marker registers.
pub const MARKER: [u16; 2] = [0x5375, 0x6e53];
/// Addresses where the marker may start, in the order to probe them.
pub const DEFAULT_BASES: [u16; 3] = [40000, 0, 50000];
/// The common model (manufacturer, model, serial number).
pub const COMMON_MODEL: u16 = 1;
/// The battery base model.
pub const BATTERY_MODEL: u16 = 802;
/// The lithium-ion battery bank model.
pub const LITHIUM_BANK_MODEL: u16 = 803;
/// The lithium-ion module model.
pub const LITHIUM_MODULE_MODEL: u16 = 804;
/// The model ID that ends the chain.
pub const END_MODEL: u16 = 0xFFFF;
/// Most models a chain may hold before the walk gives up.
pub const MAX_MODELS: usize = 128;

/// One model of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelEntry {
    /// The model ID.
    pub id: u16,
    /// Address of its ID register.
    pub address: u16,
    /// Its length `L`: registers after the header.
    pub length: u16,
}

impl ModelEntry {
    /// Address of its first point after the header.
    pub fn body(&self) -> u16 {
        self.address.saturating_add(2)
    }
}

/// The models of one device, in chain order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMap {
    /// Where the marker is.
    pub base: u16,
    /// The models, in chain order (the end marker not included).
    pub models: Vec<ModelEntry>,
}

impl ModelMap {
    /// The first model with `id`.
    pub fn find(&self, id: u16) -> Option<ModelEntry> {
        self.models.iter().copied().find(|m| m.id == id)
    }
}

/// Why a device's model chain could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// No base holds the "SunS" marker.
    #[error("no SunS marker at any of the addresses {0:?}")]
    NoMarker(Vec<u16>),
    /// A model's length points past the end of the map (or of the address
    /// space), or the next header cannot be read.
    #[error("SunSpec chain broken: model {id} at {address} (L={length}) ends past the map")]
    ChainBroken {
        /// The model whose length is wrong.
        id: u16,
        /// Address of its ID register.
        address: u16,
        /// Its length.
        length: u16,
    },
    /// More than [`MAX_MODELS`] models without an end marker.
    #[error("SunSpec chain has more than {MAX_MODELS} models without an end")]
    TooLong,
    /// The chain holds no battery base model.
    #[error("no SunSpec model 802 (battery base) in the chain: models {0:?}")]
    NoBatteryModel(Vec<u16>),
}

/// Whether two registers read at a base are the marker.
pub fn is_marker(regs: &[u16]) -> bool {
    regs.get(..2) == Some(&MARKER[..])
}

/// What [`ChainWalk::push_header`] learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read the two header registers at this address next.
    Next(u16),
    /// The end marker was reached: the map.
    Done(ModelMap),
}

/// A walk along the chain, one header at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainWalk {
    base: u16,
    next: u16,
    models: Vec<ModelEntry>,
}

impl ChainWalk {
    /// A walk from the marker found at `base`.
    pub fn new(base: u16) -> Self {
        Self {
            base,
            next: base.saturating_add(2),
            models: Vec::new(),
        }
    }

    /// Address of the next header to read.
    pub fn next_header(&self) -> u16 {
        self.next
    }

    /// The model before the next header, for an error when that header
    /// cannot be read.
    pub fn broken(&self) -> DiscoveryError {
        match self.models.last() {
            Some(m) => DiscoveryError::ChainBroken {
                id: m.id,
                address: m.address,
                length: m.length,
            },
            None => DiscoveryError::ChainBroken {
                id: END_MODEL,
                address: self.base,
                length: 0,
            },
        }
    }

    /// Takes the header (`id`, `length`) read at [`next_header`](Self::next_header).
    pub fn push_header(&mut self, id: u16, length: u16) -> Result<Step, DiscoveryError> {
        if id == END_MODEL {
            return Ok(Step::Done(ModelMap {
                base: self.base,
                models: std::mem::take(&mut self.models),
            }));
        }
        if self.models.len() >= MAX_MODELS {
            return Err(DiscoveryError::TooLong);
        }
        let entry = ModelEntry {
            id,
            address: self.next,
            length,
        };
        // The next header (2 registers) must fit in the address space.
        let next = u32::from(self.next) + 2 + u32::from(length);
        let next = u16::try_from(next).ok().filter(|&n| n < u16::MAX).ok_or(
            DiscoveryError::ChainBroken {
                id,
                address: self.next,
                length,
            },
        )?;
        self.models.push(entry);
        self.next = next;
        Ok(Step::Next(next))
    }
}

/// Walks `regs`, read from `base` on: the marker, then the chain to its end
/// marker, every model inside `regs`.
pub fn walk_image(base: u16, regs: &[u16]) -> Result<ModelMap, DiscoveryError> {
    if !is_marker(regs) {
        return Err(DiscoveryError::NoMarker(vec![base]));
    }
    let mut walk = ChainWalk::new(base);
    loop {
        let at = usize::from(walk.next_header() - base);
        let header = regs.get(at..at + 2).ok_or_else(|| walk.broken())?;
        match walk.push_header(header[0], header[1])? {
            Step::Next(_) => {}
            Step::Done(map) => {
                let end = map
                    .models
                    .last()
                    .map_or(0, |m| usize::from(m.body() - base) + usize::from(m.length));
                return if end <= regs.len() {
                    Ok(map)
                } else {
                    Err(walk.broken())
                };
            }
        }
    }
}

/// The models a battery driver uses, located in `map`: 802 (required),
/// 803 and 804 when present, and the common model for the serial number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatteryModels {
    /// The common model, when present.
    pub common: Option<ModelEntry>,
    /// The battery base model.
    pub battery: ModelEntry,
    /// The lithium-ion bank model, when present.
    pub bank: Option<ModelEntry>,
    /// The lithium-ion module model, when present.
    pub module: Option<ModelEntry>,
}

/// Locates the battery models in `map`.
pub fn battery_models(map: &ModelMap) -> Result<BatteryModels, DiscoveryError> {
    let battery = map
        .find(BATTERY_MODEL)
        .ok_or_else(|| DiscoveryError::NoBatteryModel(map.models.iter().map(|m| m.id).collect()))?;
    Ok(BatteryModels {
        common: map.find(COMMON_MODEL),
        battery,
        bank: map.find(LITHIUM_BANK_MODEL),
        module: map.find(LITHIUM_MODULE_MODEL),
    })
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
