//! The memory figures of a long run (`packgate bench --soak HOURS`): the
//! gateway's resident memory sampled through the run, and its slope after
//! a warm-up. A leak keeps a slope to the end; caches filling up (SQLite's
//! page cache, the allocator's arenas, the broker client's buffers) show a
//! slope that flattens, which the second half's slope tells apart. The
//! heap's live bytes are traced beside the resident size: a resident size
//! that grows over a flat heap is the allocator keeping freed memory, not
//! a leak.

use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::store::sqlite_memory_in_use_bytes;
use crate::telemetry::process;

/// Points kept at most, whatever the run's length.
const MAX_POINTS: usize = 10_000;

/// One memory reading: seconds into the run, MiB.
pub type RssPoint = (f64, f64);

/// The memory read at one moment of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryReading {
    /// Seconds into the run.
    pub at_s: f64,
    /// Resident memory, MiB.
    pub rss_mib: f64,
    /// Live heap allocations, MiB; `None` where the allocator does not
    /// tell.
    pub heap_mib: Option<f64>,
    /// What SQLite holds of that heap (page caches above all), MiB.
    pub sqlite_mib: f64,
}

/// What a soak measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SoakFigures {
    /// Hours the packs were polled.
    pub hours: f64,
    /// The warm-up left out of the slopes, seconds.
    pub warm_up_s: f64,
    /// Resident memory at the end of the warm-up, MiB.
    pub rss_mib_after_warm_up: f64,
    /// Resident memory at the end, MiB.
    pub rss_mib_end: f64,
    /// Growth after the warm-up, MiB per hour (least squares); `None`
    /// with fewer than three readings.
    pub rss_slope_mib_per_hour: Option<f64>,
    /// The same over the second half of the run only: near zero when the
    /// growth has levelled off, close to the whole slope when it has not.
    pub rss_slope_last_half_mib_per_hour: Option<f64>,
    /// Live heap at the end of the warm-up, MiB; `None` where the
    /// allocator does not tell.
    pub heap_mib_after_warm_up: Option<f64>,
    /// Live heap at the end, MiB.
    pub heap_mib_end: Option<f64>,
    /// Growth of the live heap after the warm-up, MiB per hour: what a
    /// leak would show, whatever the allocator keeps.
    pub heap_slope_mib_per_hour: Option<f64>,
    /// The same over the second half of the run.
    pub heap_slope_last_half_mib_per_hour: Option<f64>,
    /// SQLite's share of the heap at the end of the warm-up, MiB.
    pub sqlite_mib_after_warm_up: f64,
    /// SQLite's share of the heap at the end, MiB.
    pub sqlite_mib_end: f64,
}

/// The start of a run of `duration` left out of the slope: a quarter of
/// it, at most 15 minutes.
pub fn warm_up(duration: Duration) -> Duration {
    (duration / 4).min(Duration::from_secs(15 * 60))
}

/// How often to read the memory during a run of `duration`: about 240
/// readings, between one a second and one a minute.
pub fn sample_every(duration: Duration) -> Duration {
    (duration / 240).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// The least-squares slope of `points`, per hour; `None` with fewer than
/// three points or all at one time.
pub fn slope_per_hour(points: &[RssPoint]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|(t, _)| t).sum::<f64>() / n;
    let mean_m = points.iter().map(|(_, m)| m).sum::<f64>() / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (t, m) in points {
        covariance += (t - mean_t) * (m - mean_m);
        variance += (t - mean_t) * (t - mean_t);
    }
    (variance > 0.0).then(|| covariance / variance * 3600.0)
}

/// The figures of a run of `duration` from its readings.
pub fn figures(readings: &[MemoryReading], duration: Duration) -> SoakFigures {
    let warm_up_s = warm_up(duration).as_secs_f64();
    let half_s = duration.as_secs_f64() / 2.0;
    let after: Vec<MemoryReading> = readings
        .iter()
        .copied()
        .filter(|r| r.at_s >= warm_up_s)
        .collect();
    let rss = |from_s: f64| -> Vec<RssPoint> {
        after
            .iter()
            .filter(|r| r.at_s >= from_s)
            .map(|r| (r.at_s, r.rss_mib))
            .collect()
    };
    let heap = |from_s: f64| -> Vec<RssPoint> {
        after
            .iter()
            .filter(|r| r.at_s >= from_s)
            .filter_map(|r| r.heap_mib.map(|h| (r.at_s, h)))
            .collect()
    };
    SoakFigures {
        hours: duration.as_secs_f64() / 3600.0,
        warm_up_s,
        rss_mib_after_warm_up: after.first().map_or(0.0, |r| r.rss_mib),
        rss_mib_end: readings.last().map_or(0.0, |r| r.rss_mib),
        rss_slope_mib_per_hour: slope_per_hour(&rss(warm_up_s)),
        rss_slope_last_half_mib_per_hour: slope_per_hour(&rss(half_s)),
        heap_mib_after_warm_up: after.first().and_then(|r| r.heap_mib),
        heap_mib_end: readings.last().and_then(|r| r.heap_mib),
        heap_slope_mib_per_hour: slope_per_hour(&heap(warm_up_s)),
        heap_slope_last_half_mib_per_hour: slope_per_hour(&heap(half_s)),
        sqlite_mib_after_warm_up: after.first().map_or(0.0, |r| r.sqlite_mib),
        sqlite_mib_end: readings.last().map_or(0.0, |r| r.sqlite_mib),
    }
}

/// Reads this process's resident memory and live heap every `every` until
/// `stop`.
pub async fn trace_memory(every: Duration, stop: CancellationToken) -> Vec<MemoryReading> {
    let start = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(every);
    let mut points = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {
                if points.len() < MAX_POINTS {
                    const MIB: f64 = 1024.0 * 1024.0;
                    points.push(MemoryReading {
                        at_s: start.elapsed().as_secs_f64(),
                        rss_mib: process::usage(None).rss_bytes as f64 / MIB,
                        heap_mib: process::heap_in_use_bytes().map(|b| b as f64 / MIB),
                        sqlite_mib: sqlite_memory_in_use_bytes() as f64 / MIB,
                    });
                }
            }
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(slope_per_hour: f64, from_s: u64, to_s: u64) -> Vec<MemoryReading> {
        (from_s..=to_s)
            .step_by(60)
            .map(|t| MemoryReading {
                at_s: t as f64,
                rss_mib: 15.0 + slope_per_hour * t as f64 / 3600.0,
                heap_mib: Some(6.0),
                sqlite_mib: 2.0,
            })
            .collect()
    }

    #[test]
    fn a_steady_leak_keeps_its_slope_to_the_end() {
        let points = line(0.9, 0, 90 * 60);
        let figures = figures(&points, Duration::from_secs(90 * 60));
        assert_eq!(figures.warm_up_s, 15.0 * 60.0);
        let whole = figures.rss_slope_mib_per_hour.unwrap();
        let last = figures.rss_slope_last_half_mib_per_hour.unwrap();
        assert!((whole - 0.9).abs() < 1e-9, "{whole}");
        assert!((last - 0.9).abs() < 1e-9, "{last}");
        assert!((figures.rss_mib_after_warm_up - 15.225).abs() < 1e-9);
        // The heap stayed flat under the growing resident size.
        assert_eq!(figures.heap_slope_mib_per_hour, Some(0.0));
        assert_eq!(figures.heap_mib_end, Some(6.0));
    }

    #[test]
    fn a_leak_shows_in_the_heap_slope() {
        let points: Vec<MemoryReading> = (0..=7200u64)
            .step_by(60)
            .map(|t| MemoryReading {
                at_s: t as f64,
                rss_mib: 20.0,
                heap_mib: Some(5.0 + 0.5 * t as f64 / 3600.0),
                sqlite_mib: 2.0,
            })
            .collect();
        let figures = figures(&points, Duration::from_secs(7200));
        assert_eq!(figures.rss_slope_mib_per_hour, Some(0.0));
        let heap = figures.heap_slope_mib_per_hour.unwrap();
        assert!((heap - 0.5).abs() < 1e-9, "{heap}");
        let heap_last = figures.heap_slope_last_half_mib_per_hour.unwrap();
        assert!((heap_last - 0.5).abs() < 1e-9, "{heap_last}");
    }

    #[test]
    fn no_heap_figures_where_the_allocator_does_not_tell() {
        let points: Vec<MemoryReading> = line(0.0, 0, 3600)
            .into_iter()
            .map(|r| MemoryReading {
                heap_mib: None,
                ..r
            })
            .collect();
        let figures = figures(&points, Duration::from_secs(3600));
        assert_eq!(figures.heap_slope_mib_per_hour, None);
        assert_eq!(figures.heap_mib_end, None);
    }

    #[test]
    fn a_cache_that_fills_up_flattens_in_the_second_half() {
        // Grows for the first 40 minutes of a 2-hour run, then stays.
        let points: Vec<MemoryReading> = (0..=7200u64)
            .step_by(60)
            .map(|t| MemoryReading {
                at_s: t as f64,
                rss_mib: 15.0 + (t.min(2400) as f64) / 2400.0,
                heap_mib: None,
                sqlite_mib: 0.0,
            })
            .collect();
        let figures = figures(&points, Duration::from_secs(7200));
        assert!(figures.rss_slope_mib_per_hour.unwrap() > 0.1);
        assert_eq!(figures.rss_slope_last_half_mib_per_hour, Some(0.0));
        assert_eq!(figures.rss_mib_end, 16.0);
    }

    #[test]
    fn too_few_readings_have_no_slope() {
        assert_eq!(slope_per_hour(&[]), None);
        assert_eq!(slope_per_hour(&[(0.0, 1.0), (1.0, 2.0)]), None);
        assert_eq!(slope_per_hour(&[(5.0, 1.0), (5.0, 2.0), (5.0, 3.0)]), None);
    }

    #[test]
    fn sampling_is_bounded_for_any_length() {
        assert_eq!(
            sample_every(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sample_every(Duration::from_secs(24 * 3600)),
            Duration::from_secs(60)
        );
        assert_eq!(warm_up(Duration::from_secs(600)), Duration::from_secs(150));
        assert_eq!(
            warm_up(Duration::from_secs(24 * 3600)),
            Duration::from_secs(900)
        );
    }
}
