//! The `[cloud]` section of the configuration: where the cloud is, how to
//! authenticate, and how fast and in what batches to upload.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::secret::Secret;

/// A rule of the `[cloud]` section that a value breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct CloudConfigError {
    /// The dotted key at fault, such as `cloud.gateway_id`.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

/// The uplink to the cloud: a remote NATS server or cluster with JetStream.
/// Its secrets, and the passwords and tokens in its URLs, show as `***`
/// in `Debug`, logs and `check-config`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudConfig {
    /// Whether the cloud worker runs at all.
    pub enabled: bool,
    /// URLs of the cloud servers (`nats://`, `tls://`); the client picks
    /// one and moves to another when it fails. A password or token in one
    /// is never printed.
    #[serde(serialize_with = "super::secret::serialize_urls")]
    pub urls: Vec<String>,
    /// This gateway's id in the cloud: one subject token (letters, digits,
    /// `-` and `_`), unique among the gateways of the cloud account.
    pub gateway_id: String,
    /// User name, with `password`.
    pub user: Option<String>,
    /// Password of `user` (never printed).
    pub password: Option<Secret>,
    /// Authentication token (never printed).
    pub token: Option<Secret>,
    /// NKey seed (`SU...`; never printed).
    pub nkey_seed: Option<Secret>,
    /// A `.creds` file (user JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// PEM file of the CA certificates the servers' certificates are checked
    /// against (instead of the system's roots).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate, for mutual TLS; needs
    /// `tls_client_key_file`.
    pub tls_client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub tls_client_key_file: Option<PathBuf>,
    /// Refuse to talk to a server without TLS.
    pub require_tls: bool,
    /// Most messages in one upload batch; also the local consumers'
    /// `max_ack_pending`, so the worker never holds more than one batch per
    /// stream.
    pub batch_max_samples: usize,
    /// Longest a batch waits to fill before it is uploaded anyway,
    /// milliseconds.
    pub upload_interval_ms: u64,
    /// Most messages uploaded per second (a token bucket shared by samples
    /// and events); caps the drain of a backlog after an outage.
    pub max_rate_per_s: u32,
    /// Longest wait between two attempts at a failed batch, and between two
    /// connection attempts, milliseconds; the wait doubles up to this.
    pub retry_backoff_max_ms: u64,
    /// Time allowed for one connection attempt, one JetStream API call or
    /// one publish ack, milliseconds.
    pub request_timeout_ms: u64,
    /// Name of the stream on the cloud that captures this gateway's samples
    /// and events.
    pub stream_name: String,
    /// Whether the gateway may create that stream when it is missing
    /// (subjects `packgate.<gateway_id>.samples.>` and
    /// `packgate.<gateway_id>.events.>`); usually the cloud operator creates
    /// it.
    pub create_stream: bool,
    /// Name of the cloud's key-value bucket of desired settings (keys
    /// `<gateway_id>.<pack>.<setting>`) that the worker follows and applies;
    /// empty turns desired settings off.
    pub desired_bucket: String,
    /// Seconds between two writes of a desired setting already applied: the
    /// write is read back, so a setting changed on the pack (or by a local
    /// command) returns to the desired value within this time.
    pub desired_recheck_s: u64,
    /// Most desired-setting commands sent to the control worker a second.
    pub desired_max_per_s: u32,
}

impl Default for CloudConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            urls: Vec::new(),
            gateway_id: String::new(),
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            creds_file: None,
            tls_ca_file: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
            require_tls: false,
            batch_max_samples: 500,
            upload_interval_ms: 5_000,
            max_rate_per_s: 2_000,
            retry_backoff_max_ms: 60_000,
            request_timeout_ms: 10_000,
            stream_name: packgate_protocol::names::cloud::DEFAULT_STREAM.to_owned(),
            create_stream: false,
            desired_bucket: packgate_protocol::names::cloud::DESIRED_BUCKET.to_owned(),
            desired_recheck_s: 900,
            desired_max_per_s: 2,
        }
    }
}

/// What serialisation shows: no secret.
impl fmt::Debug for CloudConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::secret::debug_as_serialised("CloudConfig", self, f)
    }
}

/// Whether `token` is usable as one NATS subject token or stream name.
fn is_name_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 64
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Refuses a secret that is the placeholder a printed configuration
/// shows: a file made from `check-config` output must not connect with
/// it.
fn check_secrets(config: &CloudConfig) -> Result<(), CloudConfigError> {
    for (key, secret) in [
        ("cloud.password", &config.password),
        ("cloud.token", &config.token),
        ("cloud.nkey_seed", &config.nkey_seed),
    ] {
        if secret.as_ref().is_some_and(Secret::is_redacted_placeholder) {
            return Err(CloudConfigError {
                key,
                reason: format!(
                    "{:?} is how a secret is printed, not a secret: put the real one here",
                    Secret::REDACTED
                ),
            });
        }
    }
    Ok(())
}

/// A refusal of `key` for `reason`.
fn invalid(key: &'static str, reason: &str) -> Result<(), CloudConfigError> {
    Err(CloudConfigError {
        key,
        reason: reason.to_owned(),
    })
}

impl CloudConfig {
    /// Checks ranges and cross-field rules. The URLs and gateway id are
    /// required only when the worker is enabled.
    pub fn validate(&self) -> Result<(), CloudConfigError> {
        self.check_connection()?;
        self.check_upload_ranges()?;
        self.check_names()
    }

    /// Where to connect, as whom, and with which credentials.
    fn check_connection(&self) -> Result<(), CloudConfigError> {
        if self.enabled {
            if self.urls.is_empty() {
                return invalid("cloud.urls", "at least one URL is needed");
            }
            if !is_name_token(&self.gateway_id) {
                return invalid(
                    "cloud.gateway_id",
                    "must be 1 to 64 letters, digits, '-' or '_' (one subject token)",
                );
            }
        }
        if self.urls.iter().any(|u| u.trim().is_empty()) {
            return invalid("cloud.urls", "an empty URL");
        }
        let kinds = [
            self.user.is_some() || self.password.is_some(),
            self.token.is_some(),
            self.nkey_seed.is_some(),
            self.creds_file.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            return invalid(
                "cloud",
                "at most one kind of authentication: user/password, token, nkey_seed or creds_file",
            );
        }
        check_secrets(self)?;
        if self.user.is_some() != self.password.is_some() {
            return invalid("cloud.password", "user and password go together");
        }
        if self.tls_client_cert_file.is_some() != self.tls_client_key_file.is_some() {
            return invalid(
                "cloud.tls_client_key_file",
                "tls_client_cert_file and tls_client_key_file go together",
            );
        }
        Ok(())
    }

    /// Batch size, pace, backoff and timeout within their ranges.
    fn check_upload_ranges(&self) -> Result<(), CloudConfigError> {
        if !(1..=100_000).contains(&self.batch_max_samples) {
            return invalid("cloud.batch_max_samples", "must be 1 to 100000");
        }
        if !(10..=3_600_000).contains(&self.upload_interval_ms) {
            return invalid(
                "cloud.upload_interval_ms",
                "must be 10 to 3600000 (an hour)",
            );
        }
        if !(1..=1_000_000).contains(&self.max_rate_per_s) {
            return invalid("cloud.max_rate_per_s", "must be 1 to 1000000");
        }
        if !(100..=86_400_000).contains(&self.retry_backoff_max_ms) {
            return invalid(
                "cloud.retry_backoff_max_ms",
                "must be 100 to 86400000 (a day)",
            );
        }
        if !(100..=600_000).contains(&self.request_timeout_ms) {
            return invalid(
                "cloud.request_timeout_ms",
                "must be 100 to 600000 (ten minutes)",
            );
        }
        Ok(())
    }

    /// The stream's and the desired-settings bucket's names, and the
    /// bucket's pace.
    fn check_names(&self) -> Result<(), CloudConfigError> {
        if !is_name_token(&self.stream_name) {
            return invalid(
                "cloud.stream_name",
                "must be 1 to 64 letters, digits, '-' or '_'",
            );
        }
        if !self.desired_bucket.is_empty() && !is_name_token(&self.desired_bucket) {
            return invalid(
                "cloud.desired_bucket",
                "must be empty (off) or 1 to 64 letters, digits, '-' or '_'",
            );
        }
        if !(1..=86_400).contains(&self.desired_recheck_s) {
            return invalid("cloud.desired_recheck_s", "must be 1 to 86400 (a day)");
        }
        if !(1..=100).contains(&self.desired_max_per_s) {
            return invalid("cloud.desired_max_per_s", "must be 1 to 100");
        }
        Ok(())
    }

    /// Checks that each file the section names (credentials, CA, client
    /// certificate and key) can be read and holds what it should. A
    /// missing or unreadable one is a configuration error, at start and for
    /// `check-config`, rather than a link that fails at every attempt.
    /// Nothing is checked while the worker is disabled.
    pub fn check_files(&self) -> Result<(), CloudConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        if !self.enabled {
            return Ok(());
        }
        let files = [
            ("cloud.creds_file", &self.creds_file),
            ("cloud.tls_ca_file", &self.tls_ca_file),
            ("cloud.tls_client_cert_file", &self.tls_client_cert_file),
            ("cloud.tls_client_key_file", &self.tls_client_key_file),
        ];
        for (key, path) in files {
            let Some(path) = path else { continue };
            let fault = |reason: String| CloudConfigError {
                key,
                reason: format!("{}: {reason}", path.display()),
            };
            let bytes = std::fs::read(path).map_err(|e| fault(format!("cannot be read: {e}")))?;
            match key {
                "cloud.tls_ca_file" | "cloud.tls_client_cert_file" => {
                    let certificates: Result<Vec<_>, _> =
                        CertificateDer::pem_slice_iter(&bytes).collect();
                    match certificates {
                        Ok(found) if !found.is_empty() => {}
                        Ok(_) => return Err(fault("holds no PEM certificate".to_owned())),
                        Err(e) => return Err(fault(format!("is not a PEM certificate file: {e}"))),
                    }
                }
                "cloud.tls_client_key_file" => {
                    PrivateKeyDer::from_pem_slice(&bytes)
                        .map_err(|e| fault(format!("holds no PEM private key: {e}")))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The batch linger time.
    pub fn upload_interval(&self) -> Duration {
        Duration::from_millis(self.upload_interval_ms)
    }

    /// The timeout of one cloud I/O call.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The longest backoff.
    pub fn retry_backoff_max(&self) -> Duration {
        Duration::from_millis(self.retry_backoff_max_ms)
    }

    /// The time between two writes of an applied desired setting.
    pub fn desired_recheck(&self) -> Duration {
        Duration::from_secs(self.desired_recheck_s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failure should be loud

    use super::*;

    fn enabled() -> CloudConfig {
        CloudConfig {
            enabled: true,
            urls: vec!["nats://cloud:4222".into()],
            gateway_id: "site-7".into(),
            ..CloudConfig::default()
        }
    }

    #[test]
    fn defaults_are_valid_and_parse_from_nothing() {
        CloudConfig::default().validate().unwrap();
        let parsed: CloudConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, CloudConfig::default());
        enabled().validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<CloudConfig>("gatway_id = \"x\"").is_err());
    }

    #[test]
    fn rules_name_their_key() {
        let bad = |c: CloudConfig| c.validate().unwrap_err().key;
        assert_eq!(
            bad(CloudConfig {
                gateway_id: "a.b".into(),
                ..enabled()
            }),
            "cloud.gateway_id"
        );
        assert_eq!(
            bad(CloudConfig {
                urls: vec![],
                ..enabled()
            }),
            "cloud.urls"
        );
        assert_eq!(
            bad(CloudConfig {
                token: Some("t".into()),
                nkey_seed: Some("SU".into()),
                ..enabled()
            }),
            "cloud"
        );
        assert_eq!(
            bad(CloudConfig {
                user: Some("u".into()),
                ..enabled()
            }),
            "cloud.password"
        );
        assert_eq!(
            bad(CloudConfig {
                tls_client_cert_file: Some("c.pem".into()),
                ..enabled()
            }),
            "cloud.tls_client_key_file"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_and_printing() {
        for c in [
            CloudConfig {
                user: Some("u".into()),
                password: Some("hunter2".into()),
                ..enabled()
            },
            CloudConfig {
                token: Some("hunter2".into()),
                ..enabled()
            },
            CloudConfig {
                nkey_seed: Some("hunter2".into()),
                ..enabled()
            },
        ] {
            c.validate().unwrap();
            assert!(!format!("{c:?}").contains("hunter2"));
            let printed = toml::to_string_pretty(&c).unwrap();
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(printed.contains("\"***\""), "{printed}");
            // Fed back in, the placeholder is refused, naming its key.
            let back: CloudConfig = toml::from_str(&printed).unwrap();
            assert!(back.validate().unwrap_err().key.starts_with("cloud."));
        }
    }

    #[test]
    fn files_named_must_be_readable_and_hold_what_they_should() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let bad = |c: CloudConfig| c.check_files().unwrap_err();
        let error = bad(CloudConfig {
            tls_ca_file: Some(missing.clone()),
            ..enabled()
        });
        assert_eq!(error.key, "cloud.tls_ca_file");
        assert!(
            error.reason.contains("missing.pem: cannot be read"),
            "{error}"
        );
        let error = bad(CloudConfig {
            creds_file: Some(missing.clone()),
            ..enabled()
        });
        assert_eq!(error.key, "cloud.creds_file");
        let error = bad(CloudConfig {
            tls_ca_file: Some(not_pem.clone()),
            ..enabled()
        });
        assert!(error.reason.contains("no PEM certificate"), "{error}");
        let error = bad(CloudConfig {
            tls_client_cert_file: Some(not_pem.clone()),
            tls_client_key_file: Some(not_pem.clone()),
            ..enabled()
        });
        assert_eq!(error.key, "cloud.tls_client_cert_file");
        // A disabled worker reads no file.
        CloudConfig {
            tls_ca_file: Some(missing),
            ..CloudConfig::default()
        }
        .check_files()
        .unwrap();
    }

    #[test]
    fn durations_have_a_ceiling() {
        let bad = |c: CloudConfig| c.validate().unwrap_err().key;
        assert_eq!(
            bad(CloudConfig {
                upload_interval_ms: u64::MAX,
                ..enabled()
            }),
            "cloud.upload_interval_ms"
        );
        assert_eq!(
            bad(CloudConfig {
                request_timeout_ms: u64::MAX,
                ..enabled()
            }),
            "cloud.request_timeout_ms"
        );
    }
}
