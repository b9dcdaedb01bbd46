//! The bank's CAN link to its inverter: one task per bank with an
//! `inverter` table, the only writer to that link.
//!
//! The bank loop hands each state it computes to the task through a
//! `watch` channel (one slot, replaced: the loop never waits on the link).
//! Every `send_interval` the task sends the six frames of the latest
//! state, each write under a timeout. A state is good for `stop_after`:
//! once the latest state is older, or no pack has counted for that long
//! (every pack silent: the bank's states are stops), the task sends one
//! last burst with both currents zero and both enables off and then
//! nothing until a good state comes, so the inverter falls into its own
//! safe state for a lost BMS. A failed adapter is reopened with backoff.

use std::sync::Arc;
use std::time::Duration;

use packgate_drivers::can::inverter::{encode_report, InverterReport};
use packgate_drivers::can::slcan::Bitrate;
use packgate_drivers::can::transport::{
    CanConnector, CanLink, SlcanSerialConnector, TransportError,
};
use packgate_protocol::{BankId, BankState};
use tokio::sync::watch;
use tokio::time::{timeout, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::inverter::{report, stopped};
use super::metrics::BankMetrics;
use crate::config::{InverterConfig, InverterLinkKind};
use crate::retry::Backoff;

/// How long a stopping worker gives its links to send their last burst.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// First wait before reopening a failed adapter.
const MIN_BACKOFF: Duration = Duration::from_millis(200);

/// The latest state of a bank as the link sees it.
#[derive(Debug, Clone)]
pub struct LinkInput {
    /// The state.
    pub state: BankState,
    /// When it was computed.
    pub at: Instant,
    /// When the bank last had a pack counted (`None`: never in this run).
    pub live_at: Option<Instant>,
}

/// The sending half the bank loop holds.
pub type LinkSender = watch::Sender<Option<LinkInput>>;

/// Why a link cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The configuration was not validated, or names what this build lacks.
    #[error("inverter link of bank {bank}: {reason}")]
    Config {
        /// The bank.
        bank: BankId,
        /// Why.
        reason: String,
    },
}

/// What the link does at one tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Sends this report.
    Send(InverterReport),
    /// Sends this last report (currents zero, enables off) and falls
    /// silent once it went out.
    Last(InverterReport),
    /// Sends nothing.
    Silent,
}

/// What to send at `now`: the latest state's report while it is good,
/// one last zero burst after it went bad, then nothing. `silent` says
/// whether the last burst already went out.
pub fn step(
    input: Option<&LinkInput>,
    now: Instant,
    stop_after: Duration,
    silent: bool,
    name: &str,
) -> Step {
    let Some(input) = input else {
        return Step::Silent;
    };
    let young = |at: Instant| now.saturating_duration_since(at) <= stop_after;
    if young(input.at) && input.live_at.is_some_and(young) {
        return Step::Send(report(&input.state, name));
    }
    if silent {
        Step::Silent
    } else {
        Step::Last(stopped(report(&input.state, name)))
    }
}

/// The connector of `config`'s adapter.
pub fn connector(
    bank: &BankId,
    config: &InverterConfig,
) -> Result<Box<dyn CanConnector>, LinkError> {
    let error = |reason: String| LinkError::Config {
        bank: bank.clone(),
        reason,
    };
    let io_timeout = Duration::from_millis(config.write_timeout_ms);
    match config.kind {
        InverterLinkKind::Slcan => {
            let path = config
                .port
                .as_ref()
                .ok_or_else(|| error("an slcan link needs a port".into()))?;
            let bitrate = Bitrate::from_bps(config.bitrate_bps).ok_or_else(|| {
                error(format!(
                    "{} bit/s is not an slcan bitrate",
                    config.bitrate_bps
                ))
            })?;
            Ok(Box::new(SlcanSerialConnector {
                path: path.to_string_lossy().into_owned(),
                serial_baud: config.baud_rate,
                bitrate,
                io_timeout,
            }))
        }
        #[cfg(feature = "socketcan")]
        InverterLinkKind::Socketcan => {
            let interface = config
                .interface
                .clone()
                .ok_or_else(|| error("a socketcan link needs an interface".into()))?;
            Ok(Box::new(
                packgate_drivers::can::socketcan::SocketCanConnector { interface },
            ))
        }
        #[cfg(not(feature = "socketcan"))]
        InverterLinkKind::Socketcan => Err(error(
            "packgate was built without the socketcan feature".into(),
        )),
    }
}

/// One bank's link task.
#[derive(Debug)]
pub struct InverterLink {
    bank: BankId,
    config: InverterConfig,
    connector: Box<dyn CanConnector>,
    input: watch::Receiver<Option<LinkInput>>,
    metrics: Arc<BankMetrics>,
}

impl InverterLink {
    /// A link on `connector` and the sender the bank loop feeds it with.
    pub fn new(
        bank: BankId,
        config: InverterConfig,
        connector: Box<dyn CanConnector>,
        metrics: Arc<BankMetrics>,
    ) -> (Self, LinkSender) {
        let (sender, input) = watch::channel(None);
        let link = Self {
            bank,
            config,
            connector,
            input,
            metrics,
        };
        (link, sender)
    }

    /// Opens the adapter and sends until `shutdown`, reopening it with
    /// backoff after every failure.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let write_timeout = Duration::from_millis(self.config.write_timeout_ms);
        let max_backoff = Duration::from_millis(self.config.reconnect_backoff_max_ms);
        let mut backoff = Backoff::new(MIN_BACKOFF, max_backoff);
        // Nothing is sent before the first good state.
        let mut silent = true;
        loop {
            let opened = tokio::select! {
                () = shutdown.cancelled() => return,
                opened = timeout(write_timeout * 4, self.connector.connect()) => opened,
            };
            match opened {
                Ok(Ok(mut link)) => {
                    self.metrics.counts.inverter_connects.inc();
                    tracing::info!(bank = %self.bank, "inverter link open");
                    backoff.reset();
                    match self.send_until(&mut *link, &mut silent, &shutdown).await {
                        Ok(()) => return,
                        Err(error) => {
                            tracing::warn!(bank = %self.bank, %error, "inverter link failed; reopening");
                        }
                    }
                }
                Ok(Err(error)) => {
                    self.metrics.counts.inverter_connect_failures.inc();
                    tracing::debug!(bank = %self.bank, %error, "inverter adapter not opened");
                }
                Err(_) => {
                    self.metrics.counts.inverter_connect_failures.inc();
                    tracing::debug!(bank = %self.bank, "inverter adapter did not open in time");
                }
            }
            if !backoff.wait(&shutdown).await {
                return;
            }
        }
    }

    /// Sends a burst every interval on `link` until `shutdown` (`Ok`) or a
    /// write fails (`Err`: the link must be reopened).
    async fn send_until(
        &mut self,
        link: &mut dyn CanLink,
        silent: &mut bool,
        shutdown: &CancellationToken,
    ) -> Result<(), TransportError> {
        let write_timeout = Duration::from_millis(self.config.write_timeout_ms);
        let mut ticker = tokio::time::interval(self.config.send_interval());
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    // A stopping gateway tells the inverter to stop first.
                    if !*silent {
                        let last = self.input.borrow().as_ref().map(|i| stopped(report(&i.state, &self.config.name)));
                        if let Some(last) = last {
                            for frame in &encode_report(&last) {
                                if link.send(frame, write_timeout).await.is_err() {
                                    break;
                                }
                                self.metrics.counts.inverter_frames_sent.inc();
                            }
                        }
                    }
                    return Ok(());
                }
                _ = ticker.tick() => {}
            }
            let next = {
                let input = self.input.borrow();
                step(
                    input.as_ref(),
                    Instant::now(),
                    self.config.stop_after(),
                    *silent,
                    &self.config.name,
                )
            };
            let (report, last) = match next {
                Step::Silent => continue,
                Step::Send(report) => (report, false),
                Step::Last(report) => (report, true),
            };
            for frame in &encode_report(&report) {
                if let Err(error) = link.send(frame, write_timeout).await {
                    self.metrics.counts.inverter_send_failures.inc();
                    return Err(error);
                }
                self.metrics.counts.inverter_frames_sent.inc();
            }
            if last {
                self.metrics.counts.inverter_silences.inc();
                tracing::warn!(
                    bank = %self.bank,
                    stop_after_s = self.config.stop_after_s,
                    "no fresh bank state: zero currents sent, the inverter link falls silent"
                );
            } else if *silent {
                tracing::info!(bank = %self.bank, "inverter link sending the bank's limits");
            }
            *silent = last;
        }
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
