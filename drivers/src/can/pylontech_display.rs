//! The one-line, human-readable form of a [`BmsFrame`] (for `packgate can
//! decode` and logs).

use std::fmt;

use packgate_protocol::AlarmFlags;

use super::BmsFrame;

fn flag_names(flags: AlarmFlags) -> String {
    let names = flags.names();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(",")
    }
}

/// One line for a person: `0x356 measurements: 52.80 V, -12.5 A, 24.5 °C`.
impl fmt::Display for BmsFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#05x} ", self.id())?;
        match self {
            BmsFrame::Limits(l) => {
                write!(
                    f,
                    "limits: charge {:.1} V {:.1} A, discharge {:.1} A",
                    l.charge_voltage_limit_v, l.charge_current_limit_a, l.discharge_current_limit_a
                )?;
                match l.discharge_voltage_limit_v {
                    Some(v) => write!(f, " {v:.1} V"),
                    None => Ok(()),
                }
            }
            BmsFrame::SocSoh(s) => write!(f, "soc {} %, soh {} %", s.soc_pct, s.soh_pct),
            BmsFrame::Measurements(m) => write!(
                f,
                "measurements: {:.2} V, {:.1} A, {:.1} °C",
                m.pack_voltage_v, m.current_a, m.temperature_c
            ),
            BmsFrame::Protection(p) => write!(
                f,
                "protection: {} (raw {:#06x}), warnings raw {:#06x}, {} modules",
                flag_names(p.protection.alarm_flags()),
                p.protection.0,
                p.warning.0,
                p.module_count
            ),
            BmsFrame::SmaAlarms(a) => write!(
                f,
                "alarms: {} (raw {:02x?})",
                flag_names(a.alarm_flags()),
                a.0
            ),
            BmsFrame::Request(r) => write!(
                f,
                "request: charge {}, discharge {}, force charge {}/{}, full charge {}",
                r.charge_enable,
                r.discharge_enable,
                r.force_charge_1,
                r.force_charge_2,
                r.full_charge
            ),
            BmsFrame::Manufacturer(name) => write!(f, "manufacturer: {name:?}"),
            BmsFrame::CellExtremes(c) => write!(
                f,
                "cells: {:.3}..{:.3} V, {:.1}..{:.1} °C",
                c.min_cell_v, c.max_cell_v, c.min_cell_temperature_c, c.max_cell_temperature_c
            ),
        }
    }
}
