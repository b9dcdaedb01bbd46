//! The broker link in the log: one WARN line when it goes down, one INFO
//! line when it is back, and while it stays down a summary every
//! [`SUMMARY_EVERY`] (and when an attempt fails for a reason not seen in
//! this outage yet); each failed reconnection attempt is logged at DEBUG
//! only. Every connection of the process to one URL shares this state, so
//! the workers' connections losing the broker together make one line, not
//! one per connection and attempt (a journal on an SD card pays for each).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often a broker that stays unreachable is mentioned again.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// What one connection reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkEvent {
    /// It is connected (at first, or again).
    Connected,
    /// It lost its connection and reconnects.
    Disconnected,
    /// An attempt to connect failed, for this reason.
    AttemptFailed(String),
}

/// A line to log, at its level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogLine {
    /// At INFO.
    Info(String),
    /// At WARN.
    Warn(String),
    /// At DEBUG.
    Debug(String),
}

/// A connection's state as far as the log is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// Not connected yet, and no attempt failed.
    Connecting,
    Up,
    Down,
}

/// An outage: from the first connection that went down to the last one
/// that came back.
#[derive(Debug, Clone)]
struct Outage {
    since: Instant,
    attempts: u64,
    /// The distinct reasons the attempts failed for, the first
    /// [`MAX_REASONS`]: a new one is worth a line of its own.
    reasons: Vec<String>,
    last_summary: Instant,
}

/// Distinct failure reasons remembered per outage.
const MAX_REASONS: usize = 8;

/// The log state of every connection to one URL.
#[derive(Debug, Default)]
pub(crate) struct LinkLog {
    conns: BTreeMap<u64, Conn>,
    ever_connected: bool,
    outage: Option<Outage>,
    /// When the last outage ended.
    last_recovery: Option<Instant>,
}

fn seconds(duration: Duration) -> u64 {
    duration.as_secs_f64().round() as u64
}

impl LinkLog {
    /// A new connection `id`, not connected yet.
    pub(crate) fn register(&mut self, id: u64) {
        self.conns.insert(id, Conn::Connecting);
    }

    /// Connection `id` is gone (its client was dropped); an outage it alone
    /// kept open ends without a line.
    pub(crate) fn deregister(&mut self, id: u64) {
        self.conns.remove(&id);
        if !self.conns.values().any(|c| *c == Conn::Down) {
            self.outage = None;
        }
    }

    /// Whether some connection is down.
    pub(crate) fn is_down(&self) -> bool {
        self.outage.is_some()
    }

    /// Whether an outage is on or ended less than `within` before `now`.
    pub(crate) fn down_within(&self, within: Duration, now: Instant) -> bool {
        self.is_down()
            || self
                .last_recovery
                .is_some_and(|at| now.saturating_duration_since(at) < within)
    }

    /// What connection `id` reporting `event` at `now` makes us log.
    pub(crate) fn event(&mut self, id: u64, event: LinkEvent, now: Instant) -> LogLine {
        match event {
            LinkEvent::Connected => {
                self.conns.insert(id, Conn::Up);
                let first = !self.ever_connected;
                self.ever_connected = true;
                if self.conns.values().any(|c| *c == Conn::Down) {
                    return LogLine::Debug(
                        "broker connection back; others still reconnecting".into(),
                    );
                }
                match self.outage.take() {
                    Some(outage) => {
                        self.last_recovery = Some(now);
                        LogLine::Info(format!(
                            "broker reachable again after {} s ({} reconnection attempts)",
                            seconds(now.saturating_duration_since(outage.since)),
                            outage.attempts
                        ))
                    }
                    None if first => LogLine::Info("broker connected".into()),
                    None => LogLine::Debug("broker connected".into()),
                }
            }
            LinkEvent::Disconnected => {
                self.conns.insert(id, Conn::Down);
                if self.outage.is_some() {
                    return LogLine::Debug("broker connection lost; reconnecting".into());
                }
                self.outage = Some(Outage {
                    since: now,
                    attempts: 0,
                    reasons: Vec::new(),
                    last_summary: now,
                });
                LogLine::Warn(format!(
                    "broker connection lost; reconnecting (attempts at DEBUG, a summary every {} s)",
                    SUMMARY_EVERY.as_secs()
                ))
            }
            LinkEvent::AttemptFailed(error) => {
                self.conns.insert(id, Conn::Down);
                let Some(outage) = self.outage.as_mut() else {
                    // The first connection fails: unreachable from the start.
                    self.outage = Some(Outage {
                        since: now,
                        attempts: 1,
                        reasons: vec![error.clone()],
                        last_summary: now,
                    });
                    return LogLine::Warn(format!(
                        "broker unreachable ({error}); retrying (attempts at DEBUG, a summary every {} s)",
                        SUMMARY_EVERY.as_secs()
                    ));
                };
                outage.attempts += 1;
                let new_reason = !outage.reasons.contains(&error);
                if new_reason && outage.reasons.len() < MAX_REASONS {
                    outage.reasons.push(error.clone());
                }
                let summary_due =
                    now.saturating_duration_since(outage.last_summary) >= SUMMARY_EVERY;
                if summary_due || (new_reason && outage.reasons.len() > 1) {
                    outage.last_summary = now;
                    LogLine::Warn(format!(
                        "broker still unreachable after {} s, {} reconnection attempts; last error: {error}",
                        seconds(now.saturating_duration_since(outage.since)),
                        outage.attempts
                    ))
                } else {
                    LogLine::Debug(format!("broker reconnection failed: {error}"))
                }
            }
        }
    }
}

/// Every URL's [`LinkLog`] in this process.
static LINKS: Mutex<BTreeMap<String, LinkLog>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn links() -> MutexGuard<'static, BTreeMap<String, LinkLog>> {
    // Logging state only: a panic elsewhere leaves nothing to distrust.
    LINKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a broker connection of this process is down now, or came back
/// less than `within` ago: what is lost while it is (a pull's heartbeats)
/// is its consequence, already in the log.
pub fn broker_outage_within(within: Duration) -> bool {
    let now = Instant::now();
    links().values().any(|link| link.down_within(within, now))
}

/// One connection's place in the shared log state, from its start until
/// its client is dropped.
#[derive(Debug)]
pub(crate) struct LinkWatch {
    url: String,
    id: u64,
}

impl LinkWatch {
    /// Registers a new connection to `url` (already redacted).
    pub(crate) fn register(url: &str) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        links().entry(url.to_owned()).or_default().register(id);
        Self {
            url: url.to_owned(),
            id,
        }
    }

    /// Logs what the client's `event` means for the link.
    pub(crate) fn on_event(&self, event: async_nats::Event) {
        let url = &self.url;
        let link_event = match event {
            async_nats::Event::Connected => LinkEvent::Connected,
            async_nats::Event::Disconnected => LinkEvent::Disconnected,
            async_nats::Event::ClientError(error) => LinkEvent::AttemptFailed(error.to_string()),
            async_nats::Event::ServerError(error) => {
                tracing::warn!(%url, %error, "broker error");
                return;
            }
            async_nats::Event::SlowConsumer(sid) => {
                tracing::warn!(%url, sid, "broker: this client is a slow consumer");
                return;
            }
            async_nats::Event::LameDuckMode => {
                tracing::info!(%url, "broker going down (lame duck mode)");
                return;
            }
            other => {
                tracing::debug!(%url, event = %other, "broker event");
                return;
            }
        };
        let line =
            links()
                .entry(url.clone())
                .or_default()
                .event(self.id, link_event, Instant::now());
        match line {
            LogLine::Info(text) => tracing::info!(%url, "{text}"),
            LogLine::Warn(text) => tracing::warn!(%url, "{text}"),
            LogLine::Debug(text) => tracing::debug!(%url, connection = self.id, "{text}"),
        }
    }
}

impl Drop for LinkWatch {
    fn drop(&mut self) {
        let mut links = links();
        if let Some(link) = links.get_mut(&self.url) {
            link.deregister(self.id);
            if link.conns.is_empty() {
                links.remove(&self.url);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(line: &LogLine) -> &'static str {
        match line {
            LogLine::Info(_) => "info",
            LogLine::Warn(_) => "warn",
            LogLine::Debug(_) => "debug",
        }
    }

    #[test]
    fn an_outage_of_seven_connections_makes_a_line_down_a_summary_a_minute_and_a_line_up() {
        let start = Instant::now();
        let mut log = LinkLog::default();
        let mut shown = Vec::new();
        let mut note = |line: LogLine| {
            if level(&line) != "debug" {
                shown.push(line);
            }
        };
        for id in 1..=7 {
            log.register(id);
            note(log.event(id, LinkEvent::Connected, start));
        }
        // 130 s down: every connection retries every 2 s.
        let down = start + Duration::from_secs(10);
        for id in 1..=7 {
            note(log.event(id, LinkEvent::Disconnected, down));
        }
        let mut attempts = 0;
        for tick in 1..=65u64 {
            for id in 1..=7 {
                let at = down + Duration::from_secs(2 * tick) + Duration::from_millis(id);
                note(log.event(id, LinkEvent::AttemptFailed("IO error".into()), at));
                attempts += 1;
            }
        }
        assert!(log.is_down());
        let back = down + Duration::from_secs(131);
        for id in 1..=7 {
            note(log.event(id, LinkEvent::Connected, back + Duration::from_millis(id)));
        }
        assert!(!log.is_down());
        let levels: Vec<_> = shown.iter().map(level).collect();
        assert_eq!(
            levels,
            ["info", "warn", "warn", "warn", "info"],
            "{shown:?}"
        );
        let LogLine::Warn(summary) = &shown[2] else {
            unreachable!()
        };
        assert!(
            summary.contains("still unreachable after 60 s")
                && summary.contains("last error: IO error"),
            "{summary}"
        );
        let LogLine::Info(up) = &shown[4] else {
            unreachable!()
        };
        assert_eq!(
            up,
            &format!("broker reachable again after 131 s ({attempts} reconnection attempts)")
        );
        assert!(log.down_within(Duration::from_secs(15), back + Duration::from_secs(5)));
        assert!(!log.down_within(Duration::from_secs(15), back + Duration::from_secs(20)));
    }

    #[test]
    fn a_broker_unreachable_from_the_start_is_said_once_with_its_reason() {
        let now = Instant::now();
        let mut log = LinkLog::default();
        log.register(1);
        let first = log.event(
            1,
            LinkEvent::AttemptFailed("connection refused".into()),
            now,
        );
        assert_eq!(level(&first), "warn");
        let LogLine::Warn(text) = first else {
            unreachable!()
        };
        assert!(
            text.contains("broker unreachable (connection refused)"),
            "{text}"
        );
        let again = log.event(
            1,
            LinkEvent::AttemptFailed("connection refused".into()),
            now + Duration::from_secs(2),
        );
        assert_eq!(level(&again), "debug");
        // The server is up, but refuses us: a new reason, said once.
        let refused = LinkEvent::AttemptFailed("authorization violation".into());
        let changed = log.event(1, refused.clone(), now + Duration::from_secs(3));
        assert_eq!(level(&changed), "warn", "{changed:?}");
        let same = log.event(1, refused, now + Duration::from_secs(4));
        assert_eq!(level(&same), "debug");
        let up = log.event(1, LinkEvent::Connected, now + Duration::from_secs(5));
        assert_eq!(
            up,
            LogLine::Info("broker reachable again after 5 s (4 reconnection attempts)".into())
        );
    }

    #[test]
    fn a_connection_dropped_while_down_does_not_hold_the_outage_open() {
        let now = Instant::now();
        let mut log = LinkLog::default();
        log.register(1);
        log.register(2);
        log.event(1, LinkEvent::Connected, now);
        log.event(2, LinkEvent::Connected, now);
        log.event(2, LinkEvent::Disconnected, now);
        assert!(log.is_down());
        log.deregister(2);
        assert!(!log.is_down());
    }
}
