//! The bank worker: packs in parallel as one battery. It follows every
//! pack's samples (a core subscription: it keeps only the latest of each
//! pack of a bank, so it never holds the pipeline back and never grows),
//! and once a second, for each bank, computes its state and charge limits
//! (CVL, CCL, DCL; see [`crate::bank`]) and publishes a [`BankState`] on
//! `packgate.banks.<bank>` with an ack and a de-duplication id.
//!
//! It also applies the control worker's validated commands lowering a
//! bank's site limits (on `packgate.bank.<bank>.limits`, see
//! [`commands`]): checked again, kept in the data directory's
//! [`overrides::FILE_NAME`] before the reply, applied from the next state
//! (computed at once), and carried by every state (`overrides`).
//!
//! A broker that is down never holds the loop: a state that cannot be sent
//! now is skipped and counted, and the limits go on being computed every
//! second, so their ramps and charge stage stay true to time. A pack whose
//! samples stop arriving stops counting after `stale_after_s`; with no
//! pack counted, both currents are zero.

mod aggregate;
mod commands;
pub mod inverter;
mod latest;
pub mod link;
mod metrics;
pub mod overrides;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use packgate_protocol::{
    decode, encode, names, BankId, BankState, BootId, DataQuality, PackId, PackReading, Sample,
    WireMessage,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use aggregate::{bank_state, totals, PackInput, Stamp, Totals};
pub use latest::{Held, Latest, Taken};
pub use metrics::{BankGauges, BankMetrics};

use super::collect::clock::WallClock;
use super::{GatewayView, Worker, WorkerContext, WorkerError, WorkerKind, WorkerMetrics};
use crate::bank::{LimitRules, LimitsController, PackView};
use crate::config::{BankConfig, BankConfigError, ControlConfig, PackRating};
use crate::workers::control::validate::Policy;

/// How often each bank's state is computed and published.
pub const STATE_PERIOD: Duration = Duration::from_secs(1);

/// Why the bank worker stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    /// A bank's packs could not be rated (the configuration was not
    /// validated).
    #[error("{}: {}", .0.key, .0.reason)]
    Config(BankConfigError),
    /// The subscription to the samples could not be made.
    #[error("subscribing to the samples: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The subscription ended: the broker connection was closed.
    #[error("the subscription to the samples ended")]
    SubscriptionEnded,
    /// A bank's inverter link could not be built.
    #[error(transparent)]
    Link(#[from] link::LinkError),
    /// The site limits lowered by commands could not be read: the worker
    /// does not start rather than forget them.
    #[error("the banks' lowered site limits: {0}")]
    Overrides(#[from] overrides::OverrideError),
}

/// One bank as the worker runs it.
#[derive(Debug)]
struct Bank {
    id: BankId,
    subject: String,
    packs: Vec<(PackId, PackRating)>,
    /// The rules as configured.
    configured: LimitRules,
    /// The limits commands have lowered.
    lowered: overrides::Override,
    controller: LimitsController,
    seq: u64,
    /// Whether the last state stopped the bank (for a log line per change).
    stopped: Option<bool>,
    /// When a pack last counted.
    live_at: Option<Instant>,
    /// The bank's inverter link, if it has one.
    link: Option<link::LinkSender>,
}

/// The bank worker, built from the `[[banks]]` sections.
#[derive(Debug)]
pub struct BankWorker {
    banks: Vec<Bank>,
    /// The inverter links, started with the worker.
    links: Vec<link::InverterLink>,
    publish_timeout: Duration,
    metrics: Arc<BankMetrics>,
    /// What a command to a bank is checked against again.
    policy: Policy,
    /// The file of the lowered limits, and every bank's in it.
    overrides_path: std::path::PathBuf,
    overrides: overrides::Overrides,
}

impl BankWorker {
    /// A worker for every bank of `banks`, made of the packs of `view`,
    /// checking commands to their limits against `control`'s policy. The
    /// limits lowered by commands are read from the data directory when
    /// it starts.
    pub fn new(
        banks: &[BankConfig],
        control: &ControlConfig,
        view: &GatewayView,
    ) -> Result<Self, BankError> {
        let metrics = Arc::new(BankMetrics::default());
        let mut links = Vec::new();
        let built = banks
            .iter()
            .enumerate()
            .map(|(index, bank)| {
                let link = match &bank.inverter {
                    Some(inverter) => {
                        let (task, sender) = link::InverterLink::new(
                            bank.name.clone(),
                            inverter.clone(),
                            link::connector(&bank.name, inverter)?,
                            Arc::clone(&metrics),
                        );
                        links.push(task);
                        Some(sender)
                    }
                    None => None,
                };
                Ok(Bank {
                    id: bank.name.clone(),
                    subject: names::bank_subject(&bank.name),
                    packs: bank
                        .ratings(index, &view.packs)
                        .map_err(BankError::Config)?,
                    configured: bank.limits,
                    lowered: overrides::Override::default(),
                    controller: LimitsController::new(bank.limits),
                    seq: 0,
                    stopped: None,
                    live_at: None,
                    link,
                })
            })
            .collect::<Result<Vec<_>, BankError>>()?;
        Ok(Self {
            banks: built,
            links,
            publish_timeout: Duration::from_millis(view.request_timeout_ms.max(100)),
            metrics,
            policy: Policy::of(control).with_banks(banks),
            overrides_path: std::path::PathBuf::new(),
            overrides: overrides::Overrides::new(),
        })
    }

    /// Reads the limits lowered by commands from the file in `data_dir`
    /// and applies them: they hold across restarts.
    fn apply_overrides(&mut self, data_dir: &std::path::Path) -> Result<(), BankError> {
        let path = overrides::path_in(data_dir);
        let overrides = overrides::load(&path)?;
        for bank in &mut self.banks {
            let lowered = overrides.get(&bank.id).copied().unwrap_or_default();
            if !lowered.is_empty() {
                tracing::info!(bank = %bank.id, ?lowered, file = %path.display(), "site limits lowered by commands apply");
            }
            bank.lowered = lowered;
            bank.controller = LimitsController::new(lowered.apply(&bank.configured));
        }
        self.overrides_path = path;
        self.overrides = overrides;
        Ok(())
    }

    /// Its metrics.
    pub fn bank_metrics(&self) -> Arc<BankMetrics> {
        Arc::clone(&self.metrics)
    }
}

impl Worker for BankWorker {
    fn kind(&self) -> WorkerKind {
        WorkerKind::Bank
    }

    fn metrics(&self) -> WorkerMetrics {
        WorkerMetrics::new(Arc::clone(&self.metrics))
    }

    fn run(
        self: Box<Self>,
        ctx: WorkerContext,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), WorkerError>> {
        Box::pin(async move {
            self.run_until(ctx, shutdown)
                .await
                .map_err(|e| WorkerError::new(WorkerKind::Bank, e))
        })
    }
}

type Publish = BoxFuture<'static, Result<(), String>>;

/// What the loop holds besides the banks.
struct Loop {
    latest: Latest,
    inflight: FuturesUnordered<Publish>,
    inflight_max: usize,
    boot_id: BootId,
    clock: Arc<dyn WallClock>,
    js: jetstream::Context,
    client: async_nats::Client,
    publish_timeout: Duration,
    metrics: Arc<BankMetrics>,
}

impl BankWorker {
    /// Follows the samples and publishes every bank's state each second
    /// until `shutdown`; the publishes in flight then get their time to be
    /// acked.
    async fn run_until(
        mut self,
        ctx: WorkerContext,
        shutdown: CancellationToken,
    ) -> Result<(), BankError> {
        self.apply_overrides(&ctx.data_dir)?;
        let mut samples = ctx.client.subscribe(names::ALL_SAMPLES_SUBJECT).await?;
        let mut commands = ctx.client.subscribe(names::BANK_LIMITS_SUBJECTS).await?;
        let packs = self
            .banks
            .iter()
            .flat_map(|b| b.packs.iter().map(|(id, _)| id.clone()));
        let mut state = Loop {
            latest: Latest::new(packs),
            inflight: FuturesUnordered::new(),
            inflight_max: (4 * self.banks.len()).max(8),
            boot_id: crate::workers::collect::new_boot_id(),
            clock: ctx.clock,
            js: ctx.js,
            client: ctx.client,
            publish_timeout: self.publish_timeout,
            metrics: Arc::clone(&self.metrics),
        };
        tracing::info!(banks = self.banks.len(), boot_id = %state.boot_id, "bank worker started");
        // Each inverter link is its own task, the only writer to its link;
        // stopped (after a last zero burst) when the worker stops.
        let links_shutdown = CancellationToken::new();
        let mut links = tokio::task::JoinSet::new();
        for link in self.links.drain(..) {
            links.spawn(link.run(links_shutdown.clone()));
        }
        // The first states after a second: the packs' samples have come in.
        let mut ticker = tokio::time::interval_at(Instant::now() + STATE_PERIOD, STATE_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break false,
                Some(result) = state.inflight.next(), if !state.inflight.is_empty() => {
                    state.settled(result);
                }
                message = samples.next() => match message {
                    Some(message) => state.offer(&message.payload),
                    None => break true,
                },
                message = commands.next() => match message {
                    Some(message) => self.command(&mut state, message).await,
                    None => break true,
                },
                _ = ticker.tick() => {
                    let now = Instant::now();
                    for bank in &mut self.banks {
                        state.tick(bank, now);
                    }
                }
            }
        };
        let flush = async {
            while let Some(result) = state.inflight.next().await {
                state.settled(result);
            }
        };
        let _ = tokio::time::timeout(self.publish_timeout, flush).await;
        links_shutdown.cancel();
        let _ = tokio::time::timeout(link::SHUTDOWN_GRACE, async {
            while links.join_next().await.is_some() {}
        })
        .await;
        if ended {
            return Err(BankError::SubscriptionEnded);
        }
        Ok(())
    }
}

impl Loop {
    /// Takes one message of the samples subject.
    fn offer(&mut self, payload: &[u8]) {
        match decode::<Sample>(payload) {
            Ok(sample) => match self.latest.take(sample, Instant::now()) {
                Taken::Kept => self.metrics.counts.samples_taken.inc(),
                Taken::NotInBank | Taken::Older => self.metrics.counts.samples_ignored.inc(),
            },
            Err(_) => self.metrics.counts.messages_malformed.inc(),
        }
    }

    /// Computes `bank`'s state at `now` and sends it.
    fn tick(&mut self, bank: &mut Bank, now: Instant) {
        let none = PackReading::default();
        let inputs: Vec<PackInput<'_>> = bank
            .packs
            .iter()
            .map(|(id, rating)| input(id, rating, self.latest.get(id), &none, now))
            .collect();
        let views: Vec<PackView<'_>> = inputs.iter().map(|i| i.view).collect();
        let limits = bank.controller.update(&views, now.into_std());
        bank.seq += 1;
        let stamp = Stamp {
            bank_id: bank.id.clone(),
            boot_id: self.boot_id,
            seq: bank.seq,
            timestamp_ms: self.clock.now_ms().max(0),
        };
        let rules: &LimitRules = bank.controller.rules();
        let mut state = bank_state(stamp, rules, &inputs, &limits);
        state.overrides = bank.lowered.in_state(&bank.configured);
        self.metrics.set(&bank.id, BankGauges::of(&state));
        log_stop_change(bank, &state);
        if state.packs_online > 0 {
            bank.live_at = Some(now);
        }
        if let Some(sender) = &bank.link {
            sender.send_replace(Some(link::LinkInput {
                state: state.clone(),
                at: now,
                live_at: bank.live_at,
            }));
        }
        self.send(&bank.subject, state);
    }

    /// Publishes `state` with an ack under the timeout, unless the broker
    /// is unreachable or too many are in flight: then it is skipped.
    fn send(&mut self, subject: &str, state: BankState) {
        if let Err(error) = state.check() {
            self.metrics.counts.states_invalid.inc();
            tracing::error!(bank = %state.bank_id, %error, "a bank state breaks the wire rules; not published");
            return;
        }
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        if !connected || self.inflight.len() >= self.inflight_max {
            self.metrics.counts.states_skipped.inc();
            return;
        }
        let message = PublishMessage::build()
            .payload(encode(&state).into())
            .message_id(state.msg_id());
        let (js, subject, timeout) = (self.js.clone(), subject.to_owned(), self.publish_timeout);
        self.inflight.push(Box::pin(async move {
            let publish = async {
                let ack = js
                    .send_publish(subject, message)
                    .await
                    .map_err(|e| e.to_string())?;
                ack.await.map(drop).map_err(|e| e.to_string())
            };
            match tokio::time::timeout(timeout, publish).await {
                Ok(result) => result,
                Err(_) => Err(format!("no ack within {timeout:?}")),
            }
        }));
    }

    /// Counts a publish's outcome.
    fn settled(&self, result: Result<(), String>) {
        match result {
            Ok(()) => self.metrics.counts.states_published.inc(),
            Err(error) => {
                self.metrics.counts.publish_failures.inc();
                tracing::debug!(%error, "bank state not published");
            }
        }
    }
}

/// What the limits see of one pack: its latest sample and age, or a stale
/// placeholder that never counts when none has arrived.
fn input<'a>(
    id: &'a PackId,
    rating: &PackRating,
    held: Option<&'a Held>,
    none: &'a PackReading,
    now: Instant,
) -> PackInput<'a> {
    let (reading, quality, age, seq) = match held {
        Some(held) => (
            &held.sample.reading,
            held.sample.quality,
            latest::age(held, now),
            held.sample.seq,
        ),
        None => (none, DataQuality::Stale, Duration::MAX, 0),
    };
    PackInput {
        view: PackView {
            pack_id: id,
            reading,
            quality,
            age,
            max_charge_a: rating.max_charge_a,
            max_discharge_a: rating.max_discharge_a,
        },
        capacity_ah: rating.capacity_ah,
        sample_seq: seq,
    }
}

/// Logs a bank stopping (WARN) or allowed currents again (INFO), once per
/// change.
fn log_stop_change(bank: &mut Bank, state: &BankState) {
    let stopped = state.stop.is_some();
    if bank.stopped == Some(stopped) {
        return;
    }
    let first = bank.stopped.is_none();
    bank.stopped = Some(stopped);
    match state.stop {
        Some(stop) if !first => tracing::warn!(
            bank = %bank.id,
            reason = %stop.describe(),
            "bank stopped: charge and discharge currents are zero"
        ),
        Some(_) => {}
        None => tracing::info!(
            bank = %bank.id,
            online = state.packs_online,
            total = state.packs_total,
            "bank allows current"
        ),
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod worker_tests;
