//! A stand-in for systemd's notify socket: records what a gateway started
//! with `NOTIFY_SOCKET` sends (`READY=1`, `WATCHDOG=1`, `STATUS=…`), with
//! when each arrived.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The notifications received so far, with their arrival times.
#[derive(Clone, Default)]
pub struct Notifications(Arc<Mutex<Vec<(Instant, String)>>>);

impl Notifications {
    /// Binds `path` and records every datagram until dropped.
    pub fn listen(path: &Path) -> Self {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let seen = Self::default();
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.0.lock().unwrap().push((Instant::now(), text));
                }
                if Arc::strong_count(&sink.0) == 1 {
                    return;
                }
            }
        });
        seen
    }

    /// When each `WATCHDOG=1` arrived.
    pub fn watchdogs(&self) -> Vec<Instant> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(_, text)| text.contains("WATCHDOG=1"))
            .map(|(at, _)| *at)
            .collect()
    }

    /// How many `WATCHDOG=1` arrived between `from` and `to`.
    pub fn watchdogs_between(&self, from: Instant, to: Instant) -> usize {
        self.watchdogs()
            .into_iter()
            .filter(|at| *at >= from && *at <= to)
            .count()
    }

    /// The longest time between `from` and `to` without a `WATCHDOG=1`:
    /// what systemd compares with `WatchdogSec=`.
    pub fn longest_watchdog_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut last = from;
        let mut longest = Duration::ZERO;
        for at in self
            .watchdogs()
            .into_iter()
            .filter(|at| *at > from && *at <= to)
        {
            longest = longest.max(at - last);
            last = at;
        }
        longest.max(to - last)
    }

    /// Every `STATUS=` line, in order.
    pub fn statuses(&self) -> Vec<String> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(_, text)| text.starts_with("STATUS="))
            .map(|(_, text)| text.clone())
            .collect()
    }
}
