//! `packgate sunspec scan`: the SunSpec models a Modbus TCP device holds,
//! found by probing the marker and walking the chain, printed with their
//! offsets and lengths: what an installer runs first.

use std::fmt::Write as _;
use std::time::Duration;

use packgate_drivers::modbus::{sunspec_scan, ModbusLink, TcpLinkConfig};
use packgate_drivers::sunspec::ModelMap;

/// Why a scan found no model chain.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The device could not be reached or answered garbage.
    #[error("reading {address} unit {unit}: {source}")]
    Link {
        /// The address scanned.
        address: String,
        /// The unit scanned.
        unit: u8,
        /// The failure.
        source: packgate_drivers::DriverError,
    },
    /// The device answered, but holds no usable chain.
    #[error("{address} unit {unit}: {source}")]
    Chain {
        /// The address scanned.
        address: String,
        /// The unit scanned.
        unit: u8,
        /// What is wrong with it.
        source: packgate_drivers::sunspec::DiscoveryError,
    },
}

/// A name for the models packgate knows.
fn model_name(id: u16) -> &'static str {
    match id {
        1 => "common",
        802 => "battery base (required)",
        803 => "lithium-ion bank (used)",
        804 => "lithium-ion module (located)",
        64_000..=65_534 => "vendor",
        _ => "",
    }
}

/// Scans unit `unit` at the Modbus TCP `address`, the marker looked for
/// at `bases` in order, each request waiting at most `timeout`.
pub async fn scan(
    address: &str,
    unit: u8,
    bases: &[u16],
    timeout: Duration,
) -> Result<ModelMap, ScanError> {
    let mut link = ModbusLink::tcp(TcpLinkConfig {
        request_timeout: timeout,
        connect_timeout: timeout,
        ..TcpLinkConfig::new(address)
    });
    let found = sunspec_scan(&mut link, unit, bases)
        .await
        .map_err(|source| ScanError::Link {
            address: address.to_owned(),
            unit,
            source,
        })?;
    found.map_err(|source| ScanError::Chain {
        address: address.to_owned(),
        unit,
        source,
    })
}

/// The map as a table: one line per model (ID, offset, length, name).
pub fn render(map: &ModelMap) -> String {
    let mut out = format!("SunS marker at {}\n", map.base);
    let _ = writeln!(out, "{:>6}  {:>6}  {:>6}  model", "ID", "OFFSET", "LENGTH");
    for m in &map.models {
        let _ = writeln!(
            out,
            "{:>6}  {:>6}  {:>6}  {}",
            m.id,
            m.address,
            m.length,
            model_name(m.id)
        );
    }
    let missing = packgate_drivers::sunspec::battery_models(map).err();
    match missing {
        Some(e) => {
            let _ = writeln!(out, "not readable by driver = \"sunspec\": {e}");
        }
        None => out.push_str("readable by driver = \"sunspec\"\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use packgate_drivers::sunspec::ModelEntry;

    #[test]
    fn the_table_lists_every_model_and_says_whether_it_is_readable() {
        let map = ModelMap {
            base: 40000,
            models: vec![
                ModelEntry {
                    id: 1,
                    address: 40002,
                    length: 65,
                },
                ModelEntry {
                    id: 802,
                    address: 40069,
                    length: 62,
                },
            ],
        };
        let text = render(&map);
        assert!(text.contains("SunS marker at 40000"), "{text}");
        assert!(
            text.contains("   802   40069      62  battery base"),
            "{text}"
        );
        assert!(text.contains("readable by driver"), "{text}");
        let text = render(&ModelMap {
            base: 0,
            models: vec![],
        });
        assert!(text.contains("not readable"), "{text}");
    }
}
