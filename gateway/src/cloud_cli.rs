//! `packgate cloud command`: a command to a pack of a gateway through the
//! cloud, sent the way an application in the cloud sends it.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use packgate::config::{CloudConfig, Config, ConfigSource};
use packgate_protocol::{BankId, PackId};

use packgate::workers::WorkerKind;

use crate::{GatewayArgs, SetAction};

/// `packgate cloud`: the cloud worker alone, or a command through the
/// cloud.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct CloudArgs {
    #[command(flatten)]
    worker: GatewayArgs,
    #[command(subcommand)]
    pub(crate) action: Option<CloudAction>,
}

/// Runs the cloud worker, or sends the command.
pub(crate) async fn run(args: CloudArgs) -> anyhow::Result<()> {
    match args.action {
        None => crate::commands::run_one(&args.worker, WorkerKind::Cloud).await,
        Some(CloudAction::Command(command)) => cloud_command(command).await,
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum CloudAction {
    /// Send a command to a pack of a gateway through the cloud (request-reply
    /// on `packgate.<gateway>.control`) and print its outcome.
    Command(CloudCommandArgs),
}

/// Where the cloud is, which gateway, and the command.
#[derive(Debug, Args)]
pub(crate) struct CloudCommandArgs {
    /// A cloud server (repeatable), such as tls://cloud.example.com:4222; a
    /// user and password, or a token, may be in it
    /// (nats://user:password@host:4222). Default: the configuration's
    /// `[cloud] urls`.
    #[arg(long = "url")]
    urls: Vec<String>,
    /// The gateway's id in the cloud (its `cloud.gateway_id`). Default: the
    /// configuration's.
    #[arg(long)]
    gateway: Option<String>,
    /// A .creds file (user JWT and NKey seed) to connect with.
    #[arg(long)]
    creds: Option<PathBuf>,
    /// PEM file of the CAs the cloud's certificate is checked against.
    #[arg(long)]
    tls_ca_file: Option<PathBuf>,
    /// A configuration whose `[cloud]` section gives what the flags do not
    /// (URLs, gateway id, credentials, TLS). Without it: the file the other
    /// commands read, if any.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The pack.
    #[arg(long, required_unless_present = "bank", conflicts_with = "bank")]
    pack: Option<PackId>,
    /// The bank, to lower one of its site limits: site_max_charge_a,
    /// site_max_discharge_a (A) or absorption_voltage_v (V).
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
}

/// The `[cloud]` section a command run from the cloud's side connects
/// with: the configuration's (`config`, else the file the other commands
/// read, else the defaults), with the connection flags on top.
pub(crate) fn cloud_section(
    config: Option<&std::path::Path>,
    urls: &[String],
    creds: Option<&std::path::Path>,
    tls_ca_file: Option<&std::path::Path>,
) -> anyhow::Result<CloudConfig> {
    let source = ConfigSource::for_command(config);
    let mut cloud = match source.path() {
        Some(path) => {
            Config::load(path)
                .with_context(|| format!("the configuration {source}"))?
                .cloud
        }
        None => Default::default(),
    };
    cloud.enabled = true;
    if !urls.is_empty() {
        cloud.urls = urls.to_vec();
    }
    if let Some(creds) = creds {
        (cloud.user, cloud.password, cloud.token, cloud.nkey_seed) = (None, None, None, None);
        cloud.creds_file = Some(creds.to_owned());
    }
    if let Some(ca) = tls_ca_file {
        cloud.tls_ca_file = Some(ca.to_owned());
    }
    Ok(cloud)
}

/// `packgate cloud command`: a command to a gateway's pack through the
/// cloud, as an application in the cloud sends it; prints its outcome.
pub(crate) async fn cloud_command(args: CloudCommandArgs) -> anyhow::Result<()> {
    use packgate::workers::control::format_value;
    use packgate_protocol::{
        Command as PackCommand, CommandId, CommandOrigin, CommandOutcome, SettingName,
    };
    let mut cloud = cloud_section(
        args.config.as_deref(),
        &args.urls,
        args.creds.as_deref(),
        args.tls_ca_file.as_deref(),
    )?;
    if let Some(gateway) = args.gateway {
        cloud.gateway_id = gateway;
    }
    let SetAction::Set { setting, value } = args.action;
    let now = packgate::telemetry::now_ms();
    let id = args
        .id
        .unwrap_or_else(|| format!("cloud-{now}-{}", std::process::id()));
    let ttl_ms = i64::try_from(args.ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let command = PackCommand {
        id: CommandId(id.clone()),
        pack_id: crate::commands::command_target(args.pack, args.bank)?,
        setting: SettingName(setting),
        value,
        origin: CommandOrigin::Cloud,
        issued_at_ms: now,
        expires_at_ms: now.saturating_add(ttl_ms),
    };
    // The gateway answers by the command's expiry at the latest.
    let wait = Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)) + Duration::from_secs(2);
    let reply = packgate::workers::cloud::request_command(&cloud, &command, wait).await?;
    match reply.outcome {
        CommandOutcome::Applied { read_back } => {
            writeln!(
                std::io::stdout().lock(),
                "{id}: applied, read back {}",
                format_value(read_back)
            )?;
        }
        CommandOutcome::Rejected { reason } => bail!("{id}: rejected: {reason}"),
        CommandOutcome::Failed { error } => bail!("{id}: failed: {error}"),
        CommandOutcome::TimedOut => bail!("{id}: timed out"),
    }
    Ok(())
}
