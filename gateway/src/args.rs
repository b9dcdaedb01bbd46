//! Where a command finds its configuration and its broker, and what a
//! gateway or worker command adds to them.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use packgate::config::{Config, ConfigError, ConfigSource, MAX_PACKS};

/// `--sim N`: a count up to [`MAX_PACKS`], refused before anything is
/// allocated for it.
pub(crate) fn parse_sim_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count) if count <= MAX_PACKS => Ok(count),
        Ok(count) => Err(format!(
            "{count} simulated packs; one gateway polls at most {MAX_PACKS}"
        )),
        Err(e) => Err(format!("{text:?} is not a number of packs: {e}")),
    }
}

/// Where the configuration comes from.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// Configuration file (TOML). Without it: the file $PACKGATE_CONFIG
    /// names (set but empty: the built-in defaults), else
    /// /etc/packgate/packgate.toml if it exists, else the built-in
    /// defaults. `status` names the one it read; RUST_LOG=debug logs it.
    #[arg(long, short)]
    pub(crate) config: Option<PathBuf>,
    /// Data directory, overriding the configuration's.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    pub(crate) fn load(&self) -> anyhow::Result<Config> {
        Ok(self.load_with_source()?.0)
    }

    /// The configuration, and the file it came from.
    pub(crate) fn load_with_source(&self) -> anyhow::Result<(Config, ConfigSource)> {
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
pub(crate) struct BrokerArgs {
    #[command(flatten)]
    pub(crate) source: ConfigArgs,
    /// URL of a running nats-server, overriding the configuration.
    #[arg(long)]
    pub(crate) nats_url: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,
    /// Add N simulated packs (sim-01, sim-02...); at most 1000 packs in
    /// all, configured and simulated.
    #[arg(long, num_args = 0..=1, default_missing_value = "4", value_parser = parse_sim_count)]
    pub(crate) sim: Option<usize>,
    /// Serve the web page and /metrics on this address instead of
    /// `[http] listen` (port 0: any free port, logged at start).
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub(crate) http_listen: Option<String>,
}

impl GatewayArgs {
    pub(crate) fn load(&self) -> anyhow::Result<Config> {
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
