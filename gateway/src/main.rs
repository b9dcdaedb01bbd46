//! The `packgate` command.

mod bench_cli;
mod cloud_cli;
mod commands;
mod desired_cli;
mod query;

use commands::{
    bench, broker_users, can_decode, check_config, command, profiles, reset_alarm, run_gateway,
    run_one, sim, status, sunspec_scan, watch,
};

use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use packgate::config::{Config, ConfigError, ConfigSource, MAX_PACKS};
use packgate::runtime::WorkerSet;
use packgate::telemetry::{init_logging, LogFormat};
use packgate::workers::WorkerKind;
use packgate_protocol::{BankId, PackId};
use query::QueryCommand;

/// Edge gateway for battery packs: polls each pack's BMS into NATS
/// JetStream and runs the workers on that stream.
#[derive(Debug, Parser)]
#[command(name = "packgate", version, about)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Run every worker in this process (the default on the box).
    Run(GatewayArgs),
    /// Run only the collect worker: poll the packs and publish.
    Collect(GatewayArgs),
    /// Run only the data worker: store samples in SQLite.
    Data(GatewayArgs),
    /// Run only the control worker: validated, audited writes to packs.
    Control(GatewayArgs),
    /// Run only the monitor worker: every worker's metrics, pack events.
    Monitor(GatewayArgs),
    /// Run only the cloud worker: upload, and the cloud's commands.
    /// `packgate cloud command ...` instead sends a command to a gateway
    /// through the cloud, as an application in the cloud does.
    Cloud(cloud_cli::CloudArgs),
    /// Desired settings in the cloud: set, get, list or delete the value a
    /// gateway keeps a pack's setting at.
    Desired(desired_cli::DesiredArgs),
    /// Run only the HTTP worker: Prometheus metrics on `/metrics`.
    Http(GatewayArgs),
    /// Run only the mqtt worker: the packs in Home Assistant.
    Mqtt(GatewayArgs),
    /// Run only the bank worker: each bank's state and charge limits.
    Bank(GatewayArgs),
    /// Workers, packs, streams, the cloud link, recent alarms and commands
    /// at a glance.
    Status {
        #[command(flatten)]
        target: BrokerArgs,
    },
    /// Send a command to a pack, or to a bank's site limits, through the
    /// control worker.
    Command {
        #[command(flatten)]
        target: BrokerArgs,
        /// The pack.
        #[arg(long, required_unless_present = "bank", conflicts_with = "bank")]
        pack: Option<PackId>,
        /// The bank, to lower one of its site limits (see the README).
        #[arg(long)]
        bank: Option<BankId>,
        /// Seconds until the command expires.
        #[arg(long, default_value_t = 30)]
        ttl_s: u64,
        /// Command id (default: a fresh one); repeating an id repeats the
        /// stored answer and writes nothing.
        #[arg(long)]
        id: Option<String>,
        #[command(subcommand)]
        action: SetAction,
    },
    /// Check a configuration file and print it with every default filled in.
    CheckConfig {
        /// The file (default: the one $PACKGATE_CONFIG names, else
        /// /etc/packgate/packgate.toml).
        file: Option<PathBuf>,
    },
    /// Read stored data.
    Query {
        #[command(subcommand)]
        what: QueryCommand,
    },
    /// Show live samples, one line per pack, and one per bank.
    Watch {
        #[command(flatten)]
        target: BrokerArgs,
        /// Print one table after a second and exit.
        #[arg(long)]
        once: bool,
    },
    /// Serve simulated packs as real devices (Modbus TCP, Modbus RTU, slcan,
    /// and the framed serial BMS protocols).
    Sim {
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
    },
    /// Create the broker credentials file (mode 0600) if it is missing, and
    /// write the nats-server users file (one user per worker, with its
    /// permissions) from it: run at package install.
    BrokerUsers {
        /// The credentials file packgate reads.
        #[arg(long, default_value = "/etc/packgate/broker-credentials.toml")]
        credentials: PathBuf,
        /// The users file nats-server includes.
        #[arg(long, default_value = "/etc/packgate/nats-users.conf")]
        out: PathBuf,
    },
    /// Reset a latched alarm relay (the GPIO outputs).
    ResetAlarm {
        #[command(flatten)]
        target: BrokerArgs,
    },
    /// Device profiles: register maps of the Modbus BMSs.
    Profiles {
        #[command(subcommand)]
        what: ProfilesCommand,
    },
    /// CAN tools.
    Can {
        #[command(subcommand)]
        what: CanCommand,
    },
    /// SunSpec tools.
    Sunspec {
        #[command(subcommand)]
        what: SunSpecCommand,
    },
    /// Measure the whole pipeline with simulated packs.
    Bench(Box<bench_cli::BenchArgs>),
}

#[derive(Debug, Subcommand)]
enum SetAction {
    /// Write one setting, such as `charge_current_limit_a 50` (a pack) or
    /// `site_max_charge_a 40` (a bank).
    Set {
        /// The setting, as named in the pack's profile.
        setting: String,
        /// The value, in the setting's unit (negative values need no `--`).
        #[arg(allow_negative_numbers = true)]
        value: f64,
    },
}

#[derive(Debug, Subcommand)]
enum ProfilesCommand {
    /// The built-in profiles.
    List,
    /// Print a built-in profile's TOML (a starting point for your own).
    Show {
        /// Its name.
        name: String,
    },
    /// Check a profile file: errors name the field and why.
    Check {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SunSpecCommand {
    /// List the SunSpec models of a Modbus TCP device (ID, offset, length).
    Scan {
        /// The device, such as 192.168.1.50:502.
        address: String,
        /// The Modbus unit id.
        #[arg(long, default_value_t = 1)]
        unit: u8,
        /// Where to look for the "SunS" marker, in order (repeatable).
        #[arg(long = "base", default_values_t = [40000u16, 0, 50000])]
        bases: Vec<u16>,
    },
}

#[derive(Debug, Subcommand)]
enum CanCommand {
    /// Decode a candump log (`candump -l` or candump's console output)
    /// through the Pylontech BMS decoder.
    Decode {
        /// The log file.
        file: PathBuf,
    },
}

/// `--sim N`: a count up to [`MAX_PACKS`], refused before anything is
/// allocated for it.
fn parse_sim_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count) if count <= MAX_PACKS => Ok(count),
        Ok(count) => Err(format!(
            "{count} simulated packs; one gateway polls at most {MAX_PACKS}"
        )),
        Err(e) => Err(format!("{text:?} is not a number of packs: {e}")),
    }
}

fn parse_fault(text: &str) -> Result<(u8, packgate_sim::Faults), String> {
    packgate::cli::sim::parse_fault(text).map_err(|e| e.to_string())
}

/// Where the configuration comes from.
#[derive(Debug, Args)]
struct ConfigArgs {
    /// Configuration file (TOML). Without it: the file $PACKGATE_CONFIG
    /// names (set but empty: the built-in defaults), else
    /// /etc/packgate/packgate.toml if it exists, else the built-in
    /// defaults. `status` names the one it read; RUST_LOG=debug logs it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data directory, overriding the configuration's.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    fn load(&self) -> anyhow::Result<Config> {
        Ok(self.load_with_source()?.0)
    }

    /// The configuration, and the file it came from.
    fn load_with_source(&self) -> anyhow::Result<(Config, ConfigSource)> {
        let source = ConfigSource::for_command(self.config.as_deref());
        tracing::debug!(%source, "configuration");
        let mut config = match source.path() {
            Some(path) => Config::load(path)
                .map_err(with_permission_hint)
                .with_context(|| format!("the configuration {source}"))?,
            None => Config::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
            // The file's streams, against the filesystem they now go on.
            if source.path().is_some() {
                config.fit_streams_to_data_dir("--data-dir")?;
            }
        }
        Ok((config, source))
    }
}

/// A configuration this user may not read, with what to do about it; any
/// other error as it is.
fn with_permission_hint(error: ConfigError) -> anyhow::Error {
    let denied = matches!(&error, ConfigError::Read { source, .. }
        if source.kind() == std::io::ErrorKind::PermissionDenied);
    if denied {
        anyhow::Error::new(error).context(
            "this user may not read the configuration (it may hold the cloud's secrets): \
             run the command with sudo, or join the file's group (installed from the \
             package: sudo adduser $USER packgate, then log in again)",
        )
    } else {
        error.into()
    }
}

/// Which broker to talk to.
#[derive(Debug, Args)]
struct BrokerArgs {
    #[command(flatten)]
    source: ConfigArgs,
    /// URL of a running nats-server, overriding the configuration.
    #[arg(long)]
    nats_url: Option<String>,
}

#[derive(Debug, Args)]
struct GatewayArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Add N simulated packs (sim-01, sim-02...); at most 1000 packs in
    /// all, configured and simulated.
    #[arg(long, num_args = 0..=1, default_missing_value = "4", value_parser = parse_sim_count)]
    sim: Option<usize>,
    /// Serve the web page and /metrics on this address instead of
    /// `[http] listen` (port 0: any free port, logged at start).
    #[arg(long, value_name = "ADDRESS:PORT")]
    http_listen: Option<String>,
}

impl GatewayArgs {
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = self.broker.source.load()?;
        if let Some(url) = &self.broker.nats_url {
            config.broker.url = Some(url.clone());
        }
        if let Some(count) = self.sim {
            config.add_sim_packs(count)?;
        }
        if let Some(listen) = &self.http_listen {
            config.http.listen = listen.clone();
        }
        config.validate("command line")?;
        Ok(config)
    }
}

/// `--soak HOURS`: more than a minute, at most a week.
fn parse_soak_hours(text: &str) -> Result<f64, String> {
    let hours: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of hours"))?;
    if (1.0 / 60.0..=168.0).contains(&hours) {
        Ok(hours)
    } else {
        Err(format!(
            "{hours} hours: a soak runs from 0.017 (a minute) to 168 (a week)"
        ))
    }
}

impl Action {
    /// Whether it runs the gateway or one of its workers, as the service
    /// manager does.
    fn runs_workers(&self) -> bool {
        matches!(
            self,
            Action::Run(_)
                | Action::Collect(_)
                | Action::Data(_)
                | Action::Control(_)
                | Action::Monitor(_)
                | Action::Http(_)
                | Action::Mqtt(_)
                | Action::Bank(_)
                | Action::Cloud(cloud_cli::CloudArgs { action: None, .. })
        )
    }
}

fn main() -> ExitCode {
    // Before any thread: a bounded number of malloc arenas, so the
    // resident size does not creep over days.
    packgate::platform::limit_malloc_arenas();
    // A full disk (or file-size limit) must be an error we count, not a
    // signal that kills the gateway.
    packgate::platform::ignore_sigxfsz();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runs_workers = cli.command.runs_workers();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`packgate ... | head -1`):
        // nothing more to say, and nobody to say it to.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // Written, not `eprintln!`: a closed stderr must not panic.
            let _ = writeln!(std::io::stderr(), "Error: {error:?}");
            let unusable_config = error.chain().any(|cause| cause.is::<ConfigError>());
            if runs_workers && unusable_config {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The exit status of a gateway or worker whose configuration cannot be
/// used (sysexits' `EX_CONFIG`). The systemd unit does not restart on it
/// (`RestartPreventExitStatus=78`): restarting cannot fix a file, and a
/// unit left failed with the reason in its journal is what the operator
/// needs to see. Every other failure is restarted.
const EXIT_CONFIG: u8 = 78;

/// Whether `error` comes from writing to a pipe whose reader has gone.
/// Every output of the commands is written with `write!`/`writeln!` and
/// its error passed up, never `println!` (which panics on it): this is
/// how a closed pipe ends a command quietly. SIGPIPE keeps Rust's
/// disposition (ignored), so a long-running gateway whose socket or child
/// pipe breaks gets an error it handles instead of being killed.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Runs one subcommand to its end.
fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Run(args) => block_on(run_gateway(&args, WorkerSet::all(), "packgate")),
        Action::Collect(args) => block_on(run_one(&args, WorkerKind::Collect)),
        Action::Data(args) => block_on(run_one(&args, WorkerKind::Data)),
        Action::Control(args) => block_on(run_one(&args, WorkerKind::Control)),
        Action::Monitor(args) => block_on(run_one(&args, WorkerKind::Monitor)),
        Action::Http(args) => block_on(run_one(&args, WorkerKind::Http)),
        Action::Mqtt(args) => block_on(run_one(&args, WorkerKind::Mqtt)),
        Action::Bank(args) => block_on(run_one(&args, WorkerKind::Bank)),
        Action::Cloud(args) => block_on(cloud_cli::run(args)),
        Action::Desired(args) => block_on(desired_cli::run(args)),
        Action::Status { target } => block_on(status(&target)),
        Action::BrokerUsers { credentials, out } => broker_users(&credentials, &out),
        Action::Command {
            target,
            pack,
            bank,
            ttl_s,
            id,
            action: SetAction::Set { setting, value },
        } => block_on(command(&target, pack, bank, setting, value, ttl_s, id)),
        Action::CheckConfig { file } => check_config(file.as_deref()),
        Action::Query { what } => query::query(what),
        Action::Watch { target, once } => block_on(watch(&target, once)),
        Action::Sim {
            packs,
            seed,
            modbus_tcp,
            devices,
            modbus_rtu,
            baud_rate,
            slcan,
            faults,
            sunspec_layout,
            pylon_ascii,
            layout,
            jbd,
            daly,
            jk,
            inverter,
            record,
            inverter_load,
        } => block_on(sim(packgate::cli::sim::SimOptions {
            packs,
            seed,
            modbus_tcp,
            modbus_tcp_devices: devices,
            modbus_rtu,
            baud_rate,
            slcan,
            faults,
            sunspec_layout,
            framed: packgate::cli::sim::FramedLines {
                pylon_ascii,
                pylon_ascii_layout: layout,
                jbd,
                daly,
                jk,
            },
            inverter,
            record,
            inverter_load,
        })),
        Action::ResetAlarm { target } => block_on(reset_alarm(&target)),
        Action::Profiles { what } => profiles(&what),
        Action::Can {
            what: CanCommand::Decode { file },
        } => can_decode(&file),
        Action::Sunspec {
            what:
                SunSpecCommand::Scan {
                    address,
                    unit,
                    bases,
                },
        } => block_on(sunspec_scan(&address, unit, &bases)),
        Action::Bench(args) => {
            let json = args.json;
            block_on(bench(args.into_options()?, json))
        }
    }
}

/// Runs `future` to its end on one thread: the workers are I/O-bound, and
/// one thread wakes once for whatever is ready instead of handing each
/// task between threads (the box has few cores; at 1 Hz those hand-offs
/// were most of the cost). Blocking work (SQLite) runs on tokio's blocking
/// threads.
fn block_on(future: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}
