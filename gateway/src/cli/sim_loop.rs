//! The closed loop of the simulator: the inverter on the slcan line (see
//! [`super::sim_inverter`]) hears each burst a bank's link sends and
//! drives the simulated packs with an [`ObeyingInverter`]: its load
//! profile, clamped to the CCL and DCL heard (and to nothing once the link
//! has been silent for `silence_after`), split across the packs, becomes
//! their currents. `packgate sim --inverter PTY --inverter-load STEPS`
//! runs it with the packs it serves.

use std::io;
use std::time::Duration;

use packgate_drivers::can::transport::ByteStream;
use packgate_sim::{HeardLimits, InverterStep, LoadProfile, LoadStep, ObeyingInverter};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::sim_inverter::{receive_frames, Burst};

/// How the loop runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopOptions {
    /// How often the inverter sets the packs' currents.
    pub step: Duration,
}

impl Default for LoopOptions {
    fn default() -> Self {
        Self {
            step: Duration::from_millis(100),
        }
    }
}

/// How long the inverter goes on without hearing its BMS before it takes
/// no current (a real inverter's is its own setting, seconds to a minute).
pub const SILENCE_AFTER: Duration = Duration::from_secs(3);

/// What the loop did, for whoever watches it.
#[derive(Debug, Clone, PartialEq)]
pub enum LoopEvent {
    /// A burst heard, and the limits taken from it.
    Heard {
        /// When its last frame came.
        at: Instant,
        /// The burst.
        burst: Burst,
        /// The limits the inverter follows from now on.
        limits: HeardLimits,
    },
    /// The packs' currents set.
    Stepped {
        /// When.
        at: Instant,
        /// What was asked, taken and given to each pack.
        step: InverterStep,
    },
}

/// The limits a burst carries; a missing enable counts as off.
pub fn limits_of(burst: &Burst) -> Option<HeardLimits> {
    Some(HeardLimits {
        charge_current_limit_a: f64::from(burst.charge_current_limit_a?),
        discharge_current_limit_a: f64::from(burst.discharge_current_limit_a?),
        charge_enable: burst.charge_enable.unwrap_or(false),
        discharge_enable: burst.discharge_enable.unwrap_or(false),
    })
}

/// Parses `CURRENT_A:SECONDS[,CURRENT_A:SECONDS...]` (positive charges),
/// played in a loop: `250:60,-250:60` charges at 250 A for a minute, then
/// discharges at 250 A for a minute, and again.
pub fn parse_load(text: &str) -> Result<LoadProfile, String> {
    let steps = text
        .split(',')
        .map(|step| {
            let (current, seconds) = step
                .split_once(':')
                .ok_or_else(|| format!("{step:?} is not CURRENT_A:SECONDS"))?;
            let current_a: f64 = current
                .trim()
                .parse()
                .map_err(|_| format!("{current:?} is not a current"))?;
            let duration_s: f64 = seconds
                .trim()
                .parse()
                .map_err(|_| format!("{seconds:?} is not a number of seconds"))?;
            Ok(LoadStep {
                duration_s,
                current_a,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let profile = LoadProfile::Scripted {
        steps,
        repeat: true,
    };
    profile
        .validate("inverter-load")
        .map_err(|e| e.to_string())?;
    Ok(profile)
}

/// Plays the adapter on `stream` as an inverter that obeys: each burst's
/// limits go to `inverter`, which sets the packs' currents every
/// `options.step`; what happens goes to `events` (bounded: when the
/// watcher is slow, events are dropped, never the loop held). Until
/// `shutdown` or the line closes.
pub async fn run_obeying<S: ByteStream>(
    stream: S,
    mut inverter: ObeyingInverter,
    options: LoopOptions,
    events: mpsc::Sender<LoopEvent>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let (sender, mut frames) = mpsc::channel(64);
    let reader = tokio::spawn(receive_frames(stream, sender, shutdown.clone()));
    let mut burst = Burst::default();
    let mut ticker = tokio::time::interval(options.step.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut last_step = started;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            frame = frames.recv() => {
                let Some(frame) = frame else { break };
                let at = started + frame.after;
                if !burst.take(&frame) {
                    continue;
                }
                let done = std::mem::take(&mut burst);
                if let Some(limits) = limits_of(&done) {
                    inverter.hear(limits, at.into_std());
                    let _ = events.try_send(LoopEvent::Heard { at, burst: done, limits });
                }
            }
            _ = ticker.tick() => {
                let now = Instant::now();
                let dt_s = now.saturating_duration_since(last_step).as_secs_f64();
                last_step = now;
                let step = inverter.step(dt_s, now.into_std());
                let _ = events.try_send(LoopEvent::Stepped { at: now, step });
            }
        }
    }
    // The line closed or the loop stops: the packs rest.
    inverter.hear(
        HeardLimits {
            charge_current_limit_a: 0.0,
            discharge_current_limit_a: 0.0,
            charge_enable: false,
            discharge_enable: false,
        },
        std::time::Instant::now(),
    );
    inverter.step(0.0, std::time::Instant::now());
    shutdown.cancel();
    match reader.await {
        Ok(result) => result.map(drop),
        Err(join) => Err(io::Error::other(join.to_string())),
    }
}

/// Prints one line per burst heard, with what the inverter asks and takes
/// (from its latest step).
pub async fn print_events(mut events: mpsc::Receiver<LoopEvent>) {
    use std::io::Write as _;
    let mut last: Option<InverterStep> = None;
    while let Some(event) = events.recv().await {
        match event {
            LoopEvent::Stepped { step, .. } => last = Some(step),
            LoopEvent::Heard { burst, .. } => {
                let taken = last.as_ref().map_or_else(String::new, |s| {
                    let parts: Vec<String> =
                        s.per_pack_a.iter().map(|a| format!("{a:.1}")).collect();
                    format!(
                        " | asks {:.1} A, takes {:.1} A: packs {} A",
                        s.requested_a,
                        s.allowed_a,
                        parts.join(" / ")
                    )
                });
                // A reader that went away does not stop the simulator.
                let _ = writeln!(std::io::stdout(), "{}{taken}", burst.describe());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_load_reads_as_steps_played_in_a_loop() {
        let profile = parse_load("250:60, -250:30").unwrap();
        let LoadProfile::Scripted { steps, repeat } = profile else {
            panic!("scripted");
        };
        assert!(repeat);
        assert_eq!(
            steps,
            [
                LoadStep {
                    duration_s: 60.0,
                    current_a: 250.0
                },
                LoadStep {
                    duration_s: 30.0,
                    current_a: -250.0
                }
            ]
        );
        assert!(parse_load("250").unwrap_err().contains("CURRENT_A:SECONDS"));
        assert!(parse_load("9000:1").is_err());
        assert!(parse_load("10:0").is_err());
    }

    #[test]
    fn a_burst_without_limits_gives_none_and_a_missing_enable_is_off() {
        assert!(limits_of(&Burst::default()).is_none());
        let burst = Burst {
            charge_current_limit_a: Some(40.0),
            discharge_current_limit_a: Some(100.0),
            discharge_enable: Some(true),
            ..Burst::default()
        };
        let limits = limits_of(&burst).unwrap();
        assert_eq!(limits.charge_current_limit_a, 40.0);
        assert!(!limits.charge_enable);
        assert!(limits.discharge_enable);
    }
}
