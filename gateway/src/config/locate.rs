//! Which configuration file a command reads: the one named with
//! `--config`, else `$PACKGATE_CONFIG`, else the box's
//! `/etc/packgate/packgate.toml` when it exists, else none (the built-in
//! defaults). Every command on the box then sees the gateway the service
//! runs, without being told.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable that names the configuration file; set but
/// empty, it means the built-in defaults.
pub const CONFIG_ENV: &str = "PACKGATE_CONFIG";

/// The configuration the package installs and the service runs with, read
/// by default when it exists.
pub const SYSTEM_CONFIG: &str = "/etc/packgate/packgate.toml";

/// Where a command's configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// Named with `--config`.
    Flag(PathBuf),
    /// Named by `$PACKGATE_CONFIG`.
    Env(PathBuf),
    /// The box's configuration ([`SYSTEM_CONFIG`]), which exists.
    System(PathBuf),
    /// No file: the built-in defaults.
    Defaults,
}

impl ConfigSource {
    /// The source for a command given `flag` (`--config`), `env` (the
    /// value of [`CONFIG_ENV`]) and `system` (where the box's file is):
    /// the first of them that is given. `system` counts when it exists or
    /// cannot be looked at (reading it then says why), not when it is
    /// absent; `env` set but empty means the built-in defaults.
    pub fn locate(flag: Option<&Path>, env: Option<&OsStr>, system: &Path) -> Self {
        if let Some(path) = flag {
            return ConfigSource::Flag(path.to_owned());
        }
        match env {
            Some(value) if value.is_empty() => return ConfigSource::Defaults,
            Some(value) => return ConfigSource::Env(PathBuf::from(value)),
            None => {}
        }
        match std::fs::metadata(system) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => ConfigSource::Defaults,
            _ => ConfigSource::System(system.to_owned()),
        }
    }

    /// [`ConfigSource::locate`] with this process's `--config`, its
    /// environment and [`SYSTEM_CONFIG`].
    pub fn for_command(flag: Option<&Path>) -> Self {
        let env = std::env::var_os(CONFIG_ENV);
        Self::locate(flag, env.as_deref(), Path::new(SYSTEM_CONFIG))
    }

    /// The file to read, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::Flag(path) | ConfigSource::Env(path) | ConfigSource::System(path) => {
                Some(path)
            }
            ConfigSource::Defaults => None,
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Flag(path) => write!(f, "{} (--config)", path.display()),
            ConfigSource::Env(path) => write!(f, "{} (${CONFIG_ENV})", path.display()),
            ConfigSource::System(path) => write!(f, "{} (the default)", path.display()),
            ConfigSource::Defaults => write!(f, "none, the built-in defaults"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_environment_then_the_boxs_file() {
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("packgate.toml");
        let flag = Path::new("/srv/a.toml");
        let env = OsStr::new("/srv/b.toml");
        // No file on the box yet.
        assert_eq!(
            ConfigSource::locate(None, None, &system),
            ConfigSource::Defaults
        );
        std::fs::write(&system, "").unwrap();
        assert_eq!(
            ConfigSource::locate(None, None, &system),
            ConfigSource::System(system.clone())
        );
        assert_eq!(
            ConfigSource::locate(None, Some(env), &system),
            ConfigSource::Env(PathBuf::from(env))
        );
        assert_eq!(
            ConfigSource::locate(Some(flag), Some(env), &system),
            ConfigSource::Flag(flag.to_owned())
        );
        // Set but empty: the built-in defaults, whatever the box has.
        assert_eq!(
            ConfigSource::locate(None, Some(OsStr::new("")), &system),
            ConfigSource::Defaults
        );
        assert_eq!(ConfigSource::Defaults.path(), None);
        assert_eq!(
            ConfigSource::System(system.clone()).to_string(),
            format!("{} (the default)", system.display())
        );
    }
}
