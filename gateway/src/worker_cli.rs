//! `packgate NAME`: one command per kind of worker that has one, with its
//! help from the kind's facts ([`WorkerSpec::command`]), running only that
//! worker. A new kind of worker gets its command from its facts alone.
//!
//! [`WorkerSpec::command`]: packgate::kinds::WorkerSpec::command

use clap::error::ErrorKind;
use clap::{ArgMatches, Args, Command, FromArgMatches, Subcommand};
use packgate::kinds::WorkerKind;

use crate::GatewayArgs;

/// `packgate NAME`: runs only the worker of kind `kind`.
#[derive(Debug)]
pub(crate) struct WorkerCommand {
    /// The worker.
    pub(crate) kind: WorkerKind,
    /// Its configuration and broker.
    pub(crate) args: GatewayArgs,
}

/// The kinds with a command of their own, with its help.
fn commands() -> impl Iterator<Item = (WorkerKind, &'static str)> {
    WorkerKind::ALL
        .into_iter()
        .filter_map(|kind| kind.spec().command.map(|about| (kind, about)))
}

/// The kind whose command is `name`.
fn kind_of(name: &str) -> Option<WorkerKind> {
    commands()
        .find(|(kind, _)| kind.name() == name)
        .map(|(kind, _)| kind)
}

impl FromArgMatches for WorkerCommand {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Self::from_arg_matches_mut(&mut matches.clone())
    }

    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
        let Some((name, mut sub)) = matches.remove_subcommand() else {
            return Err(clap::Error::raw(
                ErrorKind::MissingSubcommand,
                "a worker command is required",
            ));
        };
        let kind = kind_of(&name).ok_or_else(|| {
            clap::Error::raw(
                ErrorKind::InvalidSubcommand,
                format!("no worker is called {name}"),
            )
        })?;
        let args = GatewayArgs::from_arg_matches_mut(&mut sub)?;
        Ok(Self { kind, args })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Subcommand for WorkerCommand {
    fn augment_subcommands(cmd: Command) -> Command {
        commands().fold(cmd, |cmd, (kind, about)| {
            cmd.subcommand(GatewayArgs::augment_args(
                Command::new(kind.name()).about(about),
            ))
        })
    }

    fn augment_subcommands_for_update(cmd: Command) -> Command {
        Self::augment_subcommands(cmd)
    }

    fn has_subcommand(name: &str) -> bool {
        kind_of(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser as _;

    use crate::{Action, Cli};

    #[test]
    fn every_kind_with_a_command_is_one() {
        for (kind, _) in super::commands() {
            let cli = Cli::try_parse_from(["packgate", kind.name(), "--sim", "2"]).unwrap();
            match cli.command {
                Action::Worker(command) => {
                    assert_eq!(command.kind, kind);
                    assert_eq!(command.args.sim, Some(2));
                }
                other => panic!("{} parsed as {other:?}", kind.name()),
            }
        }
        let names: Vec<_> = super::commands().map(|(k, _)| k.name()).collect();
        assert_eq!(
            names,
            ["collect", "bank", "data", "control", "monitor", "http", "mqtt"]
        );
        // The cloud worker's command is its own; the outputs have none.
        assert!(matches!(
            Cli::try_parse_from(["packgate", "cloud"]).unwrap().command,
            Action::Cloud(_)
        ));
        assert!(Cli::try_parse_from(["packgate", "outputs"]).is_err());
    }
}
