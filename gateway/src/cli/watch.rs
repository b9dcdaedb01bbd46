//! `packgate watch`: live samples from the broker, one compact line per
//! pack, and one per bank when banks publish their states, redrawn every
//! second.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;
use packgate_protocol::{decode, names, BankId, BankState, DataQuality, PackId, Sample};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why watching failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Subscribing failed.
    #[error("cannot subscribe to samples: {0}")]
    Subscribe(String),
    /// Writing to the terminal failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The line shown for one pack.
pub fn pack_line(sample: &Sample, age: Duration) -> String {
    let r = &sample.reading;
    let stale = match sample.quality {
        DataQuality::Fresh => "",
        DataQuality::Stale => " STALE",
        DataQuality::Suspect => " SUSPECT",
    };
    let alarms = if r.alarms.is_empty() {
        String::new()
    } else {
        format!(" ALARM {}", r.alarms.names().join(","))
    };
    format!(
        "{:<16} {:>7.2} V {:>8.2} A  SoC {:>5.1} %  cell {:.3}/{:.3} V  max {:>5.1} °C  seq {:>7}  age {:>5.1} s{stale}{alarms}",
        sample.pack_id.as_str(),
        r.pack_voltage_v,
        r.current_a,
        r.soc_pct,
        r.min_cell_v(),
        r.max_cell_v(),
        r.max_temperature_c(),
        sample.seq,
        age.as_secs_f64(),
    )
}

/// Prints live samples until `shutdown`; with `once`, prints one table
/// after the first second and returns.
pub async fn watch(
    client: async_nats::Client,
    out: &mut (dyn Write + Send),
    once: bool,
    shutdown: CancellationToken,
) -> Result<(), WatchError> {
    let mut subscriber = client
        .subscribe(names::ALL_SAMPLES_SUBJECT)
        .await
        .map_err(|e| WatchError::Subscribe(e.to_string()))?;
    let mut banks_subscriber = client
        .subscribe(names::ALL_BANKS_SUBJECT)
        .await
        .map_err(|e| WatchError::Subscribe(e.to_string()))?;
    let mut latest: BTreeMap<PackId, (Sample, Instant)> = BTreeMap::new();
    let mut banks: BTreeMap<BankId, (BankState, Instant)> = BTreeMap::new();
    let mut malformed = 0u64;
    let mut redraw = tokio::time::interval(Duration::from_secs(1));
    redraw.tick().await;
    loop {
        tokio::select! {
            message = subscriber.next() => match message {
                Some(message) => match decode::<Sample>(&message.payload) {
                    Ok(sample) => { latest.insert(sample.pack_id.clone(), (sample, Instant::now())); }
                    Err(_) => malformed += 1,
                },
                None => return Ok(()),
            },
            Some(message) = banks_subscriber.next() => match decode::<BankState>(&message.payload) {
                Ok(state) => { banks.insert(state.bank_id.clone(), (state, Instant::now())); }
                Err(_) => malformed += 1,
            },
            _ = redraw.tick() => {
                if !once {
                    // Clear the screen and go home, like `watch(1)`.
                    write!(out, "\x1b[2J\x1b[H")?;
                }
                writeln!(out, "{} packs{}", latest.len(),
                    if malformed > 0 { format!(", {malformed} malformed messages") } else { String::new() })?;
                for (sample, at) in latest.values() {
                    writeln!(out, "{}", pack_line(sample, at.elapsed()))?;
                }
                for (state, at) in banks.values() {
                    let age_ms = i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX);
                    writeln!(out, "{}", crate::cli::banks::bank_line(state, age_ms))?;
                }
                out.flush()?;
                if once {
                    return Ok(());
                }
            }
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use packgate_protocol::*;

    #[test]
    fn a_line_shows_the_essentials() {
        let sample = Sample {
            pack_id: PackId::new("rack1").unwrap(),
            boot_id: BootId(1),
            seq: 42,
            timestamp_ms: 0,
            quality: DataQuality::Stale,
            reading: PackReading {
                pack_voltage_v: 52.81,
                current_a: -10.5,
                soc_pct: 66.6,
                soh_pct: Some(100.0),
                cell_voltages_v: CellVoltages(vec![3.301, 3.305]),
                temperatures_c: Temperatures(vec![25.0, 31.5]),
                balancing: BalancingState(0),
                alarms: AlarmFlags::OVER_TEMPERATURE,
                charge_enabled: false,
                discharge_enabled: false,
            },
            clock: packgate_protocol::sample::ClockQuality::Trusted,
        };
        let line = pack_line(&sample, Duration::from_millis(1500));
        for part in [
            "rack1",
            "52.81 V",
            "-10.50 A",
            "66.6 %",
            "3.301/3.305 V",
            "31.5 °C",
            "seq      42",
            "1.5 s",
            "STALE",
            "over_temperature",
        ] {
            assert!(line.contains(part), "{part:?} missing from {line:?}");
        }
    }
}
