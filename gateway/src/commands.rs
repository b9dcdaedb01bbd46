//! The handlers of the `packgate` subcommands that are more than a call
//! into the library.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use packgate::bench::soak::SoakFigures;
use packgate::bench::{run_bench, BenchOptions, BenchReport};
use packgate::broker::{BrokerCredentials, BrokerUser};
use packgate::cli::sim::{run_sim, SimOptions};
use packgate::config::{Config, ConfigSource, CONFIG_ENV, SYSTEM_CONFIG};
use packgate::runtime::{
    cancel_on_signals, credentials_path, run_workers, Broker, WorkerSet, BROKER_URL_FILE,
};
use packgate::workers::collect::PackSet;
use packgate::workers::WorkerKind;
use packgate_protocol::{BankId, PackId};
use tokio_util::sync::CancellationToken;

use crate::{BrokerArgs, GatewayArgs, ProfilesCommand};

/// Standard output, locked. Commands write through it with `write!` and
/// pass the error up: a reader that went away (`| head -1`) then ends the
/// command quietly (see `main`), where `println!` would panic.
fn stdout() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

/// What a profile says of itself, or that it says nothing.
fn or_unstated(text: &str) -> &str {
    if text.trim().is_empty() {
        "not stated by the profile"
    } else {
        text
    }
}

pub(crate) fn profiles(what: &ProfilesCommand) -> anyhow::Result<()> {
    use packgate_drivers::profile::Profile;
    match what {
        ProfilesCommand::List => {
            let mut out = stdout();
            writeln!(
                out,
                "Modbus profiles (driver = \"modbus\", profile = NAME):"
            )?;
            for name in Profile::builtin_names() {
                let Some(profile) = Profile::builtin(name) else {
                    continue;
                };
                writeln!(out, "  {name:<16} {}", profile.description)?;
                writeln!(
                    out,
                    "  {:<16} map from: {}",
                    "",
                    or_unstated(&profile.source)
                )?;
                writeln!(
                    out,
                    "  {:<16} checked against: {}",
                    "",
                    or_unstated(&profile.checked_against)
                )?;
            }
            writeln!(out, "Drivers with their own protocol (driver = NAME):")?;
            for driver in packgate_drivers::provenance::DRIVERS {
                writeln!(
                    out,
                    "  {:<16} {} over {}",
                    driver.driver, driver.protocol, driver.transport
                )?;
                writeln!(out, "  {:<16} packs: {}", "", driver.packs)?;
                writeln!(out, "  {:<16} map from: {}", "", driver.source)?;
                writeln!(
                    out,
                    "  {:<16} checked against: {}",
                    "", driver.checked_against
                )?;
            }
        }
        ProfilesCommand::Show { name } => match Profile::builtin_source(name) {
            Some(text) => write!(stdout(), "{text}")?,
            None => bail!(
                "no built-in profile {name:?}; built-in: {}",
                Profile::builtin_names().join(", ")
            ),
        },
        ProfilesCommand::Check { file } => {
            let profile = Profile::load(file)?;
            writeln!(
                stdout(),
                "{}: valid profile {:?}, {} register blocks, {} writable settings",
                file.display(),
                profile.name,
                profile.blocks.len(),
                profile.settings.len()
            )?;
        }
    }
    Ok(())
}

pub(crate) fn can_decode(file: &PathBuf) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut stdout = std::io::stdout().lock();
    for line in packgate_drivers::can::candump::replay(&text) {
        use std::io::Write as _;
        writeln!(stdout, "{line}")?;
    }
    Ok(())
}

pub(crate) async fn run_gateway(
    args: &GatewayArgs,
    workers: WorkerSet,
    name: &str,
) -> anyhow::Result<()> {
    let config = args.load()?;
    if workers.contains(WorkerKind::Cloud) {
        config.check_files("the configuration")?;
    }
    if workers.contains(WorkerKind::Collect) && config.packs.is_empty() {
        bail!("no packs configured: add [[packs]] to the configuration or pass --sim N");
    }
    if workers == WorkerSet::only(WorkerKind::Bank) && config.banks.is_empty() {
        bail!("no banks configured: add [[banks]] to the configuration");
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

/// Runs the one worker `kind` in this process.
pub(crate) async fn run_one(args: &GatewayArgs, kind: WorkerKind) -> anyhow::Result<()> {
    run_gateway(args, WorkerSet::only(kind), &kind.process_name()).await
}

/// `packgate check-config`: loads the file (`file`, or the one a command
/// reads by default) and prints it with every default filled in.
pub(crate) fn check_config(file: Option<&Path>) -> anyhow::Result<()> {
    let source = ConfigSource::for_command(file);
    let Some(file) = source.path() else {
        bail!(
            "no configuration file to check: name one, set ${CONFIG_ENV}, or create {SYSTEM_CONFIG}"
        );
    };
    let config = Config::load(file)?;
    // The files the configuration names, as the workers will read them.
    config.check_files(&file.display().to_string())?;
    writeln!(
        stdout(),
        "{}: valid, {} packs",
        file.display(),
        config.packs.len()
    )?;
    write!(stdout(), "{}", toml::to_string_pretty(&config)?)?;
    Ok(())
}

/// `packgate reset-alarm`: asks the gateway with outputs to reset a
/// latched alarm relay.
pub(crate) async fn reset_alarm(target: &BrokerArgs) -> anyhow::Result<()> {
    let config = target.source.load()?;
    let client = connect_client(&config, &broker_url(target, &config)?, "packgate-reset").await?;
    let origin = format!(
        "operator@{}",
        packgate::telemetry::snapshot::instance_name()
    );
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(packgate::outputs::RESET_SUBJECT, origin.into()),
    )
    .await
    .context("no gateway with outputs answered within 5 s")?
    .context("no gateway with outputs is running")?;
    let answer = String::from_utf8_lossy(&reply.payload);
    if answer != "ok" {
        anyhow::bail!("the gateway {answer}");
    }
    writeln!(stdout(), "alarm relay reset (audited)")?;
    Ok(())
}

/// `packgate broker-users`: creates the broker credentials file (mode
/// 0600) if it is missing, and writes the nats-server users file from it.
pub(crate) fn broker_users(credentials: &Path, out: &Path) -> anyhow::Result<()> {
    let credentials = BrokerCredentials::load_or_create(credentials)?;
    packgate::broker::auth::write_private(out, &credentials.authorization_block())
        .with_context(|| format!("writing {}", out.display()))?;
    let users: Vec<_> = BrokerUser::all().iter().map(|u| u.name()).collect();
    writeln!(stdout(), "{}: users {}", out.display(), users.join(", "))?;
    Ok(())
}

/// `packgate sunspec scan`: prints the models found, or fails with why
/// there are none.
pub(crate) async fn sunspec_scan(address: &str, unit: u8, bases: &[u16]) -> anyhow::Result<()> {
    let map = packgate::cli::sunspec::scan(address, unit, bases, Duration::from_secs(2)).await?;
    write!(stdout(), "{}", packgate::cli::sunspec::render(&map))?;
    Ok(())
}

/// `packgate sim`: serves simulated packs until a signal.
pub(crate) async fn sim(options: SimOptions) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    run_sim(options, shutdown).await?;
    Ok(())
}

/// The URL of the broker: the flag, the configuration, or the embedded
/// broker a `packgate run` in the same data directory started.
pub(crate) fn broker_url(target: &BrokerArgs, config: &Config) -> anyhow::Result<String> {
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

/// Connects to `url` as the operator user, with the password from the
/// credentials file the configuration points at (or the data directory's,
/// for the embedded broker); anonymously when there is none.
pub(crate) async fn connect_client(
    config: &Config,
    url: &str,
    name: &str,
) -> anyhow::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new().name(name);
    if let Some(path) = credentials_path(config).filter(|path| path.exists()) {
        let credentials = BrokerCredentials::load(&path)?;
        let user = BrokerUser::Operator;
        options = options
            .user_and_password(
                user.name().to_owned(),
                credentials.password(user).unwrap_or_default().to_owned(),
            )
            .custom_inbox_prefix(user.inbox_prefix());
    }
    tokio::time::timeout(Duration::from_secs(5), options.connect(url))
        .await
        .with_context(|| format!("connecting to {url}: timed out"))?
        .with_context(|| format!("connecting to {url}"))
}

pub(crate) async fn status(target: &BrokerArgs) -> anyhow::Result<()> {
    let (config, source) = target.source.load_with_source()?;
    let client = match broker_url(target, &config) {
        Ok(url) => connect_client(&config, &url, "packgate-status").await.ok(),
        Err(_) => None,
    };
    let mut stdout = std::io::stdout();
    packgate::cli::status::status(&config, &source, client, &mut stdout).await?;
    Ok(())
}

/// The id a command names its target by: the pack, or the bank (a bank's
/// name is a valid pack id, and never one of a pack).
pub(crate) fn command_target(pack: Option<PackId>, bank: Option<BankId>) -> anyhow::Result<PackId> {
    match (pack, bank) {
        (Some(pack), None) => Ok(pack),
        (None, Some(bank)) => {
            PackId::new(bank.as_str()).with_context(|| format!("bank name {bank}"))
        }
        _ => bail!("name either --pack or --bank"),
    }
}

/// Sends one command to the control worker and prints its outcome.
pub(crate) async fn command(
    target: &BrokerArgs,
    pack: Option<PackId>,
    bank: Option<BankId>,
    setting: String,
    value: f64,
    ttl_s: u64,
    id: Option<String>,
) -> anyhow::Result<()> {
    use packgate::workers::control::format_value;
    use packgate_protocol::{
        Command as PackCommand, CommandId, CommandOrigin, CommandOutcome, SettingName,
    };
    let pack = command_target(pack, bank)?;
    let config = target.source.load()?;
    let now = packgate::telemetry::now_ms();
    let id = id.unwrap_or_else(|| format!("local-{now}-{}", std::process::id()));
    // A row for this id means it was used before: say so, whatever the
    // reply (the control worker answers a repeat from that row).
    let used_before = earlier_use(&config, &id);
    let client = connect_client(&config, &broker_url(target, &config)?, "packgate-command").await?;
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
    // The same command again: its first result. (Another command under a
    // used id is refused by the control worker, which says what the id did.)
    if let Some(earlier) = used_before.filter(|row| {
        row.pack_id == command.pack_id.as_str()
            && row.setting == command.setting.0
            && row.value.to_bits() == command.value.to_bits()
    }) {
        eprintln!(
            "{id}: this id was already used for the same command ({} = {} on pack {}); \
             this is its result, nothing was written again",
            earlier.setting,
            format_value(earlier.value),
            earlier.pack_id,
        );
    }
    match reply.outcome {
        CommandOutcome::Applied { read_back } => {
            println!("{id}: applied, read back {}", format_value(read_back));
        }
        CommandOutcome::Rejected { reason } => bail!("{id}: rejected: {reason}"),
        CommandOutcome::Failed { error } => bail!("{id}: failed: {error}"),
        CommandOutcome::TimedOut => bail!("{id}: timed out"),
    }
    Ok(())
}

/// The audit row of `id`, if the audit store on this box has one.
fn earlier_use(config: &Config, id: &str) -> Option<packgate::workers::control::AuditRecord> {
    use packgate::workers::control::AuditStore;
    use packgate_protocol::CommandId;
    let path = config.data_dir.join(&config.control.database);
    let store = AuditStore::open_read_only(&path).ok()?;
    store.lookup(&CommandId(id.to_owned())).ok()?
}

pub(crate) async fn watch(target: &BrokerArgs, once: bool) -> anyhow::Result<()> {
    let config = target.source.load()?;
    let client = connect_client(&config, &broker_url(target, &config)?, "packgate-watch").await?;
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    let mut stdout = std::io::stdout();
    packgate::cli::watch::watch(client, &mut stdout, once, shutdown).await?;
    Ok(())
}

/// Runs the benchmark and prints its figures (and the report as JSON with
/// `json`).
pub(crate) async fn bench(options: BenchOptions, json: bool) -> anyhow::Result<()> {
    let _ = writeln!(std::io::stderr(), "{}", bench_banner(&options));
    let r = run_bench(&options).await?;
    write_bench_totals(&r)?;
    write_bench_steady(&r)?;
    if let Some(soak) = &r.soak {
        write_bench_soak(soak)?;
    }
    if json {
        writeln!(stdout(), "{}", serde_json::to_string(&r)?)?;
    }
    Ok(())
}

/// What a bench run is about to measure, for stderr.
fn bench_banner(options: &BenchOptions) -> String {
    format!(
        "bench: {} simulated packs ({}) at {} Hz (0 = as fast as possible) for {} s ({} s warm-up), durability {}, {}",
        options.packs,
        match options.transport {
            packgate::bench::BenchTransport::Sim => "in process",
            packgate::bench::BenchTransport::ModbusTcp => "Modbus TCP devices in a separate process",
        },
        options.rate_hz,
        options.duration.as_secs(),
        options.warm_up.as_secs(),
        options.durability.name(),
        match (options.soak || options.all_workers, &options.mqtt_broker) {
            (false, None) => "collect and data".to_owned(),
            (false, Some(broker)) => format!("collect, data and mqtt to {broker}"),
            (true, None) => "every local worker".to_owned(),
            (true, Some(broker)) => format!("every local worker and mqtt to {broker}"),
        }
    )
}

/// The whole run's counts, latencies and peaks.
fn write_bench_totals(r: &BenchReport) -> anyhow::Result<()> {
    writeln!(stdout(), "samples published   {:>12}", r.published)?;
    writeln!(stdout(), "samples stored      {:>12}", r.stored)?;
    writeln!(stdout(), "lost                {:>12}", r.lost)?;
    writeln!(stdout(), "duplicated          {:>12}", r.duplicated)?;
    writeln!(stdout(), "samples/s stored    {:>12.0}", r.samples_per_s)?;
    writeln!(
        stdout(),
        "poll to commit, ms  p50 {:.1}  p99 {:.1}  max {:.1}",
        r.latency_ms_p50,
        r.latency_ms_p99,
        r.latency_ms_max
    )?;
    writeln!(stdout(), "CPU s / 1k samples  {:>12.4}", r.cpu_s_per_1k)?;
    writeln!(stdout(), "gateway peak RSS MB {:>12.1}", r.gateway_rss_mb)?;
    writeln!(stdout(), "broker peak RSS MB  {:>12.1}", r.broker_rss_mb)?;
    writeln!(stdout(), "SQLite commits      {:>12}", r.sqlite_commits)?;
    Ok(())
}

/// The figures after the warm-up: CPU, RSS, latency and storage writes.
fn write_bench_steady(r: &BenchReport) -> anyhow::Result<()> {
    let w = &r.steady;
    writeln!(
        stdout(),
        "after warm-up ({:.0} s): CPU % of one core  gateway {:.3}  broker {:.3}",
        w.window_s,
        w.gateway_cpu_pct,
        w.broker_cpu_pct
    )?;
    writeln!(
        stdout(),
        "RSS MiB             gateway {:.1}  broker {:.1}",
        w.gateway_rss_mib,
        w.broker_rss_mib
    )?;
    writeln!(
        stdout(),
        "poll→commit ms      p50 {:.1}  p99 {:.1}  max {:.1}",
        w.latency_ms_p50,
        w.latency_ms_p99,
        w.latency_ms_max
    )?;
    let per_hour = |v: Option<f64>| {
        v.map_or_else(
            || "not accounted".to_owned(),
            |v| format!("{:.1} MiB", v / (1024.0 * 1024.0)),
        )
    };
    writeln!(
        stdout(),
        "storage writes / hour  gateway {}  broker {}",
        per_hour(w.gateway_written_bytes_per_hour),
        per_hour(w.broker_written_bytes_per_hour)
    )?;
    let kib = |v: Option<f64>| v.map_or_else(|| "not accounted".to_owned(), |v| format!("{v:.1}"));
    writeln!(
        stdout(),
        "disk KiB / 1k samples  gateway {}  broker {}",
        kib(r.gateway_written_kib_per_1k),
        kib(r.broker_written_kib_per_1k)
    )?;
    Ok(())
}

/// The soak's memory figures: RSS and heap, and their slopes.
fn write_bench_soak(soak: &SoakFigures) -> anyhow::Result<()> {
    let slope = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:+.3}"));
    writeln!(
        stdout(),
        "RSS MiB after warm-up ({:.0} min) {:.1}, at the end {:.1}",
        soak.warm_up_s / 60.0,
        soak.rss_mib_after_warm_up,
        soak.rss_mib_end
    )?;
    writeln!(
        stdout(),
        "RSS slope MiB/hour  after warm-up {}  second half {}",
        slope(soak.rss_slope_mib_per_hour),
        slope(soak.rss_slope_last_half_mib_per_hour)
    )?;
    if let (Some(start), Some(end)) = (soak.heap_mib_after_warm_up, soak.heap_mib_end) {
        writeln!(
            stdout(),
            "heap in use MiB after warm-up {start:.1}, at the end {end:.1} (SQLite {:.1} -> {:.1})",
            soak.sqlite_mib_after_warm_up,
            soak.sqlite_mib_end
        )?;
        writeln!(
            stdout(),
            "heap slope MiB/hour after warm-up {}  second half {}",
            slope(soak.heap_slope_mib_per_hour),
            slope(soak.heap_slope_last_half_mib_per_hour)
        )?;
    }
    Ok(())
}
