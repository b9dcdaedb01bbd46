//! End to end: three simulated packs in one bank, the collector and the
//! bank worker on a real nats-server. A state every second whose totals are
//! those of the samples it names; an over-temperature pack takes its share
//! out at once; a pack that stops answering is out within the stale age;
//! with every pack silent both currents are zero and the state says why;
//! the data worker stores every state once.

// Test code: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use packgate::bank::LimitRules;
use packgate::config::{BankConfig, Config, ConfigSource};
use packgate::runtime::{run_workers, Broker, RunReport, WorkerSet};
use packgate::store::SampleStore;
use packgate::workers::bank::BankMetrics;
use packgate::workers::collect::PackSet;
use packgate::workers::WorkerKind;
use packgate_protocol::{
    decode, names, AlarmFlags, BankId, BankState, BankStop, DataQuality, PackId, PackShare, Sample,
};
use packgate_sim::Faults;
use support::*;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a pack's latest sample counts.
const STALE_AFTER_S: f64 = 3.0;

fn pack(name: &str) -> PackId {
    PackId::new(name).unwrap()
}

/// Three 100 A simulated packs polled five times a second, in bank
/// `house`; the site allows more than the packs, and limits rise at once.
fn bank_config(url: &str, dir: &std::path::Path) -> Config {
    let mut config = sim_config(url, dir, 3, 200);
    config.collect.request_timeout_ms = 100;
    config.banks.push(BankConfig {
        inverter: None,
        name: BankId::new("house").unwrap(),
        packs: vec![pack("sim-01"), pack("sim-02"), pack("sim-03")],
        pack_max_charge_a: None,
        pack_max_discharge_a: None,
        pack_capacity_ah: None,
        limits: LimitRules {
            site_max_charge_a: 1_000.0,
            site_max_discharge_a: 1_000.0,
            ramp_up_a_per_s: 10_000.0,
            stale_after_s: STALE_AFTER_S,
            ..LimitRules::default()
        },
    });
    config.validate("test").unwrap();
    config
}

/// What the test hears on `packgate.>`, in the broker's order: every
/// sample by pack and sequence number, and the bank's states.
struct Listener {
    messages: async_nats::Subscriber,
    samples: HashMap<(PackId, u64), Sample>,
    /// States heard.
    states: u64,
}

impl Listener {
    /// The next bank state, keeping the samples that come before it; none
    /// within `within`.
    async fn next_state(&mut self, within: Duration) -> Option<(BankState, Instant)> {
        let deadline = Instant::now() + within;
        loop {
            let message = tokio::time::timeout_at(deadline, self.messages.next())
                .await
                .ok()??;
            if let Some(pack) = names::pack_of_sample_subject(&message.subject) {
                let sample = decode::<Sample>(&message.payload).unwrap();
                assert_eq!(sample.pack_id, pack);
                self.samples.insert((pack, sample.seq), sample);
            } else if message.subject.as_str() == "packgate.banks.house" {
                self.states += 1;
                return Some((
                    decode::<BankState>(&message.payload).unwrap(),
                    Instant::now(),
                ));
            }
        }
    }

    /// The first state within `within` for which `wanted` holds.
    async fn state_where(
        &mut self,
        within: Duration,
        wanted: impl Fn(&BankState) -> bool,
    ) -> Option<(BankState, Instant)> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (state, at) = self.next_state(left).await?;
            self.assert_totals(&state);
            if wanted(&state) {
                return Some((state, at));
            }
        }
    }

    /// The state's totals are those of the samples it names.
    fn assert_totals(&self, state: &BankState) {
        let used: Vec<&Sample> = state
            .packs
            .iter()
            .filter(|p| p.counted)
            .map(|p| {
                self.samples
                    .get(&(p.pack_id.clone(), p.sample_seq))
                    .unwrap_or_else(|| panic!("state {} names an unseen sample", state.seq))
            })
            .collect();
        assert!(used.iter().all(|s| s.quality == DataQuality::Fresh));
        assert_eq!(state.packs_online as usize, used.len());
        let current: f32 = used.iter().map(|s| s.reading.current_a).sum();
        assert!(
            (state.current_a - current).abs() < 1e-3,
            "state {}: {} A, samples {current} A",
            state.seq,
            state.current_a
        );
        if used.is_empty() {
            return;
        }
        // Every pack holds 100 Ah: the capacity-weighted SoC is the mean.
        let soc = used.iter().map(|s| s.reading.soc_pct).sum::<f32>() / used.len() as f32;
        assert!(
            (state.soc_pct - soc).abs() < 1e-3,
            "{} {soc}",
            state.soc_pct
        );
        let (low_pack, low) = used
            .iter()
            .map(|s| (s.pack_id.clone(), s.reading.min_cell_v()))
            .fold(None, |best: Option<(PackId, f32)>, (p, v)| match best {
                Some((_, b)) if b <= v => best,
                _ => Some((p, v)),
            })
            .unwrap();
        let min_cell = state.min_cell.as_ref().unwrap();
        assert_eq!((&min_cell.pack_id, min_cell.value), (&low_pack, low));
        let high = used
            .iter()
            .map(|s| s.reading.max_cell_v())
            .fold(f32::MIN, f32::max);
        assert_eq!(state.max_cell.as_ref().unwrap().value, high);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_follows_its_packs_through_overheating_and_silence() {
    let broker = TestBroker::start().await;
    let config = bank_config(&broker.url(), broker.dir.path());
    let packs = PackSet::from_config(&config).unwrap();
    let sims = packs.sims.clone();
    let client = async_nats::connect(broker.url()).await.unwrap();
    let mut listener = Listener {
        messages: client.subscribe("packgate.>").await.unwrap(),
        samples: HashMap::new(),
        states: 0,
    };
    let connection = Broker::open(&config, "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let gateway = {
        let (config, shutdown) = (config.clone(), shutdown.clone());
        let workers = WorkerSet::of(&[WorkerKind::Collect, WorkerKind::Bank, WorkerKind::Data]);
        tokio::spawn(async move {
            run_workers(&config, workers, packs, &connection, shutdown)
                .await
                .map(|report| (report, connection))
        })
    };

    a_state_comes_every_second_with_every_share(&mut listener).await;
    let hot = pack("sim-03");
    an_overheating_packs_share_leaves_within_2_s(&mut listener, &sims[&hot], &hot).await;
    let silent = pack("sim-02");
    a_silent_packs_share_leaves_within_the_stale_age(&mut listener, &sims[&silent], &silent).await;
    for sim in sims.values() {
        sim.set_faults(Faults {
            unresponsive: true,
            ..Faults::default()
        });
    }
    every_pack_silent_stops_the_bank(&mut listener).await;
    status_and_watch_show_the_stopped_bank(&config, &client).await;

    shutdown.cancel();
    let (report, connection): (RunReport, Broker) = gateway.await.unwrap().unwrap();
    every_state_is_published_and_stored_once(&report, listener.states, &broker, &config).await;
    connection.close(&config.data_dir).await;
}

/// Healthy: a state a second, numbered without a gap, each pack's full
/// share once the first second has passed.
async fn a_state_comes_every_second_with_every_share(listener: &mut Listener) {
    let (first, _) = listener
        .next_state(Duration::from_secs(5))
        .await
        .expect("a first state");
    let mut states = vec![first];
    let started = Instant::now();
    while states.len() < 5 {
        let (state, _) = listener
            .next_state(Duration::from_secs(3))
            .await
            .expect("a state a second");
        listener.assert_totals(&state);
        states.push(state);
    }
    let seconds = started.elapsed().as_secs_f64();
    assert!((3.0..6.0).contains(&seconds), "4 states in {seconds:.1} s");
    let seqs: Vec<u64> = states.iter().map(|s| s.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let last = states.last().unwrap();
    assert_eq!((last.packs_total, last.packs_online), (3, 3));
    assert_eq!(last.charge_current_a, 300.0);
    assert_eq!(last.discharge_current_a, 300.0);
    assert_eq!(last.stop, None);
    assert_eq!(last.charge_voltage_v, 55.2);
}

/// The pack `hot` (its simulator `sim`) overheats: its BMS trips, and its
/// share is out of both currents within 2 s.
async fn an_overheating_packs_share_leaves_within_2_s(
    listener: &mut Listener,
    sim: &packgate_sim::SimPack,
    hot: &PackId,
) {
    sim.set_faults(Faults {
        over_temperature: true,
        ..Faults::default()
    });
    sim.advance(600.0);
    let injected = Instant::now();
    let (state, at) = listener
        .state_where(Duration::from_secs(5), |s| {
            s.pack(hot)
                .is_some_and(|p| p.alarms.contains(AlarmFlags::OVER_TEMPERATURE))
        })
        .await
        .expect("the over-temperature reaches the bank");
    assert!(
        at.duration_since(injected) <= Duration::from_secs(2),
        "over-temperature seen by the bank after {:?}",
        at.duration_since(injected)
    );
    assert_eq!(state.charge_current_a, 200.0, "{state:?}");
    assert_eq!(state.discharge_current_a, 200.0);
    assert!(state.alarms.contains(AlarmFlags::OVER_TEMPERATURE));
    let entry = state.pack(hot).unwrap();
    assert!(matches!(
        entry.charge,
        PackShare::SwitchOpen | PackShare::Alarm(_)
    ));
    assert!(state
        .max_temperature
        .as_ref()
        .is_some_and(|t| &t.pack_id == hot && t.value > 55.0));
}

/// How long a silent pack may take to leave the bank, or the bank to stop.
fn silent_within() -> Duration {
    Duration::from_secs_f64(STALE_AFTER_S) + Duration::from_secs(2)
}

/// The pack `silent` (its simulator `sim`) stops answering: its share is
/// out within the stale age.
async fn a_silent_packs_share_leaves_within_the_stale_age(
    listener: &mut Listener,
    sim: &packgate_sim::SimPack,
    silent: &PackId,
) {
    sim.set_faults(Faults {
        unresponsive: true,
        ..Faults::default()
    });
    let silenced = Instant::now();
    let within = silent_within();
    let (state, at) = listener
        .state_where(within, |s| s.pack(silent).is_some_and(|p| !p.counted))
        .await
        .expect("the silent pack leaves the bank");
    assert!(at.duration_since(silenced) <= within);
    assert_eq!(state.charge_current_a, 100.0, "{state:?}");
    assert_eq!(state.discharge_current_a, 100.0);
    assert_eq!(state.packs_online, 2);
    assert_eq!(state.pack(silent).unwrap().charge, PackShare::NotCounted);
}

/// Every pack silent: both currents are zero, and the state says why.
async fn every_pack_silent_stops_the_bank(listener: &mut Listener) {
    let (state, _) = listener
        .state_where(silent_within(), |s| s.packs_online == 0)
        .await
        .expect("the bank stops");
    assert_eq!(
        (state.charge_current_a, state.discharge_current_a),
        (0.0, 0.0)
    );
    assert_eq!(state.stop, Some(BankStop::NoFreshData));
    assert!(state.min_cell.is_none());
    // ... and stays so.
    let (state, _) = listener.next_state(Duration::from_secs(3)).await.unwrap();
    assert_eq!(
        (state.charge_current_a, state.discharge_current_a),
        (0.0, 0.0)
    );
}

/// status and watch show the bank as it is: stopped, no pack online.
async fn status_and_watch_show_the_stopped_bank(config: &Config, client: &async_nats::Client) {
    let mut out = Vec::new();
    packgate::cli::status::status(
        config,
        &ConfigSource::Defaults,
        Some(client.clone()),
        &mut out,
    )
    .await
    .unwrap();
    let status = String::from_utf8(out).unwrap();
    let block = status.split("\nBanks\n").nth(1).expect("a Banks section");
    assert!(
        block.starts_with("  house            0/3 packs online"),
        "{status}"
    );
    assert!(block.contains("CCL 0.0 A"), "{status}");
    assert!(
        block.contains("STOPPED: no pack has fresh data: charge and discharge currents are 0"),
        "{status}"
    );
    let mut out = Vec::new();
    packgate::cli::watch::watch(client.clone(), &mut out, true, CancellationToken::new())
        .await
        .unwrap();
    let watched = String::from_utf8(out).unwrap();
    assert!(
        watched
            .lines()
            .any(|l| l.starts_with("bank house") && l.contains("0/3 packs")),
        "{watched}"
    );
}

/// The bank worker published every state the test `heard` (and nothing
/// failed); every state published is on the bank stream, and stored once.
async fn every_state_is_published_and_stored_once(
    report: &RunReport,
    heard: u64,
    broker: &TestBroker,
    config: &Config,
) {
    let metrics = report
        .workers
        .iter()
        .find(|(kind, _)| *kind == WorkerKind::Bank)
        .and_then(|(_, m)| m.get::<BankMetrics>())
        .expect("the bank worker ran");
    let counts = &metrics.counts;
    assert!(counts.states_published.get() >= heard);
    assert!(heard >= 8, "{heard} states");
    assert_eq!(counts.publish_failures.get(), 0);
    assert_eq!(counts.states_skipped.get(), 0);
    assert_eq!(counts.states_invalid.get(), 0);
    let gauges = metrics.bank(&BankId::new("house").unwrap()).unwrap();
    assert_eq!(gauges.charge_current_a, 0.0);
    let published = counts.states_published.get();
    assert_eq!(
        stream_messages(&broker.url(), names::BANKS_STREAM.name).await,
        published
    );
    let data = report.data.as_ref().expect("the data worker ran");
    assert_eq!(data.bank_states_stored.get(), published);
    assert_eq!(data.bank_states_malformed.get(), 0);
    let store = SampleStore::open_read_only(&config.database_path()).unwrap();
    assert_eq!(store.bank_state_count().unwrap(), published);
    let house = BankId::new("house").unwrap();
    let newest = &store.latest_bank_states(&house, 1).unwrap()[0].state;
    assert_eq!(newest.stop, Some(BankStop::NoFreshData));
    assert_eq!(newest.packs.len(), 3);
}
