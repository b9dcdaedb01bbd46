//! A minimal systemd notification client: `READY=1`, `WATCHDOG=1`,
//! `STOPPING=1` and `STATUS=...` as one datagram each to `$NOTIFY_SOCKET`.
//!
//! Pure std (a Unix datagram socket), no new crate. Outside systemd, or in
//! a unit without `Type=notify`, `NOTIFY_SOCKET` is unset and
//! [`Notifier::from_env`] gives `None`: callers then notify nothing.
//!
//! The supervisor sends `READY=1` once every worker runs, then `WATCHDOG=1`
//! every [`watchdog_interval`] while all workers are healthy; a gateway
//! that stops sending is killed and restarted by systemd (`WatchdogSec=`).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` holds something that is not a socket address.
    #[error("NOTIFY_SOCKET {value:?} is not a usable socket address: {source}")]
    Address {
        /// The variable's value.
        value: String,
        /// Why it is not usable.
        #[source]
        source: std::io::Error,
    },
    /// The datagram socket could not be created or the send failed.
    #[error("sd_notify {state:?} failed: {source}")]
    Send {
        /// The notification text.
        state: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A connection-less client of systemd's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// The notifier of this process's unit, from `$NOTIFY_SOCKET`; `None`
    /// when the variable is unset or empty (not run by systemd with
    /// `Type=notify`).
    pub fn from_env() -> Result<Option<Self>, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(value) if !value.is_empty() => Self::new(&value.to_string_lossy()).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier sending to `address`: a path, or `@name` for a socket in
    /// the abstract namespace, as systemd writes `NOTIFY_SOCKET`.
    pub fn new(address: &str) -> Result<Self, NotifyError> {
        let invalid = |source| NotifyError::Address {
            value: address.to_owned(),
            source,
        };
        let socket_address = match address.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
            None => SocketAddr::from_pathname(address),
        }
        .map_err(invalid)?;
        let socket = UnixDatagram::unbound().map_err(invalid)?;
        Ok(Self {
            socket,
            address: socket_address,
        })
    }

    /// Sends `state`: one or more `KEY=VALUE` lines.
    pub fn notify(&self, state: &str) -> Result<(), NotifyError> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.address)
            .map(drop)
            .map_err(|source| NotifyError::Send {
                state: state.to_owned(),
                source,
            })
    }

    /// Start-up is complete: systemd marks the unit active.
    pub fn ready(&self) -> Result<(), NotifyError> {
        self.notify("READY=1")
    }

    /// All is well: resets systemd's watchdog timer.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.notify("WATCHDOG=1")
    }

    /// Shutdown has begun.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.notify("STOPPING=1")
    }

    /// A one-line status shown by `systemctl status`.
    pub fn status(&self, text: &str) -> Result<(), NotifyError> {
        // A newline would start another KEY=VALUE line.
        self.notify(&format!("STATUS={}", text.replace('\n', " ")))
    }
}

/// How often to send `WATCHDOG=1` under this process's unit: half of
/// `WatchdogSec=` as systemd passes it (`$WATCHDOG_USEC`), or `None` when
/// no watchdog is set for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// [`watchdog_interval`] from the variables' values: `WATCHDOG_PID`, when
/// set, must name `own_pid` (the variables may be inherited by a child).
pub fn watchdog_interval_from(
    watchdog_usec: Option<&str>,
    watchdog_pid: Option<&str>,
    own_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = watchdog_pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    let usec: u64 = watchdog_usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_each_state_as_one_datagram_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(path.to_str().unwrap()).unwrap();
        notifier.ready().unwrap();
        notifier.watchdog().unwrap();
        notifier.status("4 packs\nonline").unwrap();
        notifier.stopping().unwrap();
        let mut buf = [0u8; 128];
        let mut received = Vec::new();
        for _ in 0..4 {
            let n = server.recv(&mut buf).unwrap();
            received.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        assert_eq!(
            received,
            [
                "READY=1",
                "WATCHDOG=1",
                "STATUS=4 packs online",
                "STOPPING=1"
            ]
        );
    }

    #[test]
    fn abstract_socket_addresses_work() {
        let name = format!("packgate-test-notify-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        Notifier::new(&format!("@{name}")).unwrap().ready().unwrap();
        let mut buf = [0u8; 16];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn a_missing_socket_is_a_send_error() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = Notifier::new(dir.path().join("absent").to_str().unwrap()).unwrap();
        let err = notifier.ready().unwrap_err();
        assert!(matches!(err, NotifyError::Send { .. }), "{err}");
    }

    #[test]
    fn watchdog_interval_is_half_of_watchdog_usec_for_this_pid() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval_from(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("x"), None, 7), None);
    }
}
