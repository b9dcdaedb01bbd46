//! `packgate sim --inverter`: the simulator as an inverter on an slcan
//! line (a pty in tests). It plays the USB-CAN adapter the gateway opens
//! (every command answered, every transmitted frame acknowledged with
//! `z`), decodes the frames the bank's link sends with the Pylontech
//! decoder, and prints one line per burst or records the bursts as JSON
//! lines.

use std::io;
use std::time::Duration;

use packgate_drivers::can::pylontech::{decode_frame, BmsFrame, PylonFlags};
use packgate_drivers::can::slcan::{decode_line, SlcanEvent, MAX_LINE_LEN};
use packgate_drivers::can::transport::ByteStream;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

/// Limit of one answer written to the line.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// One frame the inverter received.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedFrame {
    /// When, since the inverter started listening.
    pub after: Duration,
    /// The frame, decoded.
    pub frame: BmsFrame,
}

/// Plays the adapter on `stream` and hands every frame that decodes to
/// `frames` (a bounded channel: a slow reader holds the line, as a busy
/// inverter would), until `shutdown` or the line closes. Frames that do
/// not decode are counted in the returned total of bad frames.
pub async fn receive_frames<S: ByteStream>(
    mut stream: S,
    frames: mpsc::Sender<ReceivedFrame>,
    shutdown: CancellationToken,
) -> io::Result<u64> {
    let started = Instant::now();
    let mut line = Vec::with_capacity(MAX_LINE_LEN);
    let mut buf = [0u8; 256];
    let mut bad = 0u64;
    loop {
        let n = tokio::select! {
            () = shutdown.cancelled() => return Ok(bad),
            read = stream.read(&mut buf) => read?,
        };
        if n == 0 {
            return Ok(bad);
        }
        let mut answers = Vec::new();
        for &byte in &buf[..n] {
            if byte != b'\r' {
                if line.len() < MAX_LINE_LEN && byte != b'\n' {
                    line.push(byte);
                }
                continue;
            }
            match line.first() {
                Some(b't' | b'T') => {
                    answers.extend_from_slice(if line[0] == b't' { b"z\r" } else { b"Z\r" });
                    match decode_line(&line) {
                        Ok(SlcanEvent::Frame { frame, .. }) => match decode_frame(&frame) {
                            Ok(decoded) => {
                                let received = ReceivedFrame {
                                    after: started.elapsed(),
                                    frame: decoded,
                                };
                                if frames.send(received).await.is_err() {
                                    return Ok(bad);
                                }
                            }
                            Err(_) => bad += 1,
                        },
                        _ => bad += 1,
                    }
                }
                Some(b'V') => answers.extend_from_slice(b"V1013\r"),
                // C, S<n>, O and the rest: done.
                _ => answers.push(b'\r'),
            }
            line.clear();
        }
        if !answers.is_empty() {
            let write = async {
                stream.write_all(&answers).await?;
                stream.flush().await
            };
            match timeout(WRITE_TIMEOUT, write).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "answer not written",
                    ))
                }
            }
        }
    }
}

/// One burst of the frame set, as the inverter understood it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Burst {
    /// When its last frame came, milliseconds since listening started.
    pub at_ms: u64,
    /// Charge voltage limit, V.
    pub charge_voltage_limit_v: Option<f32>,
    /// Charge current limit, A.
    pub charge_current_limit_a: Option<f32>,
    /// Discharge current limit, A.
    pub discharge_current_limit_a: Option<f32>,
    /// Discharge voltage limit, V.
    pub discharge_voltage_limit_v: Option<f32>,
    /// State of charge, %.
    pub soc_pct: Option<u16>,
    /// State of health, %.
    pub soh_pct: Option<u16>,
    /// Battery voltage, V.
    pub voltage_v: Option<f32>,
    /// Battery current, A (+ charging).
    pub current_a: Option<f32>,
    /// Battery temperature, °C.
    pub temperature_c: Option<f32>,
    /// The protection word of 0x359.
    pub protection: Option<u16>,
    /// Modules (packs) online.
    pub module_count: Option<u8>,
    /// Charge enable of 0x35C.
    pub charge_enable: Option<bool>,
    /// Discharge enable of 0x35C.
    pub discharge_enable: Option<bool>,
    /// The name of 0x35E.
    pub name: Option<String>,
}

impl Burst {
    /// Takes `frame` into the burst; true when it ends one (0x35E, the
    /// last of the set).
    pub fn take(&mut self, received: &ReceivedFrame) -> bool {
        self.at_ms = u64::try_from(received.after.as_millis()).unwrap_or(u64::MAX);
        match &received.frame {
            BmsFrame::Limits(l) => {
                self.charge_voltage_limit_v = Some(l.charge_voltage_limit_v);
                self.charge_current_limit_a = Some(l.charge_current_limit_a);
                self.discharge_current_limit_a = Some(l.discharge_current_limit_a);
                self.discharge_voltage_limit_v = l.discharge_voltage_limit_v;
            }
            BmsFrame::SocSoh(s) => {
                self.soc_pct = Some(s.soc_pct);
                self.soh_pct = Some(s.soh_pct);
            }
            BmsFrame::Measurements(m) => {
                self.voltage_v = Some(m.pack_voltage_v);
                self.current_a = Some(m.current_a);
                self.temperature_c = Some(m.temperature_c);
            }
            BmsFrame::Protection(p) => {
                self.protection = Some(p.protection.0);
                self.module_count = Some(p.module_count);
            }
            BmsFrame::Request(r) => {
                self.charge_enable = Some(r.charge_enable);
                self.discharge_enable = Some(r.discharge_enable);
            }
            BmsFrame::Manufacturer(name) => {
                self.name = Some(name.clone());
                return true;
            }
            BmsFrame::SmaAlarms(_) | BmsFrame::CellExtremes(_) => {}
        }
        false
    }

    /// One line for the operator.
    pub fn describe(&self) -> String {
        let f = |v: Option<f32>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        let on = |v: Option<bool>| match v {
            Some(true) => "on",
            Some(false) => "off",
            None => "-",
        };
        let alarms = self.protection.map_or_else(
            || "-".to_owned(),
            |p| {
                let flags = PylonFlags(p).alarm_flags();
                if flags.is_empty() {
                    "none".to_owned()
                } else {
                    flags.names().join(",")
                }
            },
        );
        format!(
            "{:>8} ms {}: CVL {} V CCL {} A DCL {} A SoC {} % {} V {} A {} °C modules {} alarms {} charge {} discharge {}",
            self.at_ms,
            self.name.as_deref().unwrap_or("-"),
            f(self.charge_voltage_limit_v),
            f(self.charge_current_limit_a),
            f(self.discharge_current_limit_a),
            self.soc_pct.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            self.voltage_v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
            f(self.current_a),
            f(self.temperature_c),
            self.module_count.map_or_else(|| "-".to_owned(), |m| m.to_string()),
            alarms,
            on(self.charge_enable),
            on(self.discharge_enable),
        )
    }
}

/// Listens as the inverter on `stream` until `shutdown` or the line
/// closes: one line per burst on standard output, or, with `record`, one
/// JSON line per burst appended to that file.
pub async fn run_inverter<S: ByteStream>(
    stream: S,
    record: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    use std::io::Write as _;
    let (sender, mut frames) = mpsc::channel(64);
    let reader = tokio::spawn(receive_frames(stream, sender, shutdown.clone()));
    let mut file = match &record {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
        None => None,
    };
    let mut burst = Burst::default();
    while let Some(received) = frames.recv().await {
        if !burst.take(&received) {
            continue;
        }
        let done = std::mem::take(&mut burst);
        match &mut file {
            Some(file) => {
                let line = serde_json::to_string(&done).map_err(io::Error::other)?;
                writeln!(file, "{line}")?;
            }
            // A reader that went away does not stop the inverter.
            None => {
                let _ = writeln!(std::io::stdout(), "{}", done.describe());
            }
        }
    }
    match reader.await {
        Ok(result) => result.map(drop),
        Err(join) => Err(io::Error::other(join.to_string())),
    }
}

#[cfg(test)]
#[path = "sim_inverter_tests.rs"]
mod tests;
