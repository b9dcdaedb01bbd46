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

/// `url` with any password or token in it replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("***", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// Serialises a URL with the password or token in it replaced by `***`
/// (`serialize_with` of a config field holding one).
pub(super) fn serialize_url<S: Serializer>(
    url: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    url.as_deref().map(redact_url).serialize(serializer)
}

/// [`serialize_url`] for a list of URLs.
pub(super) fn serialize_urls<S: Serializer>(
    urls: &[String],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    urls.iter()
        .map(|url| redact_url(url))
        .collect::<Vec<_>>()
        .serialize(serializer)
}

/// Writes `value` as its serialised form (JSON), under `name`: the `Debug`
/// of a config section with secrets, so that it shows exactly what its
/// serialisation shows and nothing its serialisation hides.
pub(super) fn debug_as_serialised<T: Serialize>(
    name: &str,
    value: &T,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    match serde_json::to_string(value) {
        Ok(json) => write!(f, "{name} {json}"),
        Err(_) => write!(f, "{name} {{ .. }}"),
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

    #[derive(Serialize)]
    struct Urls {
        #[serde(serialize_with = "serialize_url")]
        url: Option<String>,
        #[serde(serialize_with = "serialize_urls")]
        urls: Vec<String>,
    }

    impl fmt::Debug for Urls {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            debug_as_serialised("Urls", self, f)
        }
    }

    #[test]
    fn urls_show_their_user_but_never_their_password_or_token() {
        let urls = Urls {
            url: Some("nats://collect:s3cret@127.0.0.1:4222".into()),
            urls: vec!["tls://t0ken@cloud:4222".into(), "tls://cloud2:4222".into()],
        };
        let printed = toml::to_string(&urls).unwrap();
        assert!(
            printed.contains("url = \"nats://collect:***@127.0.0.1:4222\""),
            "{printed}"
        );
        assert!(
            printed.contains("\"tls://***:***@cloud:4222\""),
            "{printed}"
        );
        assert!(printed.contains("\"tls://cloud2:4222\""), "{printed}");
        let debug = format!("{urls:?}");
        assert!(debug.starts_with("Urls {"), "{debug}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("t0ken"),
            "{debug}"
        );
        assert!(debug.contains("cloud2"), "{debug}");
    }
}
