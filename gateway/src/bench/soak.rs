//! The memory figures of a long run (`packgate bench --soak HOURS`): the
//! gateway's resident memory sampled through the run, and its slope after
//! a warm-up. A leak keeps a slope to the end; caches filling up (SQLite's
//! page cache, the allocator's arenas, the broker client's buffers) show a
//! slope that flattens, which the second half's slope tells apart.

use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::telemetry::process;

/// Points kept at most, whatever the run's length.
const MAX_POINTS: usize = 10_000;

/// One resident-memory reading: seconds into the run, MiB.
pub type RssPoint = (f64, f64);

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
pub fn figures(points: &[RssPoint], duration: Duration) -> SoakFigures {
    let warm_up_s = warm_up(duration).as_secs_f64();
    let after: Vec<RssPoint> = points
        .iter()
        .copied()
        .filter(|(t, _)| *t >= warm_up_s)
        .collect();
    let half_s = duration.as_secs_f64() / 2.0;
    let last_half: Vec<RssPoint> = after
        .iter()
        .copied()
        .filter(|(t, _)| *t >= half_s)
        .collect();
    SoakFigures {
        hours: duration.as_secs_f64() / 3600.0,
        warm_up_s,
        rss_mib_after_warm_up: after.first().map_or(0.0, |(_, m)| *m),
        rss_mib_end: points.last().map_or(0.0, |(_, m)| *m),
        rss_slope_mib_per_hour: slope_per_hour(&after),
        rss_slope_last_half_mib_per_hour: slope_per_hour(&last_half),
    }
}

/// Reads this process's resident memory every `every` until `stop`.
pub async fn trace_rss(every: Duration, stop: CancellationToken) -> Vec<RssPoint> {
    let start = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(every);
    let mut points = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {
                if points.len() < MAX_POINTS {
                    let mib = process::usage(None).rss_bytes as f64 / (1024.0 * 1024.0);
                    points.push((start.elapsed().as_secs_f64(), mib));
                }
            }
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(slope_per_hour: f64, from_s: u64, to_s: u64) -> Vec<RssPoint> {
        (from_s..=to_s)
            .step_by(60)
            .map(|t| (t as f64, 15.0 + slope_per_hour * t as f64 / 3600.0))
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
    }

    #[test]
    fn a_cache_that_fills_up_flattens_in_the_second_half() {
        // Grows for the first 40 minutes of a 2-hour run, then stays.
        let points: Vec<RssPoint> = (0..=7200u64)
            .step_by(60)
            .map(|t| (t as f64, 15.0 + (t.min(2400) as f64) / 2400.0))
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
