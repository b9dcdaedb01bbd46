//! The `packgate` command.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use packgate::bench::{run_bench, BenchOptions};
use packgate::cli::render::{write_samples, OutputFormat};
use packgate::config::Config;
use packgate::runtime::{cancel_on_signals, run_workers, Broker, WorkerSet, BROKER_URL_FILE};
use packgate::store::SampleStore;
use packgate::telemetry::{init_logging, LogFormat};
use packgate::workers::collect::PackSet;
use packgate_protocol::PackId;
use tokio_util::sync::CancellationToken;

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
    Cloud(GatewayArgs),
    /// Workers, packs, streams, the cloud link, recent alarms and commands
    /// at a glance.
    Status {
        #[command(flatten)]
        target: BrokerArgs,
    },
    /// Send a command to a pack through the control worker.
    Command {
        #[command(flatten)]
        target: BrokerArgs,
        /// The pack.
        #[arg(long)]
        pack: PackId,
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
        /// The file.
        file: PathBuf,
    },
    /// Read stored data.
    Query {
        #[command(subcommand)]
        what: QueryCommand,
    },
    /// Show live samples, one line per pack.
    Watch {
        #[command(flatten)]
        target: BrokerArgs,
        /// Print one table after a second and exit.
        #[arg(long)]
        once: bool,
    },
    /// Serve simulated packs as real devices (Modbus TCP, Modbus RTU, slcan).
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
    /// Measure the whole pipeline with simulated packs.
    Bench {
        /// Simulated packs.
        #[arg(long, default_value_t = 100)]
        packs: usize,
        /// Seconds of polling.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Polls per second per pack; 0 as fast as possible.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// The nats-server executable.
        #[arg(long, default_value = "nats-server")]
        nats_server: PathBuf,
        /// End with one JSON object of the figures.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SetAction {
    /// Write one setting, such as `charge_current_limit_a 50`.
    Set {
        /// The setting, as named in the pack's profile.
        setting: String,
        /// The value, in the setting's unit.
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
enum CanCommand {
    /// Decode a candump log (`candump -l` or candump's console output)
    /// through the Pylontech BMS decoder.
    Decode {
        /// The log file.
        file: PathBuf,
    },
}

fn parse_fault(text: &str) -> Result<(u8, packgate_sim::Faults), String> {
    packgate::cli::sim::parse_fault(text).map_err(|e| e.to_string())
}

fn profiles(what: &ProfilesCommand) -> anyhow::Result<()> {
    use packgate_drivers::profile::Profile;
    match what {
        ProfilesCommand::List => {
            for name in Profile::builtin_names() {
                let description = Profile::builtin(name)
                    .map(|p| p.description)
                    .unwrap_or_default();
                println!("{name:<16} {description}");
            }
        }
        ProfilesCommand::Show { name } => match Profile::builtin_source(name) {
            Some(text) => print!("{text}"),
            None => bail!(
                "no built-in profile {name:?}; built-in: {}",
                Profile::builtin_names().join(", ")
            ),
        },
        ProfilesCommand::Check { file } => {
            let profile = Profile::load(file)?;
            println!(
                "{}: valid profile {:?}, {} register blocks, {} writable settings",
                file.display(),
                profile.name,
                profile.blocks.len(),
                profile.settings.len()
            );
        }
    }
    Ok(())
}

fn can_decode(file: &PathBuf) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut stdout = std::io::stdout().lock();
    for line in packgate_drivers::can::candump::replay(&text) {
        use std::io::Write as _;
        writeln!(stdout, "{line}")?;
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum QueryCommand {
    /// The latest samples of one pack, newest first.
    Samples {
        /// The pack.
        #[arg(long)]
        pack: PackId,
        /// Most rows.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
        #[command(flatten)]
        source: ConfigArgs,
        /// The database file (default: from the configuration).
        #[arg(long)]
        database: Option<PathBuf>,
    },
}

/// Where the configuration comes from.
#[derive(Debug, Args)]
struct ConfigArgs {
    /// Configuration file (TOML). Without it the built-in defaults apply.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data directory, overriding the configuration's.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
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
    /// Add N simulated packs (sim-01, sim-02...).
    #[arg(long, num_args = 0..=1, default_missing_value = "4")]
    sim: Option<usize>,
}

impl GatewayArgs {
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = self.broker.source.load()?;
        if let Some(url) = &self.broker.nats_url {
            config.broker.url = Some(url.clone());
        }
        if let Some(count) = self.sim {
            config.add_sim_packs(count);
        }
        config.validate("command line")?;
        Ok(config)
    }
}

async fn run_gateway(args: &GatewayArgs, workers: WorkerSet, name: &str) -> anyhow::Result<()> {
    let config = args.load()?;
    if workers.collect && config.packs.is_empty() {
        bail!("no packs configured: add [[packs]] to the configuration or pass --sim N");
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    let packs = PackSet::from_config(&config)?;
    let broker = Broker::open(&config, name)
        .await
        .context("opening the broker")?;
    tracing::info!(
        url = %broker.url,
        packs = config.packs.len(),
        data_dir = %config.data_dir.display(),
        "packgate {} running; Ctrl-C to stop",
        env!("CARGO_PKG_VERSION")
    );
    let result = run_workers(&config, workers, packs, &broker, shutdown).await;
    broker.close(&config.data_dir).await;
    let report = result?;
    if let Some(collect) = &report.collect {
        tracing::info!(
            published = collect.samples_published.get(),
            duplicates = collect.samples_duplicate.get(),
            dropped = collect.samples_dropped.get(),
            unpublished = report.publisher.unpublished,
            "collect worker stopped"
        );
    }
    if let Some(data) = &report.data {
        tracing::info!(
            stored = data.samples_stored.get(),
            duplicates = data.samples_duplicate.get(),
            malformed = data.messages_malformed.get(),
            "data worker stopped"
        );
    }
    Ok(())
}

/// Runs the one worker `name` in this process.
async fn run_one(args: &GatewayArgs, name: &'static str) -> anyhow::Result<()> {
    let workers = match name {
        "collect" => WorkerSet {
            collect: true,
            ..WorkerSet::NONE
        },
        "data" => WorkerSet {
            data: true,
            ..WorkerSet::NONE
        },
        "control" => WorkerSet {
            control: true,
            ..WorkerSet::NONE
        },
        "monitor" => WorkerSet {
            monitor: true,
            ..WorkerSet::NONE
        },
        _ => WorkerSet {
            cloud: true,
            ..WorkerSet::NONE
        },
    };
    run_gateway(args, workers, &format!("packgate-{name}")).await
}

/// The URL of the broker: the flag, the configuration, or the embedded
/// broker a `packgate run` in the same data directory started.
fn broker_url(target: &BrokerArgs, config: &Config) -> anyhow::Result<String> {
    Ok(match (&target.nats_url, &config.broker.url) {
        (Some(url), _) | (None, Some(url)) => url.clone(),
        (None, None) => std::fs::read_to_string(config.data_dir.join(BROKER_URL_FILE))
            .map(|s| s.trim().to_owned())
            .with_context(|| {
                format!(
                    "no broker URL: pass --nats-url, or run `packgate run` with data directory {}",
                    config.data_dir.display()
                )
            })?,
    })
}

async fn connect_client(url: &str, name: &str) -> anyhow::Result<async_nats::Client> {
    tokio::time::timeout(
        Duration::from_secs(5),
        async_nats::ConnectOptions::new().name(name).connect(url),
    )
    .await
    .with_context(|| format!("connecting to {url}: timed out"))?
    .with_context(|| format!("connecting to {url}"))
}

async fn status(target: &BrokerArgs) -> anyhow::Result<()> {
    let config = target.source.load()?;
    let client = match broker_url(target, &config) {
        Ok(url) => connect_client(&url, "packgate-status").await.ok(),
        Err(_) => None,
    };
    let mut stdout = std::io::stdout();
    packgate::cli::status::status(&config, client, &mut stdout).await?;
    Ok(())
}

async fn command(
    target: &BrokerArgs,
    pack: PackId,
    setting: String,
    value: f64,
    ttl_s: u64,
    id: Option<String>,
) -> anyhow::Result<()> {
    use packgate_protocol::{
        Command as PackCommand, CommandId, CommandOrigin, CommandOutcome, SettingName,
    };
    let config = target.source.load()?;
    let client = connect_client(&broker_url(target, &config)?, "packgate-command").await?;
    let now = packgate::telemetry::now_ms();
    let id = id.unwrap_or_else(|| format!("local-{now}-{}", std::process::id()));
    let ttl_ms = i64::try_from(ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let command = PackCommand {
        id: CommandId(id.clone()),
        pack_id: pack,
        setting: SettingName(setting),
        value,
        origin: CommandOrigin::Local,
        issued_at_ms: now,
        expires_at_ms: now.saturating_add(ttl_ms),
    };
    let wait = config.control.default_deadline() + Duration::from_secs(2);
    let reply = packgate::workers::control::send_command(&client, &command, wait).await?;
    match reply.outcome {
        CommandOutcome::Applied { read_back } => println!("{id}: applied, read back {read_back}"),
        CommandOutcome::Rejected { reason } => bail!("{id}: rejected: {reason}"),
        CommandOutcome::Failed { error } => bail!("{id}: failed: {error}"),
        CommandOutcome::TimedOut => bail!("{id}: timed out"),
    }
    Ok(())
}

async fn watch(target: &BrokerArgs, once: bool) -> anyhow::Result<()> {
    let config = target.source.load()?;
    let client = connect_client(&broker_url(target, &config)?, "packgate-watch").await?;
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    let mut stdout = std::io::stdout();
    packgate::cli::watch::watch(client, &mut stdout, once, shutdown).await?;
    Ok(())
}

fn query_samples(
    pack: &PackId,
    limit: usize,
    format: OutputFormat,
    source: &ConfigArgs,
    database: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let path = match database {
        Some(path) => path.clone(),
        None => source.load()?.database_path(),
    };
    let store = SampleStore::open_read_only(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let rows = store.latest(pack, limit)?;
    if rows.is_empty() {
        eprintln!("no samples of pack {pack} in {}", path.display());
    }
    let mut stdout = std::io::stdout().lock();
    write_samples(&mut stdout, &rows, format)?;
    Ok(())
}

async fn bench(
    packs: usize,
    duration: u64,
    rate: f64,
    nats_server: PathBuf,
    json: bool,
) -> anyhow::Result<()> {
    let options = BenchOptions {
        packs,
        duration: Duration::from_secs(duration),
        rate_hz: rate,
        nats_server_path: nats_server,
    };
    eprintln!(
        "bench: {packs} simulated packs at {rate} Hz (0 = as fast as possible) for {duration} s"
    );
    let r = run_bench(&options).await?;
    println!("samples published   {:>12}", r.published);
    println!("samples stored      {:>12}", r.stored);
    println!("lost                {:>12}", r.lost);
    println!("duplicated          {:>12}", r.duplicated);
    println!("samples/s stored    {:>12.0}", r.samples_per_s);
    println!(
        "poll to commit, ms  p50 {:.1}  p99 {:.1}  max {:.1}",
        r.latency_ms_p50, r.latency_ms_p99, r.latency_ms_max
    );
    println!("CPU s / 1k samples  {:>12.4}", r.cpu_s_per_1k);
    println!("gateway peak RSS MB {:>12.1}", r.gateway_rss_mb);
    println!("broker peak RSS MB  {:>12.1}", r.broker_rss_mb);
    if json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // A full disk (or file-size limit) must be an error we count, not a
    // signal that kills the gateway.
    packgate::platform::ignore_sigxfsz();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    if let Action::CheckConfig { file } = &cli.command {
        let config = Config::load(file)?;
        println!("{}: valid, {} packs", file.display(), config.packs.len());
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    if let Action::Query {
        what:
            QueryCommand::Samples {
                pack,
                limit,
                format,
                source,
                database,
            },
    } = &cli.command
    {
        return query_samples(pack, *limit, *format, source, database.as_ref());
    }
    match &cli.command {
        Action::Profiles { what } => return profiles(what),
        Action::Can {
            what: CanCommand::Decode { file },
        } => return can_decode(file),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Action::Run(args) => run_gateway(&args, WorkerSet::ALL, "packgate").await,
            Action::Collect(args) => run_one(&args, "collect").await,
            Action::Data(args) => run_one(&args, "data").await,
            Action::Control(args) => run_one(&args, "control").await,
            Action::Monitor(args) => run_one(&args, "monitor").await,
            Action::Cloud(args) => run_one(&args, "cloud").await,
            Action::Status { target } => status(&target).await,
            Action::ResetAlarm { target } => {
                let config = target.source.load()?;
                let client =
                    connect_client(&broker_url(&target, &config)?, "packgate-reset").await?;
                tokio::time::timeout(
                    Duration::from_secs(5),
                    client.request(packgate::outputs::RESET_SUBJECT, "".into()),
                )
                .await
                .context("no gateway with outputs answered within 5 s")?
                .context("no gateway with outputs is running")?;
                println!("alarm relay reset");
                Ok(())
            }
            Action::Command {
                target,
                pack,
                ttl_s,
                id,
                action: SetAction::Set { setting, value },
            } => command(&target, pack, setting, value, ttl_s, id).await,
            Action::Watch { target, once } => watch(&target, once).await,
            Action::Bench {
                packs,
                duration,
                rate,
                nats_server,
                json,
            } => bench(packs, duration, rate, nats_server, json).await,
            Action::Sim {
                packs,
                seed,
                modbus_tcp,
                modbus_rtu,
                baud_rate,
                slcan,
                faults,
            } => {
                let shutdown = CancellationToken::new();
                cancel_on_signals(shutdown.clone());
                let options = packgate::cli::sim::SimOptions {
                    packs,
                    seed,
                    modbus_tcp,
                    modbus_rtu,
                    baud_rate,
                    slcan,
                    faults,
                };
                packgate::cli::sim::run_sim(options, shutdown).await?;
                Ok(())
            }
            Action::CheckConfig { .. }
            | Action::Query { .. }
            | Action::Profiles { .. }
            | Action::Can { .. } => Ok(()),
        }
    })
}
