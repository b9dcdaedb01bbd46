//! The `[http]` section: the gateway's small HTTP server, which serves the
//! Prometheus metrics (`/metrics`).

use serde::{Deserialize, Serialize};

/// The HTTP worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Whether `packgate run` serves it.
    pub enabled: bool,
    /// `address:port` to listen on. Loopback by default: the metrics show
    /// every pack's readings, so exposing them on the network is a choice
    /// (`0.0.0.0:9640`, behind the site's firewall).
    pub listen: String,
}

/// The default port, documented in the README.
pub const DEFAULT_HTTP_PORT: u16 = 9640;

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: format!("127.0.0.1:{DEFAULT_HTTP_PORT}"),
        }
    }
}

impl HttpConfig {
    /// Why `listen` is not an address to bind; none when it is.
    pub fn listen_problem(&self) -> Option<String> {
        match self.listen.parse::<std::net::SocketAddr>() {
            Ok(_) => None,
            Err(e) => Some(format!(
                "{:?} is not an address:port to listen on (such as 127.0.0.1:{DEFAULT_HTTP_PORT}): {e}",
                self.listen
            )),
        }
    }
}
