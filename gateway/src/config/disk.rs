//! The streams' `max_bytes` against the filesystem of `data_dir`: streams
//! that together are larger than the whole filesystem are refused at load
//! (the broker would answer "insufficient storage" for ever); streams that
//! only outgrow the free space are shrunk to fit, with a WARN, when the
//! embedded broker keeps its store there.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, MIN_STREAM_BYTES};

/// The size of a filesystem and the room left on it, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// The whole filesystem.
    pub total_bytes: u64,
    /// What an unprivileged process may still write.
    pub available_bytes: u64,
}

/// One stream shrunk to fit the free space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamClamp {
    /// The key, `streams.<name>.max_bytes`.
    pub key: String,
    /// The configured size, bytes.
    pub configured_bytes: i64,
    /// The size used instead, bytes.
    pub clamped_bytes: i64,
}

/// The nearest directory of `path` that exists (itself, or an ancestor):
/// `data_dir` is created at first start.
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut at = path;
    loop {
        if at.exists() {
            return at.to_owned();
        }
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => return PathBuf::from("."),
        }
    }
}

/// The size and free space of the filesystem that holds `path` (or would,
/// once created).
pub fn disk_space(path: &Path) -> std::io::Result<DiskSpace> {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = existing_ancestor(path);
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    #[allow(unsafe_code)]
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to
    // writable memory of the right type; statvfs writes nothing else.
    let (rc, stat) = unsafe {
        let rc = libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr());
        (rc, stat.assume_init())
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The field types are 32 bits wide on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let (block, blocks, available) = (
        u64::from(stat.f_frsize),
        u64::from(stat.f_blocks),
        u64::from(stat.f_bavail),
    );
    Ok(DiskSpace {
        total_bytes: blocks.saturating_mul(block),
        available_bytes: available.saturating_mul(block),
    })
}

/// Bytes of the files under `dir` (none when it does not exist).
pub fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => bytes_under(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .fold(0, u64::saturating_add)
}

fn bytes(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Config {
    /// Fits the streams to `space`, the filesystem of `data_dir`, where
    /// `held_bytes` are already taken by the broker's own store (they are
    /// the streams' room too). Refuses streams larger together than the
    /// filesystem, naming the largest; shrinks them in proportion (none
    /// below 1 MiB) to three quarters of the free space (the rest is for
    /// the databases) when they outgrow that and `shrink` is set,
    /// returning what it shrank.
    pub fn fit_streams_to_disk(
        &mut self,
        space: DiskSpace,
        held_bytes: u64,
        shrink: bool,
        origin: &str,
    ) -> Result<Vec<StreamClamp>, ConfigError> {
        let s = &mut self.streams;
        let mut streams = [
            ("samples", &mut s.samples.max_bytes),
            ("events", &mut s.events.max_bytes),
            ("metrics", &mut s.metrics.max_bytes),
        ];
        let wanted = streams
            .iter()
            .map(|(_, max)| bytes(**max))
            .fold(0, u64::saturating_add);
        if wanted > space.total_bytes {
            // The first of the largest, in file order.
            let (largest, _) = streams
                .iter()
                .rev()
                .max_by_key(|(_, max)| **max)
                .map_or(("samples", 0), |(name, max)| (*name, **max));
            return Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                line: None,
                key: format!("streams.{largest}.max_bytes"),
                reason: format!(
                    "the streams together need {wanted} bytes, more than the whole \
                     filesystem of data_dir ({} bytes)",
                    space.total_bytes
                ),
            });
        }
        // The streams get three quarters of the room; the rest is for the
        // databases and logs on the same filesystem.
        let room = space.available_bytes.saturating_add(held_bytes);
        let room = room - room / 4;
        if wanted <= room || !shrink {
            return Ok(Vec::new());
        }
        let mut clamps = Vec::new();
        for (name, max) in &mut streams {
            let configured = **max;
            let share = u128::from(bytes(configured)) * u128::from(room) / u128::from(wanted);
            let clamped = i64::try_from(share)
                .unwrap_or(i64::MAX)
                .max(MIN_STREAM_BYTES);
            if clamped < configured {
                **max = clamped;
                clamps.push(StreamClamp {
                    key: format!("streams.{name}.max_bytes"),
                    configured_bytes: configured,
                    clamped_bytes: clamped,
                });
            }
        }
        Ok(clamps)
    }

    /// [`Config::fit_streams_to_disk`] against the filesystem of
    /// `data_dir` as it is now: shrinks (with a WARN each) only the streams
    /// of the embedded broker, whose store is `data_dir/nats`; for an
    /// external broker, whose store may be elsewhere, it only WARNs. A
    /// filesystem that cannot be asked is left unchecked (WARN).
    pub fn fit_streams_to_data_dir(&mut self, origin: &str) -> Result<(), ConfigError> {
        let space = match disk_space(&self.data_dir) {
            Ok(space) => space,
            Err(error) => {
                tracing::warn!(data_dir = %self.data_dir.display(), %error,
                    "cannot read the free space of data_dir; stream sizes not checked against it");
                return Ok(());
            }
        };
        let embedded = self.broker.url.is_none();
        let held = if embedded {
            bytes_under(&self.data_dir.join("nats"))
        } else {
            0
        };
        let wanted: i64 = [
            &self.streams.samples,
            &self.streams.events,
            &self.streams.metrics,
        ]
        .iter()
        .map(|limits| limits.max_bytes)
        .fold(0, i64::saturating_add);
        for clamp in self.fit_streams_to_disk(space, held, embedded, origin)? {
            tracing::warn!(
                key = %clamp.key,
                configured_bytes = clamp.configured_bytes,
                clamped_bytes = clamp.clamped_bytes,
                available_bytes = space.available_bytes,
                "{} = {} does not fit the free space of data_dir; using {}",
                clamp.key,
                clamp.configured_bytes,
                clamp.clamped_bytes
            );
        }
        if !embedded && bytes(wanted) > space.available_bytes {
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
    fn streams_larger_than_the_filesystem_are_refused_naming_the_largest() {
        let mut c = config(1 << 40, 1 << 28, 1 << 28);
        let space = DiskSpace {
            total_bytes: 16 * GIB,
            available_bytes: 10 * GIB,
        };
        let err = c.fit_streams_to_disk(space, 0, true, "x").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("streams.samples.max_bytes"), "{text}");
        assert!(text.contains(&format!("({} bytes)", 16 * GIB)), "{text}");
    }

    #[test]
    fn streams_that_outgrow_the_free_space_shrink_in_proportion() {
        let mut c = config(8 << 30, 2 << 30, 1 << 20);
        let space = DiskSpace {
            total_bytes: 16 * GIB,
            available_bytes: 4 * GIB,
        };
        // What the store holds already is room for the streams too.
        let clamps = c.fit_streams_to_disk(space, GIB, true, "x").unwrap();
        let keys: Vec<_> = clamps.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            ["streams.samples.max_bytes", "streams.events.max_bytes"]
        );
        let total = (c.streams.samples.max_bytes
            + c.streams.events.max_bytes
            + c.streams.metrics.max_bytes) as u64;
        assert!(total <= 5 * GIB * 3 / 4 + (1 << 20), "{total}");
        assert!(total >= 5 * GIB * 3 / 4 - 4, "{total}");
        assert_eq!(c.streams.samples.max_bytes, clamps[0].clamped_bytes);
        assert!((c.streams.samples.max_bytes - 4 * c.streams.events.max_bytes).abs() < 4);
        assert_eq!(c.streams.metrics.max_bytes, 1 << 20);
        // Told not to shrink (external broker), nothing changes.
        let mut c = config(8 << 30, 2 << 30, 1 << 20);
        assert!(c
            .fit_streams_to_disk(space, 0, false, "x")
            .unwrap()
            .is_empty());
        assert_eq!(c.streams.samples.max_bytes, 8 << 30);
        // Room enough: nothing changes.
        let mut c = config(1 << 30, 1 << 28, 1 << 28);
        assert!(c
            .fit_streams_to_disk(space, 0, true, "x")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn reads_the_filesystem_of_a_directory_not_yet_created() {
        let dir = tempfile::tempdir().unwrap();
        let space = disk_space(&dir.path().join("not/yet")).unwrap();
        assert!(space.total_bytes > 0);
        assert!(space.available_bytes <= space.total_bytes);
        std::fs::create_dir(dir.path().join("nats")).unwrap();
        std::fs::write(dir.path().join("nats/a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("nats/s")).unwrap();
        std::fs::write(dir.path().join("nats/s/b"), [0u8; 23]).unwrap();
        assert_eq!(bytes_under(&dir.path().join("nats")), 123);
        assert_eq!(bytes_under(&dir.path().join("none")), 0);
    }
}
