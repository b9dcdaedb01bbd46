//! The mqtt worker: the packs in Home Assistant. It follows every pack's
//! samples on the broker (a core subscription; only the latest per pack
//! is kept, so a slow or absent MQTT broker never holds back polling or
//! storing), announces each pack as a Home Assistant device with retained
//! discovery configs, publishes each pack's state at most once a second,
//! and keeps an availability topic with a last will. With
//! `allow_setting_changes`, a pack's writable settings are `number`
//! entities whose values go through the control worker like every
//! command: checked, audited, read back.

pub mod discovery;
pub mod energy;
mod link;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use packgate_protocol::{
    decode, names, Command, CommandId, CommandOrigin, CommandOutcome, Event, EventKind, PackId,
    Sample, SettingName,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::DriverConfig;
pub use crate::config::MqttConfig;
use crate::telemetry::now_ms;
use crate::workers::control::validate::{pack_table, PackTable};
use discovery::{gateway_discovery, pack_discovery, state_json, PackShape, Topics};
use energy::Energy;
use link::{Link, LinkEvent};

use super::{GatewayView, Worker, WorkerContext, WorkerError, WorkerKind, WorkerMetrics};

/// How often states go out (each pack at most once per tick).
const STATE_PERIOD: Duration = Duration::from_secs(1);
/// How long a command from Home Assistant may take through the control
/// path, and how long it stays valid.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands from Home Assistant in flight at once; more are refused.
const MAX_COMMANDS_IN_FLIGHT: usize = 4;

crate::worker_metrics! {
    /// What the mqtt worker has done.
    pub struct MqttMetrics {
        counters {
            /// Pack states published.
            states_published,
            /// Discovery configs published.
            configs_published,
            /// Publishes dropped because the MQTT queue was full (the state
            /// goes out again at the next tick).
            publishes_dropped,
            /// Samples taken in.
            samples_seen,
            /// Samples that did not decode.
            messages_malformed,
            /// Connections made to the MQTT broker.
            connections,
            /// Commands from Home Assistant sent to the control worker.
            commands_sent,
            /// Of those, applied.
            commands_applied,
            /// Refused: not a number, unknown setting, too many in flight,
            /// or refused by the control worker.
            commands_refused,
        }
        gauges {
            /// 1 while connected to the MQTT broker.
            connected,
        }
        latencies {}
    }
}

/// Why the mqtt worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The samples could not be subscribed to.
    #[error("subscribing to the samples: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The TLS settings could not be loaded.
    #[error("mqtt TLS: {0}")]
    Tls(String),
    /// The writable settings could not be read from the packs' profiles.
    #[error("the packs' writable settings: {0}")]
    Settings(String),
}

/// The mqtt worker.
#[derive(Debug)]
pub struct MqttWorker {
    config: MqttConfig,
    models: HashMap<PackId, String>,
    settings: PackTable,
    expire_after_s: u64,
    metrics: Arc<MqttMetrics>,
}

/// What Home Assistant shows as a pack's model: its driver, and the
/// profile where there is one.
fn model(driver: &DriverConfig) -> String {
    match driver {
        DriverConfig::Modbus(m) => format!("Modbus, profile {}", m.profile),
        DriverConfig::Sim(_) => "packgate simulator".into(),
        DriverConfig::Can(_) => "CAN (Pylontech protocol)".into(),
        DriverConfig::Sunspec(_) => "SunSpec battery".into(),
        DriverConfig::PylonAscii(_) => "Pylontech-style RS-485".into(),
        DriverConfig::Jbd(_) => "JBD BMS".into(),
        DriverConfig::Daly(_) => "Daly BMS".into(),
        DriverConfig::Jk(_) => "JK BMS".into(),
    }
}

impl MqttWorker {
    /// The worker of its `[mqtt]` section, publishing the packs of `view`
    /// (their models and writable settings; the poll period for
    /// `expire_after`).
    pub fn new(config: MqttConfig, view: &GatewayView) -> Result<Self, MqttError> {
        let settings = pack_table(&view.packs).map_err(|e| MqttError::Settings(e.to_string()))?;
        let poll_s = view.poll_interval_ms.div_ceil(1000);
        Ok(Self {
            config,
            models: view
                .packs
                .iter()
                .map(|p| (p.id.clone(), model(&p.driver)))
                .collect(),
            settings,
            expire_after_s: (poll_s * 3).max(3),
            metrics: Arc::default(),
        })
    }
}

impl Worker for MqttWorker {
    fn kind(&self) -> WorkerKind {
        WorkerKind::Mqtt
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
            run(*self, ctx.client, shutdown)
                .await
                .map_err(|e| WorkerError::new(WorkerKind::Mqtt, e))
        })
    }
}

/// What the worker knows of the packs.
#[derive(Debug, Default)]
struct Packs {
    latest: BTreeMap<PackId, Sample>,
    /// Packs whose state changed since it last went out.
    dirty: BTreeSet<PackId>,
    /// The shape each pack was announced with; a pack whose shape changes
    /// (or after a reconnect, or Home Assistant restarting) is announced
    /// again.
    announced: HashMap<PackId, PackShape>,
    /// Energy in and out of each pack since the worker started.
    energy: HashMap<PackId, Energy>,
    /// Serial numbers, as the packs' online events tell them.
    serials: HashMap<PackId, String>,
}

impl Packs {
    /// Takes a sample in: the latest kept, its energy counted.
    fn take(&mut self, sample: Sample) {
        if let Some(previous) = self.latest.get(&sample.pack_id) {
            self.energy
                .entry(sample.pack_id.clone())
                .or_default()
                .add(previous, &sample);
        }
        self.dirty.insert(sample.pack_id.clone());
        self.latest.insert(sample.pack_id.clone(), sample);
    }
}

async fn run(
    worker: MqttWorker,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), MqttError> {
    let config = &worker.config;
    let metrics = &worker.metrics;
    let topics = Topics::new(
        &config.discovery_prefix,
        &config.base_topic,
        &config.gateway_name,
    );
    let mut samples = nats.subscribe(names::ALL_SAMPLES_SUBJECT).await?;
    let mut events = nats.subscribe(names::ALL_EVENTS_SUBJECT).await?;
    let (link, mut link_events) = Link::start(config, &topics, Arc::clone(metrics))?;
    let mut packs = Packs::default();
    let mut connected = false;
    let mut commands = JoinSet::new();
    let mut tick = tokio::time::interval(STATE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(message) = samples.next() => match decode::<Sample>(&message.payload) {
                Ok(sample) => {
                    metrics.samples_seen.inc();
                    packs.take(sample);
                }
                Err(_) => metrics.messages_malformed.inc(),
            },
            Some(message) = events.next() => match decode::<Event>(&message.payload) {
                Ok(Event { pack_id, kind: EventKind::PackOnlineIdentified { serial_number }, .. }) => {
                    // The pack's device is announced again with it.
                    packs.serials.insert(pack_id, serial_number);
                }
                Ok(_) => {}
                Err(_) => metrics.messages_malformed.inc(),
            },
            Some(event) = link_events.recv() => match event {
                LinkEvent::Connected => {
                    connected = true;
                    link.publish_retained(&topics.availability(), "online".into());
                    link.subscribe(&topics.ha_status());
                    if config.allow_setting_changes {
                        link.subscribe(&topics.all_commands());
                    }
                    let gateway = gateway_discovery(&topics, env!("CARGO_PKG_VERSION"));
                    link.publish_retained(&gateway.topic, gateway.payload);
                    packs.announced.clear();
                    packs.dirty.extend(packs.latest.keys().cloned());
                }
                LinkEvent::Disconnected => connected = false,
                LinkEvent::Message { topic, payload } => {
                    if topic == topics.ha_status() && payload == b"online" {
                        tracing::info!("Home Assistant started: announcing the packs again");
                        packs.announced.clear();
                    } else if let Some((pack, setting)) = topics.parse_command(&topic) {
                        command_from_ha(&worker, &nats, &mut commands, pack, setting, &payload);
                    }
                }
            },
            Some(done) = commands.join_next(), if !commands.is_empty() => {
                if let Ok(applied) = done {
                    let counter = if applied { &metrics.commands_applied } else { &metrics.commands_refused };
                    counter.inc();
                }
            }
            _ = tick.tick() => {
                if connected {
                    publish_round(&worker, &topics, &link, &mut packs);
                }
            }
        }
    }
    link.stop(&topics).await;
    commands.abort_all();
    Ok(())
}

/// Announces the packs not announced yet (or whose shape changed) and
/// publishes every changed state.
fn publish_round(worker: &MqttWorker, topics: &Topics, link: &Link, packs: &mut Packs) {
    let settings = worker
        .config
        .allow_setting_changes
        .then_some(&worker.settings);
    for (pack, sample) in &packs.latest {
        let model = worker.models.get(pack).map_or("", String::as_str);
        let serial = packs.serials.get(pack).map(String::as_str);
        let shape = PackShape::of(sample, model, serial);
        if packs.announced.get(pack) == Some(&shape) {
            continue;
        }
        let bounds = settings.and_then(|s| s.get(pack)).map(Vec::as_slice);
        let configs = pack_discovery(topics, pack, &shape, bounds, worker.expire_after_s);
        if configs
            .iter()
            .all(|d| link.publish_retained(&d.topic, d.payload.clone()))
        {
            worker.metrics.configs_published.add(configs.len() as u64);
            packs.announced.insert(pack.clone(), shape);
        }
    }
    let dirty = std::mem::take(&mut packs.dirty);
    for pack in dirty {
        let Some(sample) = packs.latest.get(&pack) else {
            continue;
        };
        let energy = packs.energy.get(&pack).copied().unwrap_or_default();
        if link.publish(&topics.state(&pack), state_json(sample, &energy)) {
            worker.metrics.states_published.inc();
        } else {
            packs.dirty.insert(pack);
        }
    }
}

/// Turns a value Home Assistant sent for a pack's setting into a command
/// to the control worker, which checks and audits it like any other.
fn command_from_ha(
    worker: &MqttWorker,
    nats: &async_nats::Client,
    commands: &mut JoinSet<bool>,
    pack: PackId,
    setting: String,
    payload: &[u8],
) {
    let metrics = &worker.metrics;
    let value = std::str::from_utf8(payload)
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite());
    let Some(value) = value else {
        metrics.commands_refused.inc();
        crate::warn_limited!("Home Assistant sent a value that is not a number; ignored", %pack, %setting);
        return;
    };
    if commands.len() >= MAX_COMMANDS_IN_FLIGHT {
        metrics.commands_refused.inc();
        crate::warn_limited!("too many Home Assistant commands in flight; refused", %pack, %setting);
        return;
    }
    let now = now_ms();
    let timeout_ms = i64::try_from(COMMAND_TIMEOUT.as_millis()).unwrap_or(i64::MAX);
    let command = Command {
        id: CommandId(format!("ha-{pack}-{setting}-{now}")),
        pack_id: pack,
        setting: SettingName(setting),
        value,
        origin: CommandOrigin::Local,
        issued_at_ms: now,
        expires_at_ms: now.saturating_add(timeout_ms),
    };
    metrics.commands_sent.inc();
    let nats = nats.clone();
    commands.spawn(async move {
        let sent = crate::workers::control::send_command(&nats, &command, COMMAND_TIMEOUT).await;
        let (pack, setting) = (&command.pack_id, &command.setting.0);
        match sent.map(|reply| reply.outcome) {
            Ok(CommandOutcome::Applied { read_back }) => {
                tracing::info!(%pack, %setting, value = command.value, read_back, "setting from Home Assistant applied");
                true
            }
            Ok(outcome) => {
                crate::warn_limited!("setting from Home Assistant not applied", %pack, %setting, value = command.value, ?outcome);
                false
            }
            Err(error) => {
                crate::warn_limited!("setting from Home Assistant not sent", %pack, %setting, %error);
                false
            }
        }
    });
}
