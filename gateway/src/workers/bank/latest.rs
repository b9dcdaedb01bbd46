//! The latest sample of each pack of the banks, and when it arrived:
//! bounded by the configuration (a sample of any other pack is ignored),
//! newest by sequence number (a repeated or older sample of the same
//! collector run is ignored).

use std::collections::HashMap;
use std::time::Duration;

use packgate_protocol::{PackId, Sample};
use tokio::time::Instant;

/// A sample and when it arrived.
#[derive(Debug, Clone)]
pub struct Held {
    /// The sample.
    pub sample: Sample,
    /// When it arrived, on the monotonic clock.
    pub received: Instant,
}

/// What became of a sample offered to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// It is the pack's latest now.
    Kept,
    /// Its pack is in no bank.
    NotInBank,
    /// The pack's latest is as new or newer (same collector run, same or
    /// later sequence number): a repeat, or a late one.
    Older,
}

/// The latest sample of each configured pack.
#[derive(Debug, Default)]
pub struct Latest {
    packs: HashMap<PackId, Option<Held>>,
}

impl Latest {
    /// A table of `packs`, each without a sample.
    pub fn new(packs: impl IntoIterator<Item = PackId>) -> Self {
        Self {
            packs: packs.into_iter().map(|id| (id, None)).collect(),
        }
    }

    /// Offers `sample`, arrived at `received`.
    pub fn take(&mut self, sample: Sample, received: Instant) -> Taken {
        let Some(slot) = self.packs.get_mut(&sample.pack_id) else {
            return Taken::NotInBank;
        };
        if let Some(held) = slot {
            if held.sample.boot_id == sample.boot_id && held.sample.seq >= sample.seq {
                return Taken::Older;
            }
        }
        *slot = Some(Held { sample, received });
        Taken::Kept
    }

    /// The latest of `pack`, if any has arrived.
    pub fn get(&self, pack: &PackId) -> Option<&Held> {
        self.packs.get(pack).and_then(Option::as_ref)
    }
}

/// How old `held` is at `now`: the time since it arrived. The sample's own
/// wall-clock stamp is not used: a clock step on the box would make every
/// pack look stale (or fresh) at once.
pub(super) fn age(held: &Held, now: Instant) -> Duration {
    now.saturating_duration_since(held.received)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use packgate_protocol::{BootId, DataQuality, PackReading};

    use super::*;

    fn sample(pack: &str, boot: u64, seq: u64) -> Sample {
        Sample {
            pack_id: PackId::new(pack).unwrap(),
            boot_id: BootId(boot),
            seq,
            timestamp_ms: 0,
            quality: DataQuality::Fresh,
            reading: PackReading::default(),
            clock: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_configured_packs_and_only_newer_samples_are_kept() {
        let a = PackId::new("a").unwrap();
        let mut latest = Latest::new([a.clone()]);
        let t0 = Instant::now();
        assert!(latest.get(&a).is_none());
        assert_eq!(latest.take(sample("b", 1, 1), t0), Taken::NotInBank);
        assert_eq!(latest.take(sample("a", 1, 5), t0), Taken::Kept);
        assert_eq!(latest.take(sample("a", 1, 5), t0), Taken::Older);
        assert_eq!(latest.take(sample("a", 1, 4), t0), Taken::Older);
        let t1 = t0 + Duration::from_secs(3);
        // A new collector run starts again from 1.
        assert_eq!(latest.take(sample("a", 2, 1), t1), Taken::Kept);
        let held = latest.get(&a).unwrap();
        assert_eq!((held.sample.boot_id, held.sample.seq), (BootId(2), 1));
        assert_eq!(
            age(held, t1 + Duration::from_millis(1500)),
            Duration::from_millis(1500)
        );
        assert_eq!(
            latest.packs.len(),
            1,
            "the table holds the configured packs only"
        );
    }
}
