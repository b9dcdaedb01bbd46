//! What the broker acknowledged last, kept to be sent again. A broker that
//! dies, or is restarted because its disk filled up, can lose messages it
//! had acknowledged but not yet written. After every reconnection the
//! publisher sends the messages acknowledged within [`REPLAY_WINDOW`]
//! again under their de-duplication ids: the broker drops those it still
//! has (the store's unique key would too) and keeps those it had lost.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// How far back acknowledged messages are kept for a replay: longer than
/// a broker takes to be found stuck and restarted.
pub(super) const REPLAY_WINDOW: Duration = Duration::from_secs(30);

/// Most messages kept for a replay (a few MB at most).
pub(super) const REPLAY_MAX: usize = 20_000;

/// The messages acknowledged within the window, oldest first, at most
/// `max` of them.
#[derive(Debug)]
pub(super) struct Replay<T> {
    acked: VecDeque<(Instant, T)>,
    max: usize,
}

impl<T> Replay<T> {
    /// Keeps at most `max` messages.
    pub(super) fn new(max: usize) -> Self {
        Self {
            acked: VecDeque::new(),
            max,
        }
    }

    /// Keeps `item`, acknowledged at `now`, dropping what fell out of the
    /// window or over the bound.
    pub(super) fn keep(&mut self, item: T, now: Instant) {
        self.acked.push_back((now, item));
        while self.acked.len() > self.max {
            self.acked.pop_front();
        }
        while self
            .acked
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > REPLAY_WINDOW)
        {
            self.acked.pop_front();
        }
    }

    /// Everything kept, oldest first; the replay is empty afterwards.
    pub(super) fn take(&mut self) -> impl Iterator<Item = T> + '_ {
        self.acked.drain(..).map(|(_, item)| item)
    }

    /// Messages kept.
    pub(super) fn len(&self) -> usize {
        self.acked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn keeps_the_window_and_the_bound_oldest_first() {
        let mut replay = Replay::new(3);
        let t0 = Instant::now();
        for n in 0..5 {
            replay.keep(n, t0);
        }
        assert_eq!(replay.len(), 3, "bounded");
        assert_eq!(replay.take().collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(replay.len(), 0);

        let mut replay = Replay::new(100);
        replay.keep(1, t0);
        replay.keep(2, t0 + REPLAY_WINDOW / 2);
        replay.keep(3, t0 + REPLAY_WINDOW + Duration::from_secs(1));
        assert_eq!(
            replay.take().collect::<Vec<_>>(),
            [2, 3],
            "out of the window"
        );
    }
}
