//! `packgate sim`: simulated packs served as real devices.

use clap::Args;
use packgate::cli::sim::{FramedLines, SimOptions};

/// What `packgate sim` serves, and where.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Packs, served as unit ids 1..=N.
    #[arg(long, default_value_t = 4)]
    packs: u8,
    /// Base seed of the packs' models.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Serve Modbus TCP on this address, such as 127.0.0.1:5020.
    #[arg(long)]
    modbus_tcp: Option<String>,
    /// Modbus TCP devices, each serving every pack on its own port:
    /// the ports after --modbus-tcp's, or each a free one when its
    /// port is 0.
    #[arg(long, default_value_t = 1, requires = "modbus_tcp")]
    devices: u16,
    /// Serve Modbus RTU on this serial device, or `pty` for a new
    /// pseudo-terminal whose path is printed.
    #[arg(long)]
    modbus_rtu: Option<String>,
    /// Baud rate of the RTU line.
    #[arg(long, default_value_t = 9600)]
    baud_rate: u32,
    /// Serve pack 1 as a Pylontech-style CAN BMS through slcan on this
    /// serial device, or `pty`.
    #[arg(long)]
    slcan: Option<String>,
    /// Inject a fault: UNIT=unresponsive | late:MS | crc | exception:CODE
    /// | garbage | overtemp (repeatable).
    #[arg(long = "fault", value_parser = parse_fault)]
    faults: Vec<(u8, packgate_sim::Faults)>,
    /// Serve the packs as SunSpec batteries (models 1, 802, 803 from
    /// 40000) in this layout: standard | common65 | vendor-first | no803.
    #[arg(long)]
    sunspec_layout: Option<packgate_sim::serve::SunSpecLayout>,
    /// Serve the packs as Pylontech-style RS-485 ASCII BMSs at
    /// addresses 1..=N on this serial device, or `pty`.
    #[arg(long)]
    pylon_ascii: Option<String>,
    /// With --pylon-ascii: the packs' reply layout, pylontech |
    /// seplos-v2 | pace.
    #[arg(long, requires = "pylon_ascii", default_value_t = packgate_sim::serve::PylonAsciiSimLayout::Pylontech)]
    layout: packgate_sim::serve::PylonAsciiSimLayout,
    /// Serve pack 1 as a JBD BMS on this serial device, or `pty`.
    #[arg(long)]
    jbd: Option<String>,
    /// Serve pack 1 as a Daly BMS on this serial device, or `pty`.
    #[arg(long)]
    daly: Option<String>,
    /// Serve pack 1 as a JK B/BD BMS ("NW" frames) on this serial
    /// device, or `pty`.
    #[arg(long)]
    jk: Option<String>,
    /// Listen as an inverter on this slcan serial device, or `pty`:
    /// print one line per burst a bank's inverter link sends.
    #[arg(long)]
    inverter: Option<String>,
    /// With --inverter: record the bursts to this file as JSON lines.
    #[arg(long, requires = "inverter")]
    record: Option<std::path::PathBuf>,
    /// With --inverter: obey the CCL/DCL heard and drive the packs with
    /// this load, CURRENT_A:SECONDS steps in a loop (`250:60,-250:60`).
    #[arg(long, requires = "inverter", conflicts_with = "record", value_name = "STEPS",
          value_parser = packgate::cli::sim_loop::parse_load, allow_hyphen_values = true)]
    inverter_load: Option<packgate_sim::LoadProfile>,
}

impl SimArgs {
    /// The simulator's options.
    pub(crate) fn into_options(self) -> SimOptions {
        SimOptions {
            packs: self.packs,
            seed: self.seed,
            modbus_tcp: self.modbus_tcp,
            modbus_tcp_devices: self.devices,
            modbus_rtu: self.modbus_rtu,
            baud_rate: self.baud_rate,
            slcan: self.slcan,
            faults: self.faults,
            sunspec_layout: self.sunspec_layout,
            framed: FramedLines {
                pylon_ascii: self.pylon_ascii,
                pylon_ascii_layout: self.layout,
                jbd: self.jbd,
                daly: self.daly,
                jk: self.jk,
            },
            inverter: self.inverter,
            record: self.record,
            inverter_load: self.inverter_load,
        }
    }
}

fn parse_fault(text: &str) -> Result<(u8, packgate_sim::Faults), String> {
    packgate::cli::sim::parse_fault(text).map_err(|e| e.to_string())
}
