//! Why the cloud link is down, in plain words: a connection error of the
//! NATS client classified by its kind and its chain of causes (the TLS
//! library's own errors among them), or what the uploads saw.

use std::time::Duration;

use async_nats::{ConnectError, ConnectErrorKind};
use rustls::{CertificateError, Error as TlsError};

/// Why the cloud link is down. Its text is what the log, the metrics and
/// `packgate status` show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudLinkFault {
    /// Nothing listens at the address (the server is down, or the port is
    /// wrong).
    #[error("connection refused: nothing listens at the cloud's address")]
    Refused,
    /// The network does not get there, or the connection broke.
    #[error("cannot reach the cloud: {0}")]
    Unreachable(String),
    /// The host name does not resolve.
    #[error("cannot resolve the cloud's host name: {0}")]
    NameResolution(String),
    /// No answer within the connection timeout.
    #[error("no answer from the cloud within the connection timeout (cloud.request_timeout_ms)")]
    Timeout,
    /// The server's certificate is not signed by a CA the gateway trusts.
    #[error(
        "certificate unknown: the server's certificate is not signed by a CA the gateway \
         trusts (cloud.tls_ca_file, else the system's)"
    )]
    CertificateUnknown,
    /// The server's certificate is for another name than the URL's host.
    #[error(
        "name mismatch: the server's certificate is not valid for the host in cloud.urls ({0})"
    )]
    NameMismatch(String),
    /// The server's certificate has expired or is not valid yet.
    #[error(
        "certificate expired or not yet valid: check the server's certificate and this box's clock"
    )]
    CertificateExpired,
    /// Another fault of the server's certificate.
    #[error("the server's certificate is refused: {0}")]
    CertificateInvalid(String),
    /// TLS is required, but the server does not speak it.
    #[error(
        "TLS required: the server does not speak TLS (cloud.require_tls is set, or a tls:// URL)"
    )]
    TlsRequired,
    /// The server refused the client certificate, or asked for one.
    #[error(
        "the server refused the client certificate (cloud.tls_client_cert_file, \
         cloud.tls_client_key_file): {0}"
    )]
    ClientCertificateRefused(String),
    /// Another failure of the TLS handshake.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// A TLS file could not be read.
    #[error("a TLS file cannot be read (cloud.tls_ca_file, tls_client_cert_file, tls_client_key_file): {0}")]
    FileMissing(String),
    /// The server refused the credentials.
    #[error("cloud rejected the credentials: {0}")]
    CredentialsRejected(String),
    /// Connected, but the server does not acknowledge uploads.
    #[error(
        "the cloud server accepts the connection but does not answer (no ack within {} ms)",
        .0.as_millis()
    )]
    Unresponsive(Duration),
    /// The connection dropped; the client reconnects.
    #[error("disconnected")]
    Disconnected,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl CloudLinkFault {
    /// Whether the fault needs an operator (a certificate, a file, the
    /// credentials, TLS settings): logged as an ERROR, the others as a
    /// WARN.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            CloudLinkFault::CertificateUnknown
                | CloudLinkFault::NameMismatch(_)
                | CloudLinkFault::CertificateExpired
                | CloudLinkFault::CertificateInvalid(_)
                | CloudLinkFault::TlsRequired
                | CloudLinkFault::ClientCertificateRefused(_)
                | CloudLinkFault::FileMissing(_)
                | CloudLinkFault::CredentialsRejected(_)
        )
    }

    /// Classifies a connection error by its kind and its causes.
    pub fn classify(error: &ConnectError) -> Self {
        match error.kind() {
            ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                return CloudLinkFault::CredentialsRejected(error.to_string());
            }
            ConnectErrorKind::TimedOut => return CloudLinkFault::Timeout,
            ConnectErrorKind::Dns => {
                return CloudLinkFault::NameResolution(causes(error));
            }
            _ => {}
        }
        let mut chain: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(cause) = chain {
            if let Some(tls) = cause.downcast_ref::<TlsError>() {
                return from_tls(tls);
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                // The TLS library's error travels inside an I/O error, whose
                // own `source` skips it.
                if let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<TlsError>()) {
                    return from_tls(tls);
                }
                if let Some(fault) = from_io(io, error.kind()) {
                    return fault;
                }
            }
            chain = cause.source();
        }
        match error.kind() {
            ConnectErrorKind::Tls => CloudLinkFault::Tls(causes(error)),
            _ => CloudLinkFault::Other(error.to_string()),
        }
    }
}

/// An I/O error's fault, when its kind says it.
fn from_io(io: &std::io::Error, kind: ConnectErrorKind) -> Option<CloudLinkFault> {
    use std::io::ErrorKind;
    Some(match io.kind() {
        ErrorKind::ConnectionRefused => CloudLinkFault::Refused,
        // A file of the TLS settings: the client reads them as it connects.
        ErrorKind::NotFound | ErrorKind::PermissionDenied if kind == ConnectErrorKind::Tls => {
            CloudLinkFault::FileMissing(io.to_string())
        }
        ErrorKind::InvalidData | ErrorKind::InvalidInput if kind == ConnectErrorKind::Tls => {
            CloudLinkFault::FileMissing(io.to_string())
        }
        ErrorKind::TimedOut => CloudLinkFault::Timeout,
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::NotConnected
        | ErrorKind::AddrNotAvailable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::HostUnreachable
        | ErrorKind::NetworkDown => CloudLinkFault::Unreachable(io.to_string()),
        _ => return None,
    })
}

/// A TLS library error's fault.
fn from_tls(error: &TlsError) -> CloudLinkFault {
    match error {
        TlsError::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                CloudLinkFault::CertificateUnknown
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                CloudLinkFault::NameMismatch(error.to_string())
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => CloudLinkFault::CertificateExpired,
            _ => CloudLinkFault::CertificateInvalid(error.to_string()),
        },
        // What came back is not TLS: a plain server answering the
        // handshake with its protocol error.
        TlsError::InvalidMessage(_) | TlsError::InappropriateMessage { .. } => {
            CloudLinkFault::TlsRequired
        }
        TlsError::AlertReceived(alert) => {
            use rustls::AlertDescription as A;
            match alert {
                A::BadCertificate
                | A::CertificateRequired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::UnsupportedCertificate => {
                    CloudLinkFault::ClientCertificateRefused(error.to_string())
                }
                _ => CloudLinkFault::Tls(error.to_string()),
            }
        }
        other => CloudLinkFault::Tls(other.to_string()),
    }
}

/// An error and its causes, joined.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_tls(error: TlsError) -> ConnectError {
        ConnectError::with_source(
            ConnectErrorKind::Io,
            std::io::Error::new(std::io::ErrorKind::InvalidData, error),
        )
    }

    #[test]
    fn tls_errors_in_the_chain_name_the_fault() {
        assert_eq!(
            CloudLinkFault::classify(&io_tls(TlsError::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))),
            CloudLinkFault::CertificateUnknown
        );
        assert!(matches!(
            CloudLinkFault::classify(&io_tls(TlsError::InvalidCertificate(
                CertificateError::NotValidForName
            ))),
            CloudLinkFault::NameMismatch(_)
        ));
        assert_eq!(
            CloudLinkFault::classify(&io_tls(TlsError::InvalidCertificate(
                CertificateError::Expired
            ))),
            CloudLinkFault::CertificateExpired
        );
        assert_eq!(
            CloudLinkFault::classify(&io_tls(TlsError::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
            ))),
            CloudLinkFault::TlsRequired
        );
        assert!(matches!(
            CloudLinkFault::classify(&io_tls(TlsError::AlertReceived(
                rustls::AlertDescription::CertificateRequired
            ))),
            CloudLinkFault::ClientCertificateRefused(_)
        ));
    }

    #[test]
    fn io_and_kinds_name_the_fault() {
        let refused = ConnectError::with_source(
            ConnectErrorKind::Io,
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        assert_eq!(CloudLinkFault::classify(&refused), CloudLinkFault::Refused);
        let missing = ConnectError::with_source(
            ConnectErrorKind::Tls,
            std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory"),
        );
        assert!(matches!(
            CloudLinkFault::classify(&missing),
            CloudLinkFault::FileMissing(_)
        ));
        assert_eq!(
            CloudLinkFault::classify(&ConnectError::new(ConnectErrorKind::TimedOut)),
            CloudLinkFault::Timeout
        );
        assert!(matches!(
            CloudLinkFault::classify(&ConnectError::new(ConnectErrorKind::AuthorizationViolation)),
            CloudLinkFault::CredentialsRejected(_)
        ));
        assert!(CloudLinkFault::CertificateUnknown.needs_operator());
        assert!(!CloudLinkFault::Refused.needs_operator());
    }
}
