//! Shared parts of the control worker's tests: a bus task standing in
//! for the collector's, which writes a real simulated pack through its
//! driver, and a broker with a control worker for two packs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use packgate::config::Config;
use packgate::workers::control::{
    run_control, send_command, AuditStore, ControlError, ControlMetrics, SiteLimit,
};
use packgate_drivers::{PackDriver, SimDriver, ValidatedSetting};
use packgate_protocol::{
    decode, encode, names, Command, CommandId, CommandOrigin, CommandOutcome, CommandReply, PackId,
    SettingName,
};
use packgate_sim::{SimPack, SimPackConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{sim_config, TestBroker};

pub const CHARGE: &str = "charge_current_limit_a";
pub const DISCHARGE: &str = "discharge_current_limit_a";
pub const DEADLINE_MS: u64 = 1_500;

pub fn now_ms() -> i64 {
    packgate::telemetry::now_ms()
}

/// How the stand-in bus task answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BusMode {
    /// Writes the pack through its driver after `delay`, replies with the
    /// read-back value.
    Apply { delay: Duration },
    /// Takes the request and never answers.
    Silent,
}

pub const APPLY: BusMode = BusMode::Apply {
    delay: Duration::ZERO,
};

/// The task that owns one pack's bus, standing in for the collector's.
pub struct TestBus {
    pub pack: SimPack,
    /// The write requests received, as dispatched.
    pub seen: Arc<Mutex<Vec<Command>>>,
    pub _task: JoinHandle<()>,
}

impl TestBus {
    pub async fn start(client: &async_nats::Client, pack_id: &PackId, mode: BusMode) -> Self {
        let pack = SimPack::new(&SimPackConfig::default());
        let mut driver = SimDriver::new(pack_id.clone(), pack.clone());
        let mut sub = client
            .subscribe(names::bus_write_subject(pack_id))
            .await
            .unwrap();
        client.flush().await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, client) = (Arc::clone(&seen), client.clone());
        let task = tokio::spawn(async move {
            while let Some(message) = sub.next().await {
                let command = decode::<Command>(&message.payload).unwrap();
                log.lock().unwrap().push(command.clone());
                let BusMode::Apply { delay } = mode else {
                    continue;
                };
                tokio::time::sleep(delay).await;
                let setting = ValidatedSetting {
                    name: command.setting.clone(),
                    value: command.value,
                };
                let outcome = match driver.apply_setting(&mut (), &setting).await {
                    Ok(Ok(read_back)) => CommandOutcome::Applied { read_back },
                    Ok(Err(exception)) => CommandOutcome::Failed {
                        error: exception.to_string(),
                    },
                    Err(error) => CommandOutcome::Failed {
                        error: error.to_string(),
                    },
                };
                let reply = CommandReply {
                    command_id: command.id,
                    outcome,
                };
                client
                    .publish(message.reply.unwrap(), encode(&reply).into())
                    .await
                    .unwrap();
            }
        });
        Self {
            pack,
            seen,
            _task: task,
        }
    }

    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn charge_limit(&self) -> f64 {
        self.pack.setting(CHARGE).unwrap()
    }
}

/// A broker, a client and a control worker for packs `sim-01` and `sim-02`,
/// with the charge current capped at 80 A by the site.
pub struct Rig {
    pub broker: TestBroker,
    pub client: async_nats::Client,
    pub config: Config,
    pub metrics: Arc<ControlMetrics>,
    pub shutdown: CancellationToken,
    pub worker: JoinHandle<Result<(), ControlError>>,
}

impl Rig {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A rig whose configuration `change` adjusts first.
    pub async fn start_with(change: impl FnOnce(&mut Config)) -> Self {
        let broker = TestBroker::start().await;
        let mut config = sim_config(&broker.url(), broker.dir.path(), 2, 1000);
        config.control.default_deadline_ms = DEADLINE_MS;
        config.control.site_limits.insert(
            CHARGE.into(),
            SiteLimit {
                min: 0.0,
                max: 80.0,
            },
        );
        change(&mut config);
        let client = async_nats::connect(broker.url()).await.unwrap();
        let metrics = Arc::new(ControlMetrics::default());
        let shutdown = CancellationToken::new();
        let worker = {
            let (config, client) = (config.clone(), client.clone());
            let (metrics, shutdown) = (Arc::clone(&metrics), shutdown.clone());
            tokio::spawn(async move { run_control(&config, client, metrics, shutdown).await })
        };
        let rig = Self {
            broker,
            client,
            config,
            metrics,
            shutdown,
            worker,
        };
        rig.wait_until_serving().await;
        rig
    }

    /// Sends probes (each with a new id, to an unknown pack) until one is
    /// answered: exactly one probe reaches the worker, counted as received
    /// and rejected.
    pub async fn wait_until_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for attempt in 0.. {
            assert!(Instant::now() < deadline, "the control worker never served");
            let probe = command(&format!("probe-{attempt}"), "nobody", CHARGE, 1.0);
            if send_command(&self.client, &probe, Duration::from_secs(2))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn send(&self, command: &Command) -> CommandReply {
        send_command(&self.client, command, Duration::from_secs(10))
            .await
            .unwrap()
    }

    pub fn audit(&self, id: &str) -> packgate::workers::control::AuditRecord {
        let path = self.config.data_dir.join(&self.config.control.database);
        AuditStore::open_read_only(&path)
            .unwrap()
            .lookup(&CommandId(id.into()))
            .unwrap()
            .unwrap_or_else(|| panic!("no audit row for {id}"))
    }

    /// Every audit row, newest first.
    pub fn audit_rows(&self) -> Vec<packgate::workers::control::AuditRecord> {
        let path = self.config.data_dir.join(&self.config.control.database);
        AuditStore::open_read_only(&path)
            .unwrap()
            .recent_summaries(100_000)
            .unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.worker)
            .await
            .expect("the worker stops promptly");
        result.unwrap().unwrap();
        drop(self.broker);
    }
}

pub fn pack(id: &str) -> PackId {
    PackId::new(id).unwrap()
}

pub fn command(id: &str, pack_id: &str, setting: &str, value: f64) -> Command {
    let now = now_ms();
    Command {
        id: CommandId(id.into()),
        pack_id: pack(pack_id),
        setting: SettingName(setting.into()),
        value,
        origin: CommandOrigin::Cloud,
        issued_at_ms: now,
        expires_at_ms: now + 60_000,
    }
}
