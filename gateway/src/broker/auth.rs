//! Who may do what on the local broker: one user per worker, each with
//! only the subjects (and JetStream API subjects) it needs and its own
//! inbox prefix; a setup user that alone manages streams and consumers;
//! an operator user for the CLI. No anonymous user.
//!
//! The passwords live in one credentials file (mode 0600), generated at
//! the first start of the embedded broker or by `packgate broker-users` at
//! package install; the broker's `authorization` block is rendered from
//! the same table, so the two never disagree.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use packgate_protocol::names;

pub use crate::kinds::Permissions;
use crate::kinds::WorkerKind;

/// A user of the local broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BrokerUser {
    /// Creates and repairs the streams and consumers.
    Setup,
    /// A worker's own user.
    Worker(WorkerKind),
    /// The CLI: status, watch, commands through the control worker,
    /// alarm resets.
    Operator,
}

impl BrokerUser {
    /// Every user, in the order of the rendered configuration.
    pub fn all() -> Vec<BrokerUser> {
        let mut users = vec![BrokerUser::Setup];
        users.extend(WorkerKind::ALL.into_iter().map(BrokerUser::Worker));
        users.push(BrokerUser::Operator);
        users
    }

    /// The user name on the broker.
    pub fn name(self) -> &'static str {
        match self {
            BrokerUser::Setup => "setup",
            BrokerUser::Worker(kind) => kind.name(),
            BrokerUser::Operator => "operator",
        }
    }

    /// The prefix of this user's reply subjects; no other user may
    /// subscribe under it.
    pub fn inbox_prefix(self) -> String {
        format!("_INBOX_{}", self.name())
    }

    /// What this user may publish and subscribe to: a worker's own
    /// metrics subject and what its [kind's facts](crate::kinds) grant.
    pub fn permissions(self) -> Permissions {
        let mut p = Permissions::default();
        p.subscribe.push(format!("{}.>", self.inbox_prefix()));
        match self {
            BrokerUser::Setup => {
                p.publish.push("$JS.API.>".into());
                // A deleted consumer is set up again at once.
                p.subscribe.push(names::CONSUMER_DELETED_ADVISORIES.into());
            }
            BrokerUser::Operator => operator_grants(&mut p),
            BrokerUser::Worker(kind) => {
                p.publish.push(names::metrics_subject(kind.name()));
                (kind.spec().grants)(&mut p);
            }
        }
        p
    }
}

/// The CLI's: commands through the control worker, alarm resets, the
/// live streams, and the JetStream API read only (infos, listings, a
/// stored message).
fn operator_grants(p: &mut Permissions) {
    p.publish_to(&[names::CONTROL_SUBJECT, names::OUTPUTS_RESET_SUBJECT]);
    p.publish_to(&[
        "$JS.API.INFO",
        "$JS.API.STREAM.NAMES",
        "$JS.API.STREAM.LIST",
        "$JS.API.STREAM.INFO.*",
        "$JS.API.STREAM.MSG.GET.*",
        "$JS.API.CONSUMER.NAMES.*",
        "$JS.API.CONSUMER.LIST.*",
        "$JS.API.CONSUMER.INFO.*.*",
    ]);
    p.subscribe_to(&[
        names::ALL_SAMPLES_SUBJECT,
        names::ALL_EVENTS_SUBJECT,
        names::ALL_BANKS_SUBJECT,
    ]);
}

impl fmt::Display for BrokerUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the credentials cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read or written.
    #[error("broker credentials {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a credentials file.
    #[error("broker credentials {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The password of every broker user.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerCredentials {
    passwords: BTreeMap<String, String>,
    path: PathBuf,
}

impl fmt::Debug for BrokerCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerCredentials")
            .field("path", &self.path)
            .field("users", &self.passwords.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BrokerCredentials {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let io = |source| CredentialsError::Io {
            path: path.to_owned(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(io)?;
        let passwords: BTreeMap<String, String> =
            toml::from_str(&text).map_err(|e| CredentialsError::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        for user in BrokerUser::all() {
            match passwords.get(user.name()) {
                Some(password) if password.len() >= 16 && is_token(password) => {}
                _ => {
                    return Err(CredentialsError::Invalid {
                        path: path.to_owned(),
                        reason: format!(
                            "no usable password for user {user:?} (at least 16 letters or digits)",
                            user = user.name()
                        ),
                    })
                }
            }
        }
        Ok(Self {
            passwords,
            path: path.to_owned(),
        })
    }

    /// Reads `path`, or creates it (mode 0600) with a random password per
    /// user when it does not exist; users missing from an existing file
    /// are added.
    pub fn load_or_create(path: &Path) -> Result<Self, CredentialsError> {
        let io = |source| CredentialsError::Io {
            path: path.to_owned(),
            source,
        };
        let mut passwords: BTreeMap<String, String> = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| CredentialsError::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io(e)),
        };
        let missing: Vec<_> = BrokerUser::all()
            .into_iter()
            .filter(|u| !passwords.contains_key(u.name()))
            .collect();
        if !missing.is_empty() {
            for user in missing {
                passwords.insert(user.name().to_owned(), random_password().map_err(io)?);
            }
            write_private(path, &render_credentials(&passwords)).map_err(io)?;
        }
        Self::load(path)
    }

    /// The file they came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The password of `user`.
    pub fn password(&self, user: BrokerUser) -> Option<&str> {
        self.passwords.get(user.name()).map(String::as_str)
    }

    /// The nats-server `authorization` block giving each user its password
    /// and permissions.
    pub fn authorization_block(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let list = |items: &[String]| {
            items
                .iter()
                .map(|s| quote(s))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = String::from(
            "# Generated by packgate from its credentials file; do not edit.\n\
             authorization {\n  users: [\n",
        );
        for user in BrokerUser::all() {
            let p = user.permissions();
            let password = self.password(user).unwrap_or_default();
            out.push_str(&format!(
                "    {{\n      user: {}\n      password: {}\n      permissions: {{\n        \
                 publish: {{ allow: [{}] }}\n        subscribe: {{ allow: [{}] }}\n{}      }}\n    }}\n",
                quote(user.name()),
                quote(password),
                list(&p.publish),
                list(&p.subscribe),
                if p.allow_responses {
                    "        allow_responses: true\n"
                } else {
                    ""
                },
            ));
        }
        out.push_str("  ]\n}\n");
        out
    }
}

fn is_token(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn render_credentials(passwords: &BTreeMap<String, String>) -> String {
    let mut out = String::from(
        "# Passwords of packgate's users on the local broker. Keep this file\n\
         # private: whoever reads it can act as any packgate worker.\n",
    );
    for (user, password) in passwords {
        out.push_str(&format!("{user} = \"{password}\"\n"));
    }
    out
}

/// 32 hex digits from the kernel's random source.
fn random_password() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `text` to `path` readable by the owner only, atomically.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.toml");
        let first = BrokerCredentials::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = BrokerCredentials::load_or_create(&path).unwrap();
        assert_eq!(first, again);
        let users: Vec<_> = BrokerUser::all();
        assert_eq!(
            users.len(),
            WorkerKind::ALL.len() + 2,
            "a setup user, an operator, one per worker"
        );
        let passwords: std::collections::BTreeSet<_> =
            users.iter().map(|u| first.password(*u).unwrap()).collect();
        assert_eq!(
            passwords.len(),
            users.len(),
            "every user has its own password"
        );
    }

    #[test]
    fn a_short_or_missing_password_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.toml");
        std::fs::write(&path, "setup = \"short\"\n").unwrap();
        let err = BrokerCredentials::load(&path).unwrap_err().to_string();
        assert!(err.contains("setup"), "{err}");
    }

    #[test]
    fn only_setup_manages_the_streams() {
        for user in BrokerUser::all() {
            let p = user.permissions();
            let manages = p.publish.iter().any(|s| s == "$JS.API.>");
            assert_eq!(manages, user == BrokerUser::Setup, "{user}");
            assert!(
                p.subscribe.iter().all(|s| !s.starts_with("_INBOX.")),
                "{user} may read other clients' replies"
            );
        }
    }

    #[test]
    fn only_the_bank_worker_publishes_bank_states() {
        for user in BrokerUser::all() {
            let p = user.permissions();
            assert_eq!(
                p.publish.iter().any(|s| s.starts_with("packgate.banks")),
                user == BrokerUser::Worker(WorkerKind::Bank),
                "{user}"
            );
        }
        let bank = BrokerUser::Worker(WorkerKind::Bank).permissions();
        assert!(bank
            .subscribe
            .contains(&names::ALL_SAMPLES_SUBJECT.to_owned()));
        // It answers the control worker's commands to its limits.
        assert!(bank.allow_responses);
    }

    #[test]
    fn only_control_sends_bank_limits_and_only_the_bank_worker_takes_them() {
        for user in BrokerUser::all() {
            let p = user.permissions();
            assert_eq!(
                p.publish.iter().any(|s| s.starts_with("packgate.bank.")),
                user == BrokerUser::Worker(WorkerKind::Control),
                "{user}"
            );
            assert_eq!(
                p.subscribe.iter().any(|s| s.starts_with("packgate.bank.")),
                user == BrokerUser::Worker(WorkerKind::Bank),
                "{user}"
            );
        }
    }

    #[test]
    fn only_the_collector_publishes_samples_and_only_control_writes_to_buses() {
        for user in BrokerUser::all() {
            let p = user.permissions();
            assert_eq!(
                p.publish.iter().any(|s| s.starts_with("packgate.samples")),
                user == BrokerUser::Worker(WorkerKind::Collect),
                "{user}"
            );
            assert_eq!(
                p.publish.iter().any(|s| s.starts_with("packgate.bus")),
                user == BrokerUser::Worker(WorkerKind::Control),
                "{user}"
            );
        }
    }
}
