//! Conflicts between parts of a profile that each look valid alone: two
//! settings writing one register, and the cell and temperature arrays
//! reading one register as two different things.

use std::collections::{HashMap, HashSet};

use super::{invalid, Invalid};
use crate::profile::decode::{ArrayCount, ArrayField};
use crate::profile::setting::WritableSetting;
use crate::profile::{ReadFunction, RegisterBlock};

/// The registers an array reads at its largest count, as (function,
/// address).
fn array_registers(blocks: &[RegisterBlock], array: &ArrayField) -> Vec<(ReadFunction, u32)> {
    let Some(block) = blocks.get(array.value.at.block) else {
        return Vec::new();
    };
    let count = match array.count {
        ArrayCount::Fixed(count) | ArrayCount::From { max: count, .. } => count,
    };
    let width = u32::from(array.value.ty.width());
    let first = u32::from(block.start) + u32::from(array.value.at.offset);
    (0..u32::from(count))
        .flat_map(|index| {
            let start = first + index * u32::from(array.stride);
            (start..start + width).map(|address| (block.function, address))
        })
        .collect()
}

/// Refuses a temperature array that reads a register the cell array reads
/// too (in the same block or through two blocks over one range).
pub(super) fn check_arrays(
    blocks: &[RegisterBlock],
    cells: &ArrayField,
    temperatures: &ArrayField,
) -> Result<(), Invalid> {
    let cell_registers: HashSet<_> = array_registers(blocks, cells).into_iter().collect();
    let shared = array_registers(blocks, temperatures)
        .into_iter()
        .find(|register| cell_registers.contains(register));
    match shared {
        Some((function, address)) => invalid(
            "temperatures.offset",
            format!(
                "{} register {address} is read by the cells array too: the arrays overlap",
                function_name(function)
            ),
        ),
        None => Ok(()),
    }
}

fn function_name(function: ReadFunction) -> &'static str {
    match function {
        ReadFunction::Holding => "holding",
        ReadFunction::Input => "input",
    }
}

/// Refuses two settings that write one holding register (`settings[i]`
/// paths in configuration order).
pub(super) fn check_settings(settings: &[WritableSetting]) -> Result<(), Invalid> {
    let mut owners: HashMap<u32, &str> = HashMap::new();
    for (index, setting) in settings.iter().enumerate() {
        let start = u32::from(setting.register);
        for address in start..start + u32::from(setting.register_count()) {
            if let Some(owner) = owners.insert(address, &setting.name) {
                return invalid(
                    format!("settings[{index}].register"),
                    format!(
                        "holding register {address} is written by setting {owner:?} too; \
                         one register, one setting"
                    ),
                );
            }
        }
    }
    Ok(())
}
