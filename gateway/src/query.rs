//! `packgate query`: what the data worker stored, read from its database.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use packgate::cli::banks::write_bank_states;
use packgate::cli::render::{write_samples, OutputFormat};
use packgate::store::SampleStore;
use packgate_protocol::{BankId, PackId};

use crate::ConfigArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum QueryCommand {
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
    /// The latest states of one bank, newest first: packs online, V, A,
    /// SoC, the limits and what limits them.
    Banks {
        /// The bank.
        #[arg(long)]
        bank: BankId,
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

/// The store the data worker writes: `database`, else the configuration's.
fn open(source: &ConfigArgs, database: Option<PathBuf>) -> anyhow::Result<(SampleStore, PathBuf)> {
    let path = match database {
        Some(path) => path,
        None => source.load()?.database_path(),
    };
    let store = SampleStore::open_read_only(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok((store, path))
}

/// Runs one `packgate query` command.
pub(crate) fn query(what: QueryCommand) -> anyhow::Result<()> {
    match what {
        QueryCommand::Samples {
            pack,
            limit,
            format,
            source,
            database,
        } => {
            let (store, path) = open(&source, database)?;
            let rows = store.latest(&pack, limit)?;
            if rows.is_empty() {
                let _ = writeln!(
                    std::io::stderr(),
                    "no samples of pack {pack} in {}",
                    path.display()
                );
            }
            write_samples(&mut std::io::stdout().lock(), &rows, format)?;
        }
        QueryCommand::Banks {
            bank,
            limit,
            format,
            source,
            database,
        } => {
            let (store, path) = open(&source, database)?;
            let rows = store.latest_bank_states(&bank, limit)?;
            if rows.is_empty() {
                let _ = writeln!(
                    std::io::stderr(),
                    "no states of bank {bank} in {}",
                    path.display()
                );
            }
            write_bank_states(&mut std::io::stdout().lock(), &rows, format)?;
        }
    }
    Ok(())
}
