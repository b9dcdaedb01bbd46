//! `packgate desired`: the desired settings of gateways, in the cloud's
//! bucket, set and read the way any cloud tool does.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand};
use packgate::config::CloudConfig;
use packgate::workers::cloud::desired::{
    delete_desired, list_desired, set_desired, DesiredEntry, DesiredValue,
};
use packgate::workers::control::format_value;

/// Where the cloud is, and what to do there.
#[derive(Debug, Args)]
pub(crate) struct DesiredArgs {
    /// A cloud server (repeatable), such as tls://cloud.example.com:4222; a
    /// user and password may be in it (nats://ops:password@host:4222).
    /// Default: the configuration's `[cloud] urls`.
    #[arg(long = "cloud", global = true)]
    urls: Vec<String>,
    /// A .creds file (user JWT and NKey seed) to connect with.
    #[arg(long, global = true)]
    creds: Option<PathBuf>,
    /// PEM file of the CAs the cloud's certificate is checked against.
    #[arg(long, global = true)]
    tls_ca_file: Option<PathBuf>,
    /// A configuration whose `[cloud]` section gives what the flags do not
    /// (URLs, gateway id, credentials, TLS, the bucket's name).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    action: DesiredAction,
}

#[derive(Debug, Subcommand)]
enum DesiredAction {
    /// Set the desired value of a setting of a pack on one gateway or many
    /// (`--gateway` repeated); each gateway applies it as soon as it can.
    Set {
        /// A gateway (repeatable). Default: the configuration's.
        #[arg(long = "gateway")]
        gateways: Vec<String>,
        /// The pack.
        #[arg(long)]
        pack: String,
        /// Who sets it, shown in the gateway's reports.
        #[arg(long)]
        author: Option<String>,
        /// Seconds after which the value is no longer applied.
        #[arg(long)]
        expires_in_s: Option<u64>,
        /// The setting, as named in the pack's profile.
        setting: String,
        /// The value, in the setting's unit.
        #[arg(allow_negative_numbers = true)]
        value: f64,
    },
    /// Print the desired value of one setting, and the gateway's last
    /// report on it.
    Get {
        /// The gateway. Default: the configuration's.
        #[arg(long)]
        gateway: Option<String>,
        /// The pack.
        #[arg(long)]
        pack: String,
        /// The setting.
        setting: String,
    },
    /// Print every desired setting of a gateway, and where each stands.
    List {
        /// The gateway. Default: the configuration's.
        #[arg(long)]
        gateway: Option<String>,
        /// Only this pack's.
        #[arg(long)]
        pack: Option<String>,
    },
    /// Delete the desired value of a setting: the gateway stops enforcing
    /// it (the pack keeps what it has).
    Delete {
        /// The gateway. Default: the configuration's.
        #[arg(long)]
        gateway: Option<String>,
        /// The pack.
        #[arg(long)]
        pack: String,
        /// The setting.
        setting: String,
    },
}

/// The `[cloud]` section the command connects with: the configuration's,
/// with the flags on top.
fn cloud_config(args: &DesiredArgs) -> anyhow::Result<CloudConfig> {
    let cloud = crate::cloud_cli::cloud_section(
        args.config.as_deref(),
        &args.urls,
        args.creds.as_deref(),
        args.tls_ca_file.as_deref(),
    )?;
    if cloud.desired_bucket.is_empty() {
        bail!("cloud.desired_bucket is empty: desired settings are off in this configuration");
    }
    Ok(cloud)
}

/// The gateway named, else the configuration's.
fn gateway_or_configured(gateway: Option<String>, cloud: &CloudConfig) -> anyhow::Result<String> {
    match gateway {
        Some(gateway) => Ok(gateway),
        None if !cloud.gateway_id.is_empty() => Ok(cloud.gateway_id.clone()),
        None => bail!("which gateway? give --gateway (no cloud.gateway_id in the configuration)"),
    }
}

/// Runs `packgate desired ...`.
pub(crate) async fn run(args: DesiredArgs) -> anyhow::Result<()> {
    let mut cloud = cloud_config(&args)?;
    let mut out = std::io::stdout().lock();
    match args.action {
        DesiredAction::Set {
            gateways,
            pack,
            author,
            expires_in_s,
            setting,
            value,
        } => {
            let gateways = if gateways.is_empty() {
                vec![gateway_or_configured(None, &cloud)?]
            } else {
                gateways
            };
            // The connection's own name and inbox follow the first one.
            cloud.gateway_id.clone_from(&gateways[0]);
            let expires_at_ms = expires_in_s.map(|s| {
                packgate::telemetry::now_ms()
                    .saturating_add(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
            });
            let desired = DesiredValue {
                value,
                author,
                expires_at_ms,
            };
            let revisions = set_desired(&cloud, &gateways, &pack, &setting, &desired).await?;
            for (key, revision) in revisions {
                writeln!(out, "{key} = {} (revision {revision})", format_value(value))?;
            }
        }
        DesiredAction::Get {
            gateway,
            pack,
            setting,
        } => {
            let gateway = gateway_or_configured(gateway, &cloud)?;
            cloud.gateway_id.clone_from(&gateway);
            let entries = list_desired(&cloud, &gateway, Some(&pack)).await?;
            let Some(entry) = entries.iter().find(|e| e.setting == setting) else {
                bail!("no desired value for {gateway}.{pack}.{setting}");
            };
            writeln!(out, "{}", line(entry))?;
        }
        DesiredAction::List { gateway, pack } => {
            let gateway = gateway_or_configured(gateway, &cloud)?;
            cloud.gateway_id.clone_from(&gateway);
            for entry in list_desired(&cloud, &gateway, pack.as_deref()).await? {
                writeln!(out, "{}", line(&entry))?;
            }
        }
        DesiredAction::Delete {
            gateway,
            pack,
            setting,
        } => {
            let gateway = gateway_or_configured(gateway, &cloud)?;
            cloud.gateway_id.clone_from(&gateway);
            delete_desired(&cloud, &gateway, &pack, &setting).await?;
            writeln!(out, "{gateway}.{pack}.{setting} deleted")?;
        }
    }
    Ok(())
}

/// `site-7.sim-01.charge_current_limit_a = 40 (revision 3): applied, read back 40 (revision 3)`.
fn line(entry: &DesiredEntry) -> String {
    let mut text = format!(
        "{}.{}.{} = {} (revision {})",
        entry.gateway_id,
        entry.pack,
        entry.setting,
        format_value(entry.value.value),
        entry.revision
    );
    if let Some(author) = &entry.value.author {
        text.push_str(&format!(" by {author}"));
    }
    let Some(report) = &entry.report else {
        text.push_str(": no report from the gateway yet");
        return text;
    };
    let status = report["status"].as_str().unwrap_or("?");
    text.push_str(&format!(": {status}"));
    if let Some(read_back) = report["read_back"].as_f64() {
        text.push_str(&format!(", read back {}", format_value(read_back)));
    }
    if let Some(reason) = report["reason"].as_str() {
        text.push_str(&format!(" ({reason})"));
    }
    if let Some(revision) = report["revision"].as_u64() {
        if revision != entry.revision {
            text.push_str(&format!(" (for revision {revision}, not yet the latest)"));
        }
    }
    text
}
