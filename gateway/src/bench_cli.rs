//! The arguments of `packgate bench`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use packgate::bench::{BenchOptions, BenchTransport};
use packgate::config::Durability;

/// `packgate bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Simulated packs, at most 1000 (with --transport modbus-tcp, devices
    /// of one pack each).
    #[arg(long, default_value_t = 100, value_parser = super::parse_sim_count)]
    packs: usize,
    /// Where the packs are: sim (the model polled in this process) or
    /// modbus-tcp (simulated devices in a separate process, one TCP
    /// endpoint each, polled over the wire as on a site).
    #[arg(long, value_enum, default_value_t = BenchTransport::Sim)]
    transport: BenchTransport,
    /// Same as --packs, in the words of the Modbus TCP mode.
    #[arg(long, value_parser = super::parse_sim_count, conflicts_with = "packs")]
    devices: Option<usize>,
    /// Seconds of polling, warm-up included.
    #[arg(long, default_value_t = 10, conflicts_with = "soak")]
    duration: u64,
    /// Seconds at the start left out of the steady-state figures (CPU %,
    /// memory, writes per hour); default a quarter of the run, at most 10.
    #[arg(long)]
    warm_up: Option<u64>,
    /// Run for HOURS with every local worker (as on the box) and
    /// report how the gateway's memory grows after warm-up.
    #[arg(long, value_name = "HOURS", value_parser = super::parse_soak_hours)]
    soak: Option<f64>,
    /// Run every worker that needs no outside server (control,
    /// monitor, http too), not only collect and data.
    #[arg(long)]
    all_workers: bool,
    /// Run the mqtt worker too, publishing to the MQTT broker at
    /// HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    mqtt: Option<String>,
    /// Polls per second per pack; 0 as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// The nats-server executable.
    #[arg(long, default_value = "nats-server")]
    nats_server: PathBuf,
    /// What a power cut may cost: fast or safe (see `durability` in
    /// the configuration); the figures show its disk writes.
    #[arg(long, default_value = "fast", value_parser = ["fast", "safe"])]
    durability: String,
    /// Put the stores in a temporary directory under this one (the
    /// disk to measure, an SD card say) instead of the system's.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// End with one JSON object of the figures.
    #[arg(long)]
    pub(crate) json: bool,
}

impl BenchArgs {
    /// What to run.
    pub(crate) fn into_options(self) -> anyhow::Result<BenchOptions> {
        let duration = self
            .soak
            .map_or(Duration::from_secs(self.duration), |hours| {
                Duration::from_secs_f64(hours * 3600.0)
            });
        let warm_up = self.warm_up.map_or_else(
            || (duration / 4).min(Duration::from_secs(10)),
            Duration::from_secs,
        );
        Ok(BenchOptions {
            packs: self.devices.unwrap_or(self.packs),
            transport: self.transport,
            sim_executable: std::env::current_exe()
                .context("finding this executable to serve the simulated devices")?,
            duration,
            warm_up,
            rate_hz: self.rate,
            nats_server_path: self.nats_server,
            durability: if self.durability == "safe" {
                Durability::Safe
            } else {
                Durability::Fast
            },
            data_dir: self.data_dir,
            soak: self.soak.is_some(),
            all_workers: self.all_workers,
            mqtt_broker: self.mqtt,
        })
    }
}
