//! The worker's loop without a broker: samples offered, states computed
//! each second; a broker that cannot be reached costs the publishes (skipped
//! and counted), never the limits' ramp.

#![allow(clippy::unwrap_used)]

use packgate_protocol::{BootId, CellVoltages, ClockQuality, PackReading, Temperatures};

use super::*;
use crate::config::{BankConfig, Config};
use crate::workers::collect::clock::SystemClock;
use crate::workers::GatewayView;

fn config() -> Config {
    let mut config = Config::default();
    config.add_sim_packs(3).unwrap();
    config.banks.push(BankConfig {
        inverter: None,
        name: BankId::new("house").unwrap(),
        packs: vec![
            PackId::new("sim-01").unwrap(),
            PackId::new("sim-02").unwrap(),
        ],
        pack_max_charge_a: None,
        pack_max_discharge_a: None,
        pack_capacity_ah: None,
        limits: LimitRules {
            site_max_charge_a: 1_000.0,
            site_max_discharge_a: 1_000.0,
            ramp_up_a_per_s: 50.0,
            ..LimitRules::default()
        },
    });
    config.validate("test").unwrap();
    config
}

fn sample(pack: &str, seq: u64) -> Vec<u8> {
    encode(&Sample {
        pack_id: PackId::new(pack).unwrap(),
        boot_id: BootId(1),
        seq,
        timestamp_ms: 1_700_000_000_000,
        quality: DataQuality::Fresh,
        reading: PackReading {
            pack_voltage_v: 52.8,
            current_a: 5.0,
            soc_pct: 50.0,
            soh_pct: None,
            cell_voltages_v: CellVoltages(vec![3.3; 16]),
            temperatures_c: Temperatures(vec![25.0]),
            charge_enabled: true,
            discharge_enabled: true,
            ..PackReading::default()
        },
        clock: ClockQuality::Trusted,
    })
}

#[tokio::test]
async fn a_broker_that_is_down_skips_the_publish_and_keeps_the_ramp() {
    // Nothing listens on port 1: the client never connects.
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect("127.0.0.1:1")
        .await
        .unwrap();
    let config = config();
    let mut worker =
        BankWorker::new(&config.banks, &config.control, &GatewayView::of(&config)).unwrap();
    let metrics = worker.bank_metrics();
    let mut state = Loop {
        latest: Latest::new(worker.banks[0].packs.iter().map(|(id, _)| id.clone())),
        inflight: FuturesUnordered::new(),
        inflight_max: 8,
        boot_id: BootId(3),
        clock: Arc::new(SystemClock),
        js: jetstream::new(client.clone()),
        client,
        publish_timeout: Duration::from_millis(100),
        metrics: Arc::clone(&metrics),
    };
    state.offer(&sample("sim-01", 1));
    state.offer(&sample("sim-02", 1));
    state.offer(&sample("sim-02", 1));
    state.offer(&sample("sim-03", 1));
    state.offer(b"not a sample");
    let counts = &metrics.counts;
    assert_eq!(counts.samples_taken.get(), 2);
    assert_eq!(
        counts.samples_ignored.get(),
        2,
        "a repeat, a pack in no bank"
    );
    assert_eq!(counts.messages_malformed.get(), 1);

    let house = BankId::new("house").unwrap();
    let start = Instant::now();
    let mut ccl = Vec::new();
    for second in 0..4 {
        let bank = &mut worker.banks[0];
        state.tick(bank, start + Duration::from_secs(second));
        ccl.push(metrics.bank(&house).unwrap().charge_current_a);
    }
    // Ramped at 50 A/s from zero towards 2 × 100 A, every second computed
    // though none could be sent.
    assert_eq!(ccl, [0.0, 50.0, 100.0, 150.0]);
    assert_eq!(counts.states_skipped.get(), 4);
    assert_eq!(counts.states_published.get(), 0);
    assert!(state.inflight.is_empty());
    assert_eq!(worker.banks[0].seq, 4);
    assert_eq!(metrics.bank(&house).unwrap().packs_counted, 2);
}
