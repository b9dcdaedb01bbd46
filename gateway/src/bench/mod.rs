//! `packgate bench`: simulated packs through the whole pipeline (collect,
//! JetStream file store, data worker, SQLite), measured end to end; with
//! `--soak`, every local worker for hours, and how the memory grows; with
//! `--transport modbus-tcp`, simulated Modbus TCP devices in a separate
//! process polled over real sockets, as on a site.

pub mod devices;
pub mod soak;
pub mod window;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::broker::EmbeddedBroker;
use crate::config::{Config, Durability};
use crate::runtime::{run_workers_reporting, Broker, RunError, RunReport, WorkerSet};
use crate::store::SampleStore;
use crate::telemetry::process;
use crate::workers::collect::PackSet;
use crate::workers::data::DataMetrics;
use crate::workers::{WorkerKind, WorkerMetrics};

/// Where the benchmark's packs are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BenchTransport {
    /// The simulator's model polled in this process.
    #[default]
    Sim,
    /// Simulated Modbus TCP devices, one endpoint each, served by a
    /// separate `packgate sim` process.
    ModbusTcp,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Simulated packs (with `ModbusTcp`, devices of one pack each).
    pub packs: usize,
    /// Where the packs are.
    pub transport: BenchTransport,
    /// The `packgate` executable that serves the Modbus TCP devices.
    pub sim_executable: PathBuf,
    /// How long to poll, warm-up included.
    pub duration: Duration,
    /// The start of the run left out of the steady-state figures.
    pub warm_up: Duration,
    /// Polls per second per pack; 0 as fast as possible.
    pub rate_hz: f64,
    /// The nats-server executable.
    pub nats_server_path: PathBuf,
    /// How hard the stores sync to the disk.
    pub durability: Durability,
    /// Where the stores go (to measure the real disk, an SD card say);
    /// `None`: a temporary directory.
    pub data_dir: Option<PathBuf>,
    /// A soak: every worker as with `all_workers`, and the memory traced
    /// through the run.
    pub soak: bool,
    /// Every worker that runs without an outside server (collect, data,
    /// control, monitor, http) as on the box, instead of collect and data
    /// alone: what the views cost the pipeline.
    pub all_workers: bool,
    /// `host:port` of an MQTT broker: the mqtt worker runs too, publishing
    /// every pack there (with `all_workers` or `soak`).
    pub mqtt_broker: Option<String>,
}

/// The figures, with the key names of `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Where the packs were.
    pub transport: BenchTransport,
    /// Packs polled.
    pub packs: usize,
    /// Polls per second per pack asked for; 0 as fast as possible.
    pub rate_hz: f64,
    /// Holding registers read per poll (Modbus TCP only).
    pub registers_per_poll: Option<u16>,
    /// The workers that ran.
    pub workers: Vec<&'static str>,
    /// CPU, memory and storage writes after the warm-up.
    pub steady: window::WindowFigures,
    /// Samples acknowledged by JetStream.
    pub published: u64,
    /// Samples in SQLite.
    pub stored: u64,
    /// Published but never stored.
    pub lost: u64,
    /// Stored more than once.
    pub duplicated: u64,
    /// Stored samples per second of polling.
    pub samples_per_s: f64,
    /// Poll to SQLite commit, median, ms.
    pub latency_ms_p50: f64,
    /// Poll to SQLite commit, 99th percentile, ms.
    pub latency_ms_p99: f64,
    /// Poll to SQLite commit, largest, ms.
    pub latency_ms_max: f64,
    /// Gateway CPU seconds per 1,000 stored samples.
    pub cpu_s_per_1k: f64,
    /// Peak resident memory of the gateway, MB.
    pub gateway_rss_mb: f64,
    /// Peak resident memory of nats-server, MB.
    pub broker_rss_mb: f64,
    /// The durability setting measured.
    pub durability: &'static str,
    /// SQLite transactions committed.
    pub sqlite_commits: u64,
    /// Bytes the gateway wrote to storage per 1,000 stored samples, KiB
    /// (`None` where the kernel does not account it, e.g. on tmpfs).
    pub gateway_written_kib_per_1k: Option<f64>,
    /// Bytes nats-server wrote to storage per 1,000 stored samples, KiB.
    pub broker_written_kib_per_1k: Option<f64>,
    /// The memory figures of a soak; `None` otherwise.
    pub soak: Option<soak::SoakFigures>,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Temporary directory.
    #[error("cannot create a temporary directory: {0}")]
    TempDir(std::io::Error),
    /// The pipeline failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// `mqtt_broker` is not `host:port`.
    #[error("--mqtt {0:?}: expected host:port, such as 127.0.0.1:1883")]
    MqttBroker(String),
    /// More packs than one gateway polls.
    #[error(transparent)]
    Packs(#[from] crate::config::ConfigError),
    /// The database could not be read back.
    #[error("cannot read the results back: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The simulated devices' process could not be started.
    #[error("cannot start the simulated Modbus TCP devices: {0}")]
    Devices(std::io::Error),
    /// More devices than one simulator serves.
    #[error("{0} Modbus TCP devices; at most 65535")]
    TooManyDevices(usize),
}

/// The pipeline measured: collect and data only.
const PIPELINE: [WorkerKind; 2] = [WorkerKind::Collect, WorkerKind::Data];

/// What a soak (or `all_workers`) runs: every worker that needs no
/// outside server.
const SOAK: [WorkerKind; 5] = [
    WorkerKind::Collect,
    WorkerKind::Data,
    WorkerKind::Control,
    WorkerKind::Monitor,
    WorkerKind::Http,
];

fn per_1k_kib(bytes: u64, samples: u64) -> f64 {
    if samples == 0 {
        return 0.0;
    }
    bytes as f64 / 1024.0 / (samples as f64 / 1000.0)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs the benchmark in this process with an embedded nats-server in a
/// temporary directory.
pub async fn run_bench(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    let dir = match &options.data_dir {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .map_err(BenchError::TempDir)?;
    let mut config = bench_config(options, dir.path().to_owned());
    let devices = add_packs(options, &mut config).await?;
    set_poll_rate(options, &mut config);
    let workers = workers_to_run(options, &mut config)?;
    let packs = PackSet::from_config(&config).map_err(RunError::from)?;
    let broker = Broker::open(&config, "packgate-bench")
        .await
        .map_err(RunError::from)?;
    let broker_pid = broker.server.as_ref().and_then(EmbeddedBroker::pid);
    let shutdown = CancellationToken::new();
    let usage_before = UsageBefore::now();
    let duration = options.duration;
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let steady = spawn_steady_window(
        broker_pid,
        duration,
        options.warm_up,
        started,
        shutdown.clone(),
    );
    let trace = options.soak.then(|| {
        tokio::spawn(soak::trace_memory(
            soak::sample_every(duration),
            shutdown.clone(),
        ))
    });
    let run = run_workers_reporting(
        &config,
        WorkerSet::of(&workers),
        packs,
        &broker,
        shutdown,
        Some(started_tx),
    )
    .await;
    if let Some(devices) = devices {
        devices.stop().await;
    }
    let report = run?;
    let steady = steady.await.unwrap_or_default();
    let soak = match trace {
        Some(trace) => Some(soak::figures(&trace.await.unwrap_or_default(), duration)),
        None => None,
    };
    let usage = usage_before.until_now(broker_pid);
    broker.close(&config.data_dir).await;
    let counts = StoredCounts::read(&config)?;
    Ok(bench_report(
        options,
        &workers,
        &report,
        Measured {
            steady,
            soak,
            usage,
            counts,
        },
    ))
}

/// The configuration every benchmark starts from, in `data_dir`.
fn bench_config(options: &BenchOptions, data_dir: PathBuf) -> Config {
    let mut config = Config {
        data_dir,
        durability: options.durability,
        ..Config::default()
    };
    config.broker.nats_server_path = options.nats_server_path.clone();
    config
}

/// Adds the packs of `options.transport` to `config`: simulated in this
/// process, or Modbus TCP devices of a process started here (returned, to
/// be stopped after the run).
async fn add_packs(
    options: &BenchOptions,
    config: &mut Config,
) -> Result<Option<devices::Devices>, BenchError> {
    match options.transport {
        BenchTransport::Sim => {
            config.add_sim_packs(options.packs)?;
            Ok(None)
        }
        BenchTransport::ModbusTcp => {
            let count = u16::try_from(options.packs)
                .map_err(|_| BenchError::TooManyDevices(options.packs))?;
            let devices = devices::Devices::start(&options.sim_executable, count).await?;
            devices::configure(config, &devices.addresses);
            Ok(Some(devices))
        }
    }
}

/// The poll rate asked for, the drain a long backlog needs, and an HTTP
/// port of its own.
fn set_poll_rate(options: &BenchOptions, config: &mut Config) {
    config.collect.poll_interval_ms = if options.rate_hz > 0.0 {
        ((1000.0 / options.rate_hz).round() as u64).max(10)
    } else {
        0
    };
    config.data.shutdown_drain_ms = 120_000;
    // Any free port: a bench must not collide with a gateway on the box.
    config.http.listen = "127.0.0.1:0".into();
}

/// The workers `options` asks for; the mqtt worker's broker set in
/// `config` when it runs.
fn workers_to_run(
    options: &BenchOptions,
    config: &mut Config,
) -> Result<Vec<WorkerKind>, BenchError> {
    let mut workers = if options.soak || options.all_workers {
        SOAK.to_vec()
    } else {
        PIPELINE.to_vec()
    };
    if let Some(broker) = &options.mqtt_broker {
        let (host, port) = broker
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .ok_or_else(|| BenchError::MqttBroker(broker.clone()))?;
        config.mqtt.enabled = true;
        config.mqtt.host = host.to_owned();
        config.mqtt.port = port;
        config.mqtt.gateway_name = "bench".into();
        workers.push(WorkerKind::Mqtt);
    }
    Ok(workers)
}

/// Reads the steady-state window once the warm-up is over (and the
/// workers, whose metrics come on `started`, run), and stops the run at
/// the end of `duration`.
fn spawn_steady_window(
    broker_pid: Option<u32>,
    duration: Duration,
    warm_up: Duration,
    started: tokio::sync::oneshot::Receiver<Vec<(WorkerKind, WorkerMetrics)>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<window::WindowFigures> {
    let warm_up = warm_up.min(duration);
    tokio::spawn(async move {
        tokio::time::sleep(warm_up).await;
        let data: Option<std::sync::Arc<DataMetrics>> = started.await.ok().and_then(|all| {
            all.into_iter()
                .find(|(kind, _)| *kind == WorkerKind::Data)
                .and_then(|(_, metrics)| metrics.get())
        });
        let mark = data.as_ref().map(|d| d.poll_to_commit.mark());
        let first = window::Reading::now(broker_pid);
        tokio::time::sleep(duration - warm_up).await;
        let last = window::Reading::now(broker_pid);
        stop.cancel();
        let mut figures = window::between(&first, &last);
        if let (Some(data), Some(mark)) = (data, mark) {
            figures.set_latency(&data.poll_to_commit.summary_since(&mark));
        }
        figures
    })
}

/// The gateway's CPU time and storage writes when the run starts.
struct UsageBefore {
    cpu_s: f64,
    gateway_written_bytes: Option<u64>,
}

/// What the gateway and the broker used over the run.
struct Usage {
    cpu_s: f64,
    broker_rss_bytes: u64,
    gateway_written_bytes: Option<u64>,
    broker_written_bytes: Option<u64>,
}

impl UsageBefore {
    fn now() -> Self {
        Self {
            cpu_s: process::usage(None).cpu_s,
            gateway_written_bytes: process::storage_written_bytes(None),
        }
    }

    fn until_now(self, broker_pid: Option<u32>) -> Usage {
        Usage {
            cpu_s: process::usage(None).cpu_s - self.cpu_s,
            broker_rss_bytes: broker_pid.map_or(0, |pid| process::usage(Some(pid)).peak_rss_bytes),
            gateway_written_bytes: process::storage_written_bytes(None)
                .zip(self.gateway_written_bytes)
                .map(|(after, before)| after.saturating_sub(before)),
            broker_written_bytes: broker_pid
                .and_then(|pid| process::storage_written_bytes(Some(pid))),
        }
    }
}

/// The rows SQLite holds, and how many of them are distinct samples.
struct StoredCounts {
    stored: u64,
    distinct: u64,
}

impl StoredCounts {
    fn read(config: &Config) -> Result<Self, BenchError> {
        let store = SampleStore::open_read_only(&config.database_path())?;
        let stored = store.count()?;
        let mut distinct = 0u64;
        for pack in store.pack_ids()? {
            let mut keys = store.keys_in_insert_order(&pack)?;
            keys.sort_unstable();
            keys.dedup();
            distinct += keys.len() as u64;
        }
        Ok(Self { stored, distinct })
    }
}

/// Everything measured around the run, for the report.
struct Measured {
    steady: window::WindowFigures,
    soak: Option<soak::SoakFigures>,
    usage: Usage,
    counts: StoredCounts,
}

/// The figures of a finished run.
fn bench_report(
    options: &BenchOptions,
    workers: &[WorkerKind],
    report: &RunReport,
    measured: Measured,
) -> BenchReport {
    let Measured {
        steady,
        soak,
        usage,
        counts: StoredCounts { stored, distinct },
    } = measured;
    let published = report
        .collect
        .as_ref()
        .map_or(0, |m| m.samples_published.get());
    let latency = report
        .data
        .as_ref()
        .map(|m| m.poll_to_commit.summary())
        .unwrap_or_else(|| crate::telemetry::LatencyHistogram::new("poll_to_commit").summary());
    BenchReport {
        transport: options.transport,
        packs: options.packs,
        rate_hz: options.rate_hz,
        registers_per_poll: (options.transport == BenchTransport::ModbusTcp)
            .then_some(devices::REGISTERS_PER_POLL),
        workers: workers.iter().map(|w| w.name()).collect(),
        steady,
        published,
        stored,
        lost: published.saturating_sub(distinct),
        duplicated: stored - distinct,
        samples_per_s: stored as f64 / options.duration.as_secs_f64(),
        latency_ms_p50: latency.p50_ms,
        latency_ms_p99: latency.p99_ms,
        latency_ms_max: latency.max_ms,
        cpu_s_per_1k: if stored > 0 {
            usage.cpu_s / (stored as f64 / 1000.0)
        } else {
            0.0
        },
        gateway_rss_mb: mb(process::usage(None).peak_rss_bytes),
        broker_rss_mb: mb(usage.broker_rss_bytes),
        durability: options.durability.name(),
        sqlite_commits: report
            .data
            .as_ref()
            .map_or(0, |m| m.batches_committed.get()),
        gateway_written_kib_per_1k: usage.gateway_written_bytes.map(|b| per_1k_kib(b, stored)),
        broker_written_kib_per_1k: usage.broker_written_bytes.map(|b| per_1k_kib(b, stored)),
        soak,
    }
}
