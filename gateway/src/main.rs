//! The `packgate` command.

mod args;
mod bench_cli;
mod cloud_cli;
mod commands;
mod desired_cli;
mod query;
mod sim_cli;
mod worker_cli;

use commands::{
    bench, broker_users, can_decode, check_config, command, profiles, reset_alarm, run_gateway,
    run_one, sim, status, sunspec_scan, watch,
};

use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use args::{parse_sim_count, BrokerArgs, ConfigArgs, GatewayArgs};
use clap::{Parser, Subcommand};
use packgate::config::ConfigError;
use packgate::runtime::WorkerSet;
use packgate::telemetry::{init_logging, LogFormat};
use packgate_protocol::{BankId, PackId};
use query::QueryCommand;
use worker_cli::WorkerCommand;

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
    // Run only one worker: `packgate collect`, `packgate data`, ... (one
    // command per kind of worker that has one, from its kind's facts).
    #[command(flatten)]
    Worker(WorkerCommand),
    /// Run only the cloud worker: upload, and the cloud's commands.
    /// `packgate cloud command ...` instead sends a command to a gateway
    /// through the cloud, as an application in the cloud does.
    Cloud(cloud_cli::CloudArgs),
    /// Desired settings in the cloud: set, get, list or delete the value a
    /// gateway keeps a pack's setting at.
    Desired(desired_cli::DesiredArgs),
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
    Sim(Box<sim_cli::SimArgs>),
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
                | Action::Worker(_)
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
        Action::Worker(WorkerCommand { kind, args }) => block_on(run_one(&args, kind)),
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
        Action::Sim(args) => block_on(sim(args.into_options())),
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
