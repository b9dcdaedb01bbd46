//! The streams' `max_bytes` against the filesystem of `data_dir`: streams
//! set larger together than the whole filesystem are refused at load (the
//! broker would answer "insufficient storage" for ever). Streams that only
//! outgrow the free space are shrunk when the embedded broker starts (see
//! `Broker::ensure_streams`), so the defaults run on a small disk too.

use super::{Config, ConfigError, StreamsConfig};
use crate::platform::{bytes_under, disk_space, DiskSpace};

fn bytes(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Config {
    /// Refuses streams set larger together than `space`, the whole
    /// filesystem of `data_dir`, naming the largest. The built-in sizes
    /// are never refused: they are shrunk to the disk at start.
    pub fn check_streams_against_disk(
        &self,
        space: DiskSpace,
        origin: &str,
    ) -> Result<(), ConfigError> {
        if self.streams == StreamsConfig::default() {
            return Ok(());
        }
        let streams = self.streams.named().map(|(name, l)| (name, l.max_bytes));
        let wanted = streams
            .iter()
            .map(|(_, max)| bytes(*max))
            .fold(0, u64::saturating_add);
        if wanted <= space.total_bytes {
            return Ok(());
        }
        // The first of the largest, in file order.
        let (largest, _) = streams
            .iter()
            .rev()
            .max_by_key(|(_, max)| *max)
            .map_or(("samples", 0), |(name, max)| (*name, *max));
        Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            line: None,
            key: format!("streams.{largest}.max_bytes"),
            reason: format!(
                "the streams together need {wanted} bytes, more than the whole \
                 filesystem of data_dir ({} bytes)",
                space.total_bytes
            ),
        })
    }

    /// [`Config::check_streams_against_disk`] against the filesystem of
    /// `data_dir` as it is now; with an external broker (whose store may
    /// be elsewhere) also a WARN when the streams outgrow the free space.
    /// A filesystem that cannot be asked is left unchecked (WARN).
    pub fn fit_streams_to_data_dir(&mut self, origin: &str) -> Result<(), ConfigError> {
        let space = match disk_space(&self.data_dir) {
            Ok(space) => space,
            Err(error) => {
                tracing::warn!(data_dir = %self.data_dir.display(), %error,
                    "cannot read the free space of data_dir; stream sizes not checked against it");
                return Ok(());
            }
        };
        self.check_streams_against_disk(space, origin)?;
        let wanted: i64 = self
            .streams
            .named()
            .iter()
            .map(|(_, limits)| limits.max_bytes)
            .fold(0, i64::saturating_add);
        let held = bytes_under(&self.data_dir.join("nats"));
        if self.broker.url.is_some() && bytes(wanted) > space.available_bytes.saturating_add(held) {
            tracing::warn!(
                wanted_bytes = wanted,
                available_bytes = space.available_bytes,
                "the streams may outgrow the free space of data_dir's filesystem"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const GIB: u64 = 1 << 30;

    fn config(samples: i64, events: i64, metrics: i64) -> Config {
        let mut config = Config::default();
        config.streams.samples.max_bytes = samples;
        config.streams.events.max_bytes = events;
        config.streams.metrics.max_bytes = metrics;
        config
    }

    #[test]
    fn streams_set_larger_than_the_filesystem_are_refused_naming_the_largest() {
        let c = config(1 << 40, 1 << 28, 1 << 28);
        let space = DiskSpace {
            total_bytes: 16 * GIB,
            available_bytes: 10 * GIB,
        };
        let err = c.check_streams_against_disk(space, "x").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("streams.samples.max_bytes"), "{text}");
        assert!(text.contains(&format!("({} bytes)", 16 * GIB)), "{text}");
        // Set, and fitting the filesystem (if not the free space): kept.
        assert!(config(8 << 30, 1 << 30, 1 << 20)
            .check_streams_against_disk(space, "x")
            .is_ok());
    }

    #[test]
    fn the_built_in_sizes_are_never_refused() {
        let tiny = DiskSpace {
            total_bytes: 48 << 20,
            available_bytes: 40 << 20,
        };
        assert!(Config::default()
            .check_streams_against_disk(tiny, "x")
            .is_ok());
    }
}
