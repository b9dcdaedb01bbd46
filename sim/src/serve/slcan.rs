//! The simulated pack as an slcan USB-CAN adapter on a serial line (a pty
//! in tests): it answers the adapter commands and, once opened, sends the
//! pack's Pylontech frames (see [`super::can_frames`]) every period.
//!
//! Commands: `S0`..`S8` (only while closed), `O`, `C`, `V` (version),
//! `v`, `N` (serial number), `F` (status flags), `t`/`T` transmit (acked
//! with `z`/`Z`, content ignored). Success is `\r`, anything else `BEL`.
//! While the pack is [`Faults::unresponsive`](crate::Faults) the adapter
//! sends nothing at all, not even replies.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{interval, timeout, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::can_frames::{bms_frames, BmsLimits};
use crate::pack::SimPack;

/// Longest command line kept; longer ones are discarded and refused.
const MAX_COMMAND_LEN: usize = 64;
/// Limit of one write to the port; a burst that does not fit in time (no
/// one reads the other end) is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
const BEL: u8 = 0x07;

/// How the adapter behaves.
#[derive(Debug, Clone)]
pub struct SlcanServerOptions {
    /// Time between two bursts of frames.
    pub period: Duration,
    /// Ids not sent (shared, so a test can drop a frame while serving).
    pub skip_ids: Arc<Mutex<HashSet<u16>>>,
}

impl SlcanServerOptions {
    /// Every frame every `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            skip_ids: Arc::default(),
        }
    }
}

/// A standard data frame as one slcan line.
fn slcan_line(id: u16, data: &[u8]) -> String {
    let mut line = format!("t{:03X}{}", id & 0x7FF, data.len().min(8));
    for byte in data.iter().take(8) {
        let _ = write!(line, "{byte:02X}");
    }
    line.push('\r');
    line
}

/// Adapter state between commands.
#[derive(Debug, Default)]
struct Adapter {
    open: bool,
    line: Vec<u8>,
    overlong: bool,
}

impl Adapter {
    /// The reply to one command line.
    fn answer(&mut self, line: &[u8]) -> Vec<u8> {
        let ok = b"\r".to_vec();
        let refuse = vec![BEL];
        match line {
            [b'S', digit @ b'0'..=b'8'] if !self.open => {
                let _ = digit;
                ok
            }
            b"O" if !self.open => {
                self.open = true;
                ok
            }
            b"C" if self.open => {
                self.open = false;
                ok
            }
            b"V" => b"V1013\r".to_vec(),
            b"v" => b"v1013\r".to_vec(),
            b"N" => b"NPGSM\r".to_vec(),
            b"F" => b"F00\r".to_vec(),
            [b't', ..] if self.open => b"z\r".to_vec(),
            [b'T', ..] if self.open => b"Z\r".to_vec(),
            _ => refuse,
        }
    }

    /// Splits `bytes` into command lines and collects the replies.
    fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut replies = Vec::new();
        for &byte in bytes {
            match byte {
                b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    if std::mem::take(&mut self.overlong) {
                        replies.push(BEL);
                    } else if !line.is_empty() {
                        replies.extend(self.answer(&line));
                    }
                }
                b'\n' => {}
                _ if self.line.len() >= MAX_COMMAND_LEN => {
                    self.line.clear();
                    self.overlong = true;
                }
                _ if self.overlong => {}
                _ => self.line.push(byte),
            }
        }
        replies
    }
}

async fn write_bounded<S: AsyncWrite + Unpin>(port: &mut S, bytes: &[u8]) -> io::Result<()> {
    let write = async {
        port.write_all(bytes).await?;
        port.flush().await
    };
    match timeout(WRITE_TIMEOUT, write).await {
        Ok(result) => result,
        // Nobody reads: drop this write rather than stall the adapter.
        Err(_) => Ok(()),
    }
}

/// Serves `pack` as an slcan adapter sending every frame every `period`,
/// until `shutdown`; see [`serve_slcan_with`].
pub async fn serve_slcan<S: AsyncRead + AsyncWrite + Unpin>(
    port: S,
    pack: SimPack,
    period: Duration,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_slcan_with(port, pack, SlcanServerOptions::new(period), shutdown).await
}

/// Serves `pack` as an slcan adapter on `port` until `shutdown` (then
/// `Ok`), or until the port fails (its error) or ends (`Ok`). Each
/// period, while opened and responsive, it advances the pack to now and
/// sends its frames except `options.skip_ids`.
pub async fn serve_slcan_with<S: AsyncRead + AsyncWrite + Unpin>(
    mut port: S,
    pack: SimPack,
    options: SlcanServerOptions,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut adapter = Adapter::default();
    let mut ticks = interval(options.period.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            read = port.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                let replies = adapter.feed(&buf[..n]);
                if !pack.faults().unresponsive && !replies.is_empty() {
                    write_bounded(&mut port, &replies).await?;
                }
            }
            _ = ticks.tick() => {
                let reading = pack.advance_to(std::time::Instant::now());
                if !adapter.open || pack.faults().unresponsive {
                    continue;
                }
                let limits = BmsLimits::for_pack(&pack, reading.cell_voltages_v.0.len());
                let skip = options
                    .skip_ids
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let burst: String = bms_frames(&reading, &limits)
                    .iter()
                    .filter(|(id, _)| !skip.contains(id))
                    .map(|(id, data)| slcan_line(*id, data))
                    .collect();
                write_bounded(&mut port, burst.as_bytes()).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Faults, SimPackConfig};
    use tokio::io::duplex;

    #[test]
    fn lines_and_commands() {
        assert_eq!(slcan_line(0x356, &[0x14, 0x15]), "t35621415\r");
        let mut a = Adapter::default();
        assert_eq!(a.feed(b"C\rS6\rO\r"), b"\x07\r\r");
        assert_eq!(a.feed(b"S6\rV\rt1230\rx\r"), b"\x07V1013\rz\r\x07");
        assert_eq!(a.feed(b"C"), b"");
        assert_eq!(a.feed(b"\r"), b"\r");
        let mut long = vec![b'S'; 100];
        long.push(b'\r');
        assert_eq!(a.feed(&long), b"\x07");
        assert_eq!(a.feed(b"S6\r"), b"\r");
    }

    #[tokio::test]
    async fn sends_frames_after_open_skips_ids_and_goes_silent_when_unresponsive() {
        let (mut ours, theirs) = duplex(4096);
        let pack = SimPack::new(&SimPackConfig::default());
        let options = SlcanServerOptions::new(Duration::from_millis(20));
        let skip = Arc::clone(&options.skip_ids);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_slcan_with(
            theirs,
            pack.clone(),
            options,
            shutdown.clone(),
        ));

        ours.write_all(b"S6\rO\r").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("t373") {
            let n = ours.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        assert!(text.starts_with("\r\r"), "{text:?}");
        assert!(text.contains("t3554"), "{text:?}");

        skip.lock().unwrap().insert(0x356);
        tokio::time::sleep(Duration::from_millis(60)).await;
        let n = ours.read(&mut buf).await.unwrap();
        let _ = n;
        tokio::time::sleep(Duration::from_millis(60)).await;
        let n = ours.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(!text.contains("t356"), "{text:?}");

        pack.set_faults(Faults {
            unresponsive: true,
            ..Faults::default()
        });
        tokio::time::sleep(Duration::from_millis(60)).await;
        let _ = timeout(Duration::from_millis(10), ours.read(&mut buf)).await;
        ours.write_all(b"V\r").await.unwrap();
        assert!(timeout(Duration::from_millis(100), ours.read(&mut buf))
            .await
            .is_err());

        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
