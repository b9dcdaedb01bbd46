//! Typed internal events: one call logs a thing that happened and counts
//! it, so a log line never goes without its counter (or the reverse).
//! Per-message errors go through a [`LogLimiter`] (or [`warn_limited!`]),
//! so a flood of bad input makes one line per interval, and the lines held
//! back are reported by count: with the next line, or in a summary line of
//! their own once the interval ends, even when the flood has stopped.
//!
//! [`warn_limited!`]: crate::warn_limited

use std::panic::Location;
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant};

/// Something that happened inside a worker, with the metrics it counts
/// into.
pub trait InternalEvent<M: ?Sized> {
    /// Logs the event and bumps its counter.
    fn emit(self, metrics: &M);
}

/// The interval of [`warn_limited!`](crate::warn_limited) and of
/// [`LogLimiter::default`]: one line per ten seconds per call site.
pub const LIMITED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How often the shared ticker looks for intervals that ended with lines
/// held back.
const TICK: Duration = Duration::from_millis(500);

/// Logs a warning at most once per [`LIMITED_LOG_INTERVAL`] from this call
/// site, with the number of lines held back since the last one
/// (`held_back`); lines held back and never followed by another are
/// reported in a summary line when the interval ends.
///
/// ```ignore
/// warn_limited!("Home Assistant sent a value that is not a number; ignored", %pack, %setting);
/// ```
#[macro_export]
macro_rules! warn_limited {
    ($message:literal $(, $($field:tt)+)?) => {{
        static LIMITER: $crate::telemetry::events::LogLimiter =
            $crate::telemetry::events::LogLimiter::named(
                $message,
                $crate::telemetry::events::LIMITED_LOG_INTERVAL,
            );
        if let Some(held_back) = LIMITER.allow() {
            ::tracing::warn!($($($field)+,)? held_back, $message);
        }
    }};
}

/// Lets through one log line per interval. The lines held back in between
/// are counted and reported: with the next line let through (its
/// `held_back`), or, when none comes before the interval ends, in a
/// summary line ("N more like this in the last 10 s") written by one
/// ticker thread shared by every limiter of the process.
#[derive(Debug)]
pub struct LogLimiter {
    what: Option<&'static str>,
    interval: Duration,
    /// Whether the shared ticker writes this limiter's summaries.
    ticked: bool,
    window: OnceLock<Arc<Window>>,
}

/// A limiter's state, shared with the ticker.
#[derive(Debug)]
struct Window {
    what: Option<&'static str>,
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the last line was let through; `None` after a summary, so
    /// the next line goes through at once.
    last: Option<Instant>,
    /// Lines held back since the last line or summary.
    held_back: u64,
    /// Where the limited line is written, to name it in a summary.
    at: Option<&'static Location<'static>>,
}

impl LogLimiter {
    /// At most one line per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            what: None,
            interval,
            ticked: true,
            window: OnceLock::new(),
        }
    }

    /// At most one line per `interval`; `what` names the line in its
    /// summaries (the line's message, say).
    pub const fn named(what: &'static str, interval: Duration) -> Self {
        Self {
            what: Some(what),
            interval,
            ticked: true,
            window: OnceLock::new(),
        }
    }

    /// A limiter whose summaries only [`flush`](Self::flush) writes.
    #[cfg(test)]
    const fn unticked(what: &'static str, interval: Duration) -> Self {
        Self {
            what: Some(what),
            interval,
            ticked: false,
            window: OnceLock::new(),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being the lines held
    /// back since the last one; `None` when this one is held back.
    #[track_caller]
    pub fn allow(&self) -> Option<u64> {
        self.window().allow(Instant::now(), Location::caller())
    }

    /// Writes the summary of the lines held back if their interval has
    /// ended; `Some(n)`, the count it reported, when it wrote one. The
    /// shared ticker calls this; a test or a worker's own tick may too.
    pub fn flush(&self) -> Option<u64> {
        self.window.get()?.flush(Instant::now(), false)
    }

    fn window(&self) -> &Arc<Window> {
        self.window.get_or_init(|| {
            let window = Arc::new(Window {
                what: self.what,
                interval: self.interval,
                state: Mutex::new(State::default()),
            });
            if self.ticked {
                ticker::register(Arc::clone(&window));
            }
            window
        })
    }
}

impl Default for LogLimiter {
    /// One line per ten seconds.
    fn default() -> Self {
        Self::new(LIMITED_LOG_INTERVAL)
    }
}

impl Window {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn allow(&self, now: Instant, caller: &'static Location<'static>) -> Option<u64> {
        let mut state = self.lock();
        state.at.get_or_insert(caller);
        match state.last {
            Some(at) if now.saturating_duration_since(at) < self.interval => {
                state.held_back = state.held_back.saturating_add(1);
                None
            }
            _ => {
                state.last = Some(now);
                Some(std::mem::take(&mut state.held_back))
            }
        }
    }

    /// The summary of the lines held back, once their interval has ended
    /// (at once with `now_or_never`: the limiter is gone).
    fn flush(&self, now: Instant, now_or_never: bool) -> Option<u64> {
        let mut state = self.lock();
        let last = state.last?;
        let since = now.saturating_duration_since(last);
        if state.held_back == 0 || (since < self.interval && !now_or_never) {
            return None;
        }
        let held_back = std::mem::take(&mut state.held_back);
        state.last = None;
        let at = state
            .at
            .map(|at| format!("{}:{}", at.file(), at.line()))
            .unwrap_or_default();
        // Written under the lock: no line of this limiter comes between
        // the count and its report.
        let what = self
            .what
            .map_or_else(|| format!("the line at {at}"), str::to_owned);
        tracing::warn!(
            what = %what,
            at = %at,
            held_back,
            "{held_back} more like this in the last {:.1} s: {what}",
            since.as_secs_f64()
        );
        Some(held_back)
    }
}

/// Writes the summary of every limiter's held-back lines now, whether
/// its interval has ended or not: when the process stops, so no count
/// goes with it unreported.
pub fn report_held_back_now() {
    ticker::tick(true);
}

/// The one thread that writes the summaries of every limiter.
mod ticker {
    use super::{Arc, Instant, Mutex, Once, Window, TICK};

    /// Every limiter in use; one per call site or per owner (a bus), so
    /// bounded by the code and the configuration. A limiter whose owner
    /// is gone is reported one last time and removed.
    static WINDOWS: Mutex<Vec<Arc<Window>>> = Mutex::new(Vec::new());

    static START: Once = Once::new();

    pub(super) fn register(window: Arc<Window>) {
        WINDOWS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(window);
        START.call_once(|| {
            let started = std::thread::Builder::new()
                .name("log-summaries".into())
                .spawn(|| loop {
                    std::thread::sleep(TICK);
                    tick(false);
                });
            if let Err(error) = started {
                tracing::warn!(
                    %error,
                    "cannot start the log summary thread: lines held back are \
                     reported with the next line only"
                );
            }
        });
    }

    /// Writes the summaries due (all of them, with `now_or_never`).
    pub(super) fn tick(now_or_never: bool) {
        let (gone, live): (Vec<_>, Vec<_>) = {
            let mut windows = WINDOWS.lock().unwrap_or_else(|e| e.into_inner());
            let (gone, live): (Vec<_>, Vec<_>) = windows
                .drain(..)
                .partition(|window| Arc::strong_count(window) == 1);
            *windows = live;
            (gone, windows.clone())
        };
        let now = Instant::now();
        for window in gone {
            window.flush(now, true);
        }
        for window in live {
            window.flush(now, now_or_never);
        }
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
