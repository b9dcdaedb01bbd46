//! The `[http]` section: the gateway's small HTTP server, which serves the
//! local web page (`/`, its API under `/api/`) and the Prometheus metrics
//! (`/metrics`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::secret::Secret;

/// The HTTP worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Whether `packgate run` serves it.
    pub enabled: bool,
    /// `address:port` to listen on. Loopback by default: the page and the
    /// metrics show every pack's readings, so exposing them on the network
    /// is a choice (`0.0.0.0:9640`, with `password`, behind the site's
    /// firewall).
    pub listen: String,
    /// The password of every path (the page, its API and `/metrics`),
    /// asked by HTTP Basic authentication with any user name; never
    /// printed. Required when `listen` is not a loopback address; when
    /// set, asked on loopback too.
    pub password: Option<Secret>,
}

/// The default port, documented in the README.
pub const DEFAULT_HTTP_PORT: u16 = 9640;

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: format!("127.0.0.1:{DEFAULT_HTTP_PORT}"),
            password: None,
        }
    }
}

/// A rule of the `[http]` section that a value breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct HttpConfigError {
    /// The dotted key at fault.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

impl HttpConfig {
    /// Why `listen` is not an address to bind; none when it is.
    pub fn listen_problem(&self) -> Option<String> {
        match self.listen.parse::<SocketAddr>() {
            Ok(_) => None,
            Err(e) => Some(format!(
                "{:?} is not an address:port to listen on (such as 127.0.0.1:{DEFAULT_HTTP_PORT}): {e}",
                self.listen
            )),
        }
    }

    /// Whether `listen` is a loopback address (127.0.0.0/8 or `::1`): only
    /// processes on the box reach it.
    pub fn is_loopback(&self) -> bool {
        self.listen
            .parse::<SocketAddr>()
            .is_ok_and(|address| address.ip().is_loopback())
    }

    /// Checks the section: `listen` is an address, a password is not
    /// empty nor the printed placeholder, and a server reachable from the
    /// network has one (a disabled server needs none).
    pub fn validate(&self) -> Result<(), HttpConfigError> {
        if let Some(reason) = self.listen_problem() {
            return Err(HttpConfigError {
                key: "http.listen",
                reason,
            });
        }
        if !self.enabled {
            return Ok(());
        }
        let bad = |reason: String| {
            Err(HttpConfigError {
                key: "http.password",
                reason,
            })
        };
        match &self.password {
            Some(password) if password.is_redacted_placeholder() => bad(format!(
                "{:?} is how a secret is printed, not a secret: put the real one here",
                Secret::REDACTED
            )),
            Some(password) if password.expose().trim().is_empty() => {
                bad("must not be empty (leave it out to serve loopback without one)".to_owned())
            }
            None if !self.is_loopback() => bad(format!(
                "required when http.listen ({}) is not a loopback address: the page and \
                 /metrics show every pack's readings and the gateway's health to whoever \
                 reaches the port (HTTP Basic authentication; TLS belongs in a reverse proxy)",
                self.listen
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(listen: &str, password: Option<&str>) -> HttpConfig {
        HttpConfig {
            enabled: true,
            listen: listen.to_owned(),
            password: password.map(Secret::from),
        }
    }

    #[test]
    fn an_exposed_server_needs_a_password() {
        assert_eq!(http("127.0.0.1:9640", None).validate(), Ok(()));
        assert_eq!(http("[::1]:9640", None).validate(), Ok(()));
        assert_eq!(http("127.0.0.1:0", Some("pw")).validate(), Ok(()));
        assert_eq!(http("0.0.0.0:9640", Some("pw")).validate(), Ok(()));
        for exposed in ["0.0.0.0:9640", "192.168.1.10:80", "[::]:9640"] {
            let error = http(exposed, None).validate().unwrap_err();
            assert_eq!(error.key, "http.password", "{exposed}");
            assert!(error.reason.contains(exposed), "{error}");
        }
        let disabled = HttpConfig {
            enabled: false,
            ..http("0.0.0.0:9640", None)
        };
        assert_eq!(disabled.validate(), Ok(()));
    }

    #[test]
    fn empty_and_placeholder_passwords_and_bad_addresses_are_refused() {
        for password in ["", "  ", "***"] {
            let error = http("0.0.0.0:1", Some(password)).validate().unwrap_err();
            assert_eq!(error.key, "http.password", "{password:?}");
        }
        let error = http("localhost:9640", None).validate().unwrap_err();
        assert_eq!(error.key, "http.listen");
        assert!(!http("localhost:9640", None).is_loopback());
        assert!(http("127.0.0.2:1", None).is_loopback());
    }

    #[test]
    fn the_password_is_never_printed() {
        let config = http("0.0.0.0:1", Some("hunter2"));
        assert!(!format!("{config:?}").contains("hunter2"));
        let text = toml::to_string(&config).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");
    }
}
