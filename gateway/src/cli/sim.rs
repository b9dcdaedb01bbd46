//! `packgate sim`: simulated packs served as real devices (Modbus TCP,
//! Modbus RTU on a serial line or a pseudo-terminal, slcan), so the
//! gateway, or any other Modbus or CAN tool, can poll them over the wire;
//! and an inverter on an slcan line that prints what a bank's link sends,
//! or obeys it and drives the packs' currents (see [`super::sim_loop`]).

use std::time::Duration;

use packgate_sim::serve::daly::DalyDevice;
use packgate_sim::serve::framed::{serve_framed, FramedServerOptions, FramedUnit};
use packgate_sim::serve::jbd::JbdDevice;
use packgate_sim::serve::jk::JkDevice;
use packgate_sim::serve::pylon_ascii::{
    PaceDevice, PylonAsciiDevice, PylonAsciiSimLayout, SeplosV2Device,
};
use packgate_sim::serve::{
    serve_modbus_rtu, serve_modbus_tcp, RtuServerOptions, SimUnit, SunSpecLayout,
};
use packgate_sim::{Faults, SimPack, SimPackConfig};
use tokio_serial::SerialPort;
use tokio_util::sync::CancellationToken;

/// What to serve.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Packs, served as unit ids 1..=packs.
    pub packs: u8,
    /// Base seed; pack n uses seed + n.
    pub seed: u64,
    /// Modbus TCP listen address, such as `127.0.0.1:5020`.
    pub modbus_tcp: Option<String>,
    /// Modbus TCP devices, each its own endpoint serving every pack: the
    /// first on `modbus_tcp`, the next on the ports after it (each on a
    /// port of its own choosing when the port is 0). 0 counts as 1.
    pub modbus_tcp_devices: u16,
    /// Modbus RTU: a serial device, or `pty` for a new pseudo-terminal.
    pub modbus_rtu: Option<String>,
    /// Baud rate of the RTU line.
    pub baud_rate: u32,
    /// slcan: a serial device, or `pty`; carries pack 1.
    pub slcan: Option<String>,
    /// Faults by unit id.
    pub faults: Vec<(u8, Faults)>,
    /// Serve the Modbus units as SunSpec batteries in this layout instead
    /// of the "packgate-sim" register map.
    pub sunspec_layout: Option<SunSpecLayout>,
    /// Lines served with a framed BMS protocol.
    pub framed: FramedLines,
    /// Listen as an inverter on this slcan line (a serial device, or
    /// `pty`) and print what a bank's link sends.
    pub inverter: Option<String>,
    /// Record the inverter's bursts to this file as JSON lines instead.
    pub record: Option<std::path::PathBuf>,
    /// With `inverter`: the inverter obeys the limits it hears, asking the
    /// packs for this load (clamped to the CCL and DCL heard, split across
    /// the packs), which becomes their currents.
    pub inverter_load: Option<packgate_sim::LoadProfile>,
}

/// The serial lines served with a framed BMS protocol: each a serial
/// device, or `pty` for a new pseudo-terminal.
#[derive(Debug, Clone, Default)]
pub struct FramedLines {
    /// Pylontech-style RS-485 ASCII: every pack, at addresses 1..=packs.
    pub pylon_ascii: Option<String>,
    /// The layout the Pylontech-style packs answer in.
    pub pylon_ascii_layout: PylonAsciiSimLayout,
    /// JBD: pack 1.
    pub jbd: Option<String>,
    /// Daly: pack 1.
    pub daly: Option<String>,
    /// JK "NW" frames: pack 1.
    pub jk: Option<String>,
}

impl FramedLines {
    fn any(&self) -> bool {
        self.pylon_ascii.is_some() || self.jbd.is_some() || self.daly.is_some() || self.jk.is_some()
    }
}

/// Why the simulator could not serve.
#[derive(Debug, thiserror::Error)]
pub enum SimCliError {
    /// Binding, opening or serving failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A fault flag could not be read.
    #[error(
        "bad --fault {0:?}: use UNIT=unresponsive|late:MS|crc|exception:CODE|garbage|overtemp"
    )]
    Fault(String),
    /// Nothing to serve.
    #[error("nothing to serve: give --modbus-tcp, --modbus-rtu, --slcan, --pylon-ascii, --jbd, --daly, --jk or --inverter")]
    NoTransport,
}

/// Parses `UNIT=KIND[:ARG]` into the unit id and its faults.
pub fn parse_fault(text: &str) -> Result<(u8, Faults), SimCliError> {
    let bad = || SimCliError::Fault(text.to_owned());
    let (unit, kind) = text.split_once('=').ok_or_else(bad)?;
    let unit: u8 = unit.trim().parse().map_err(|_| bad())?;
    let (kind, arg) = kind
        .split_once(':')
        .map_or((kind, None), |(k, a)| (k, Some(a)));
    let mut faults = Faults::default();
    match (kind.trim(), arg) {
        ("unresponsive", None) => faults.unresponsive = true,
        ("late", Some(ms)) => faults.response_delay_ms = ms.parse().map_err(|_| bad())?,
        ("crc", None) => faults.corrupt_crc = true,
        ("exception", Some(code)) => faults.exception = Some(code.parse().map_err(|_| bad())?),
        ("garbage", None) => faults.garbage = true,
        ("overtemp", None) => faults.over_temperature = true,
        _ => return Err(bad()),
    }
    Ok((unit, faults))
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SimCliError {
    let what = what.into();
    move |source| SimCliError::Io { what, source }
}

/// Opens `spec` (a device path, or `pty`) as the device end of a serial
/// line; for a pty, also returns the path the client should open and the
/// client end, which must stay open for the line to work.
fn open_line(
    spec: &str,
    baud_rate: u32,
) -> Result<
    (
        tokio_serial::SerialStream,
        String,
        Option<tokio_serial::SerialStream>,
    ),
    SimCliError,
> {
    if spec == "pty" {
        let (device, client) = tokio_serial::SerialStream::pair()
            .map_err(|e| io_error("creating a pseudo-terminal")(e.into()))?;
        let path = client.name().unwrap_or_default();
        return Ok((device, path, Some(client)));
    }
    let builder = tokio_serial::new(spec, baud_rate);
    let port = tokio_serial::SerialStream::open(&builder)
        .map_err(|e| io_error(format!("opening {spec}"))(e.into()))?;
    Ok((port, spec.to_owned(), None))
}

/// Prints where a served device is. A reader that went away
/// (`packgate sim ... | head -1`, to learn a pty's path) does not stop the
/// simulator: the devices are what it is for, so a failed write is
/// ignored (never `println!`, which would panic on it).
fn announce(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// The listen addresses of `devices` Modbus TCP devices from `first`:
/// the ports after its own, or port 0 (any free port) for each when its
/// port is 0.
fn device_addresses(first: &str, devices: u16) -> Result<Vec<String>, SimCliError> {
    let devices = devices.max(1);
    if devices == 1 {
        return Ok(vec![first.to_owned()]);
    }
    let bad = || SimCliError::Io {
        what: format!("{first:?}: expected host:port to serve {devices} devices from"),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    };
    let (host, port) = first.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    (0..devices)
        .map(|n| {
            let port = if port == 0 {
                Some(0)
            } else {
                port.checked_add(n)
            };
            port.map(|port| format!("{host}:{port}")).ok_or_else(bad)
        })
        .collect()
}

/// The packs to serve: unit id, pack (with its faults) and seed.
fn sim_packs(options: &SimOptions) -> Vec<(u8, SimPack, u64)> {
    (1..=options.packs.max(1))
        .map(|unit| {
            let seed = options.seed + u64::from(unit);
            let pack = SimPack::new(&SimPackConfig::default().with_seed(seed));
            if let Some((_, faults)) = options.faults.iter().find(|(u, _)| *u == unit) {
                pack.set_faults(*faults);
            }
            (unit, pack, seed)
        })
        .collect()
}

/// " sunspec LAYOUT" when the units are served as SunSpec batteries.
fn sunspec_note(layout: Option<SunSpecLayout>) -> String {
    layout.map_or_else(String::new, |l| format!(" sunspec {l}"))
}

/// Starts a server for each framed-protocol line asked for, printing
/// where it is: every pack on the Pylontech-style line (by address), pack
/// 1 on each of the others (their protocols have no addresses).
fn serve_framed_lines(
    options: &SimOptions,
    packs: &[(u8, SimPack, u64)],
    tasks: &mut tokio::task::JoinSet<std::io::Result<()>>,
    keep_open: &mut Vec<tokio_serial::SerialStream>,
    shutdown: &CancellationToken,
) -> Result<(), SimCliError> {
    let all: Vec<FramedUnit> = packs
        .iter()
        .map(|(unit, pack, seed)| FramedUnit::new(*unit, pack.clone(), *seed))
        .collect();
    let first: Vec<FramedUnit> = all.iter().take(1).cloned().collect();
    let lines = &options.framed;
    let specs = [
        ("pylon-ascii", &lines.pylon_ascii, 9_600, &all),
        ("jbd", &lines.jbd, 9_600, &first),
        ("daly", &lines.daly, 9_600, &first),
        ("jk", &lines.jk, 115_200, &first),
    ];
    for (name, spec, baud_rate, units) in specs {
        let Some(spec) = spec else { continue };
        let (port, path, client) = open_line(spec, baud_rate)?;
        keep_open.extend(client);
        let addresses = match units.as_slice() {
            [one] if name != "pylon-ascii" => format!("pack {}", one.address),
            _ => format!("addresses 1..={}", units.len()),
        };
        let layout = match name {
            "pylon-ascii" => format!(" layout {}", lines.pylon_ascii_layout),
            _ => String::new(),
        };
        announce(format_args!(
            "{name} {path} {baud_rate} baud {addresses}{layout}"
        ));
        let units = units.clone();
        let (options, shutdown) = (FramedServerOptions::default(), shutdown.clone());
        match (name, lines.pylon_ascii_layout) {
            ("pylon-ascii", PylonAsciiSimLayout::Pylontech) => {
                tasks.spawn(serve_framed::<PylonAsciiDevice, _>(
                    port, units, options, shutdown,
                ))
            }
            ("pylon-ascii", PylonAsciiSimLayout::SeplosV2) => {
                tasks.spawn(serve_framed::<SeplosV2Device, _>(
                    port, units, options, shutdown,
                ))
            }
            ("pylon-ascii", PylonAsciiSimLayout::Pace) => tasks.spawn(
                serve_framed::<PaceDevice, _>(port, units, options, shutdown),
            ),
            ("jbd", _) => tasks.spawn(serve_framed::<JbdDevice, _>(port, units, options, shutdown)),
            ("daly", _) => tasks.spawn(serve_framed::<DalyDevice, _>(
                port, units, options, shutdown,
            )),
            _ => tasks.spawn(serve_framed::<JkDevice, _>(port, units, options, shutdown)),
        };
    }
    Ok(())
}

/// The simulator's server tasks, and the client ends of the
/// pseudo-terminals they serve (kept open until the servers end).
#[derive(Default)]
struct Servers {
    tasks: tokio::task::JoinSet<std::io::Result<()>>,
    keep_open: Vec<tokio_serial::SerialStream>,
}

/// Serves the simulated packs until `shutdown`, printing where each
/// transport can be reached.
pub async fn run_sim(options: SimOptions, shutdown: CancellationToken) -> Result<(), SimCliError> {
    if options.modbus_tcp.is_none()
        && options.modbus_rtu.is_none()
        && options.slcan.is_none()
        && options.inverter.is_none()
        && !options.framed.any()
    {
        return Err(SimCliError::NoTransport);
    }
    let packs = sim_packs(&options);
    let mut servers = Servers::default();
    if let Some(address) = &options.modbus_tcp {
        serve_modbus_tcp_devices(address, &options, &packs, &mut servers, &shutdown).await?;
    }
    if let Some(spec) = &options.modbus_rtu {
        serve_modbus_rtu_line(spec, &options, &packs, &mut servers, &shutdown)?;
    }
    if let Some(spec) = &options.slcan {
        let (port, path, client) = open_line(spec, 115_200)?;
        servers.keep_open.extend(client);
        announce(format_args!("slcan {path} pack 1"));
        let pack = packs[0].1.clone();
        servers.tasks.spawn(packgate_sim::serve::serve_slcan(
            port,
            pack,
            Duration::from_secs(1),
            shutdown.clone(),
        ));
    }
    serve_framed_lines(
        &options,
        &packs,
        &mut servers.tasks,
        &mut servers.keep_open,
        &shutdown,
    )?;
    if let Some(spec) = &options.inverter {
        serve_inverter_line(spec, &options, &packs, &mut servers, &shutdown)?;
    }
    wait_for_servers(servers, &shutdown).await
}

/// The packs as Modbus units, SunSpec batteries when a layout is asked for.
fn sim_units(packs: &[(u8, SimPack, u64)], sunspec_layout: Option<SunSpecLayout>) -> Vec<SimUnit> {
    packs
        .iter()
        .map(|(unit, pack, seed)| {
            let unit = SimUnit::new(*unit, pack.clone(), *seed);
            match sunspec_layout {
                Some(layout) => unit.with_sunspec(layout),
                None => unit,
            }
        })
        .collect()
}

/// A Modbus TCP server for each device asked for, every pack on each.
async fn serve_modbus_tcp_devices(
    address: &str,
    options: &SimOptions,
    packs: &[(u8, SimPack, u64)],
    servers: &mut Servers,
    shutdown: &CancellationToken,
) -> Result<(), SimCliError> {
    for address in device_addresses(address, options.modbus_tcp_devices)? {
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(io_error(format!("binding {address}")))?;
        let local = listener
            .local_addr()
            .map_err(io_error("reading the bound address"))?;
        announce(format_args!(
            "modbus-tcp {local} units 1..={}{}",
            packs.len(),
            sunspec_note(options.sunspec_layout)
        ));
        let units = sim_units(packs, options.sunspec_layout);
        servers
            .tasks
            .spawn(serve_modbus_tcp(listener, units, shutdown.clone()));
    }
    Ok(())
}

/// A Modbus RTU server on the line `spec`, every pack on it.
fn serve_modbus_rtu_line(
    spec: &str,
    options: &SimOptions,
    packs: &[(u8, SimPack, u64)],
    servers: &mut Servers,
    shutdown: &CancellationToken,
) -> Result<(), SimCliError> {
    let (port, path, client) = open_line(spec, options.baud_rate)?;
    servers.keep_open.extend(client);
    announce(format_args!(
        "modbus-rtu {path} {} baud units 1..={}{}",
        options.baud_rate,
        packs.len(),
        sunspec_note(options.sunspec_layout)
    ));
    let rtu = RtuServerOptions {
        baud_rate: options.baud_rate,
        ..RtuServerOptions::default()
    };
    let units = sim_units(packs, options.sunspec_layout);
    servers
        .tasks
        .spawn(serve_modbus_rtu(port, units, rtu, shutdown.clone()));
    Ok(())
}

/// An inverter on the slcan line `spec`: obeying the limits it hears and
/// driving the packs when a load is asked for, else printing (or
/// recording) what it hears.
fn serve_inverter_line(
    spec: &str,
    options: &SimOptions,
    packs: &[(u8, SimPack, u64)],
    servers: &mut Servers,
    shutdown: &CancellationToken,
) -> Result<(), SimCliError> {
    let (port, path, client) = open_line(spec, 115_200)?;
    servers.keep_open.extend(client);
    let into = options.record.as_ref().map_or_else(
        || "printing".to_owned(),
        |f| format!("recording to {}", f.display()),
    );
    match &options.inverter_load {
        Some(profile) => {
            announce(format_args!(
                "inverter slcan {path} obeying, driving packs 1..={}",
                packs.len()
            ));
            let obeying = packgate_sim::ObeyingInverter::new(
                profile.clone(),
                packs.iter().map(|(_, pack, _)| pack.clone()).collect(),
                super::sim_loop::SILENCE_AFTER,
            );
            let (events, printed) = tokio::sync::mpsc::channel(256);
            tokio::spawn(super::sim_loop::print_events(printed));
            servers.tasks.spawn(super::sim_loop::run_obeying(
                port,
                obeying,
                super::sim_loop::LoopOptions::default(),
                events,
                shutdown.clone(),
            ));
        }
        None => {
            announce(format_args!("inverter slcan {path} {into}"));
            servers.tasks.spawn(super::sim_inverter::run_inverter(
                port,
                options.record.clone(),
                shutdown.clone(),
            ));
        }
    }
    Ok(())
}

/// Waits for every server to end; the first that fails stops the others
/// and is the error.
async fn wait_for_servers(
    mut servers: Servers,
    shutdown: &CancellationToken,
) -> Result<(), SimCliError> {
    while let Some(result) = servers.tasks.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                shutdown.cancel();
                return Err(SimCliError::Io {
                    what: "serving".into(),
                    source,
                });
            }
            Err(join) => tracing::error!(error = %join, "simulator task failed"),
        }
    }
    drop(servers.keep_open);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse() {
        assert!(parse_fault("3=unresponsive").unwrap().1.unresponsive);
        assert_eq!(parse_fault("2=late:800").unwrap().1.response_delay_ms, 800);
        assert_eq!(parse_fault("1=exception:4").unwrap().1.exception, Some(4));
        assert!(parse_fault("1=crc").unwrap().1.corrupt_crc);
        assert!(parse_fault("x=crc").is_err());
        assert!(parse_fault("1=melt").is_err());
    }

    #[test]
    fn devices_take_the_ports_after_the_first_or_each_a_free_one() {
        assert_eq!(
            device_addresses("127.0.0.1:5020", 3).unwrap(),
            ["127.0.0.1:5020", "127.0.0.1:5021", "127.0.0.1:5022"]
        );
        assert_eq!(
            device_addresses("127.0.0.1:0", 2).unwrap(),
            ["127.0.0.1:0", "127.0.0.1:0"]
        );
        assert_eq!(device_addresses("[::1]:7", 0).unwrap(), ["[::1]:7"]);
        assert!(device_addresses("127.0.0.1:65535", 2).is_err());
        assert!(device_addresses("nowhere", 2).is_err());
    }
}
