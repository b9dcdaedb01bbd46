//! A secret read from the configuration (a password, a token, an NKey
//! seed): the loader reads the real value, but every way of showing it
//! (`Debug`, logs, `packgate check-config`, any serialisation) writes
//! [`Secret::REDACTED`] instead. Only [`Secret::expose`] gives the value,
//! at the one place that hands it to the client library.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A configured secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// What is shown in place of every secret. Read back from a file, it is
    /// refused (`Config::validate`): a printed configuration fed back in
    /// must not connect with `***` as its password.
    pub const REDACTED: &'static str = "***";

    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the client library that authenticates with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether this is the redacted placeholder rather than a secret.
    pub fn is_redacted_placeholder(&self) -> bool {
        self.0 == Self::REDACTED
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::REDACTED)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(Self::REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Holder {
        password: Secret,
    }

    #[test]
    fn reads_the_value_and_never_shows_it() {
        let holder: Holder = toml::from_str("password = \"hunter2\"").unwrap();
        assert_eq!(holder.password.expose(), "hunter2");
        assert!(!format!("{holder:?}").contains("hunter2"));
        let printed = toml::to_string(&holder).unwrap();
        assert_eq!(printed.trim(), "password = \"***\"");
        assert!(!serde_json::to_string(&holder).unwrap().contains("hunter2"));
        let back: Holder = toml::from_str(&printed).unwrap();
        assert!(back.password.is_redacted_placeholder());
        assert!(!holder.password.is_redacted_placeholder());
    }
}
