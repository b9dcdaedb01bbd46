//! The link on a fake adapter, in paused time: a burst each interval, a
//! last zero burst once the state is too old, then silence; a fresh state
//! brings the bursts back; a failing adapter is reopened.

#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use futures_util::future::BoxFuture;
use packgate_drivers::can::pylontech::{decode_frame, BmsFrame, ID_LIMITS, ID_REQUEST};
use packgate_drivers::can::CanFrame;
use packgate_protocol::{BankStop, BootId, ChargeStage, Derating, SocWeighting};
use tokio::time::sleep;

use super::*;

fn state(online: u32) -> BankState {
    BankState {
        bank_id: BankId::new("house").unwrap(),
        boot_id: BootId(1),
        seq: 1,
        timestamp_ms: 0,
        packs_total: 3,
        packs_online: online,
        voltage_v: 52.0,
        current_a: 10.0,
        soc_pct: 50.0,
        soc_weighting: SocWeighting::Capacity,
        soh_pct: None,
        min_cell: None,
        max_cell: None,
        min_temperature: None,
        max_temperature: None,
        alarms: packgate_protocol::AlarmFlags::NONE,
        charge_voltage_v: 55.2,
        charge_current_a: if online > 0 { 100.0 } else { 0.0 },
        discharge_current_a: if online > 0 { 200.0 } else { 0.0 },
        discharge_voltage_v: 48.0,
        stage: ChargeStage::Absorption,
        charge_derating: Derating::None,
        discharge_derating: Derating::None,
        stop: (online == 0).then_some(BankStop::NoFreshData),
        packs: Vec::new(),
        overrides: Default::default(),
    }
}

fn input(online: u32, at: Instant, live_at: Option<Instant>) -> LinkInput {
    LinkInput {
        state: state(online),
        at,
        live_at,
    }
}

#[test]
fn a_good_state_is_sent_an_old_one_once_as_zeros_then_nothing() {
    let t0 = Instant::now();
    let stop_after = Duration::from_secs(3);
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert_eq!(step(None, t0, stop_after, false, "x"), Step::Silent);
    let good = input(3, t0, Some(t0));
    let Step::Send(r) = step(Some(&good), at(3), stop_after, true, "x") else {
        panic!()
    };
    assert_eq!(r.charge_current_limit_a, 100.0);
    assert!(r.request.charge_enable);
    let Step::Last(r) = step(Some(&good), at(4), stop_after, false, "x") else {
        panic!()
    };
    assert_eq!(
        (r.charge_current_limit_a, r.discharge_current_limit_a),
        (0.0, 0.0)
    );
    assert!(!r.request.charge_enable && !r.request.discharge_enable);
    assert_eq!(
        step(Some(&good), at(4), stop_after, true, "x"),
        Step::Silent
    );
    // Every pack silent: the stops are sent while a pack counted recently
    // enough, then the link falls silent even though states keep coming.
    let stop = input(0, at(3), Some(t0));
    let Step::Send(r) = step(Some(&stop), at(3), stop_after, false, "x") else {
        panic!()
    };
    assert_eq!(r.charge_current_limit_a, 0.0);
    assert!(!r.request.charge_enable);
    let stop = input(0, at(5), Some(t0));
    assert!(matches!(
        step(Some(&stop), at(5), stop_after, false, "x"),
        Step::Last(_)
    ));
    let never = input(0, at(5), None);
    assert!(matches!(
        step(Some(&never), at(5), stop_after, true, "x"),
        Step::Silent
    ));
}

/// What the fake adapter saw: the frames sent with their time.
type Sent = Arc<Mutex<Vec<(Instant, CanFrame)>>>;

#[derive(Debug)]
struct FakeLink {
    sent: Sent,
}

impl CanLink for FakeLink {
    fn recv(&mut self, limit: Duration) -> BoxFuture<'_, Result<CanFrame, TransportError>> {
        Box::pin(async move { Err(TransportError::Timeout(limit)) })
    }

    fn send<'a>(
        &'a mut self,
        frame: &'a CanFrame,
        _limit: Duration,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        self.sent.lock().unwrap().push((Instant::now(), *frame));
        Box::pin(async { Ok(()) })
    }
}

/// Fails its first `failures` opens, then opens fake links.
#[derive(Debug)]
struct FakeConnector {
    sent: Sent,
    failures: u32,
}

impl CanConnector for FakeConnector {
    fn connect(&mut self) -> BoxFuture<'_, Result<Box<dyn CanLink>, TransportError>> {
        Box::pin(async move {
            if self.failures > 0 {
                self.failures -= 1;
                return Err(TransportError::Closed);
            }
            Ok(Box::new(FakeLink {
                sent: Arc::clone(&self.sent),
            }) as Box<dyn CanLink>)
        })
    }
}

/// The charge current limits and charge enables of the bursts sent.
fn bursts(sent: &Sent) -> Vec<(f32, bool)> {
    let sent = sent.lock().unwrap();
    let mut out = Vec::new();
    let mut limit = None;
    for (_, frame) in sent.iter() {
        match decode_frame(frame).unwrap() {
            BmsFrame::Limits(l) => limit = Some(l.charge_current_limit_a),
            BmsFrame::Request(r) => out.push((limit.take().unwrap(), r.charge_enable)),
            _ => {}
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn the_link_sends_each_interval_falls_silent_and_comes_back() {
    let sent = Sent::default();
    let metrics = Arc::new(BankMetrics::default());
    let mut config = InverterConfig::slcan("/dev/null");
    config.stop_after_s = 3.0;
    let connector = FakeConnector {
        sent: Arc::clone(&sent),
        failures: 2,
    };
    let (task, sender) = InverterLink::new(
        BankId::new("house").unwrap(),
        config,
        Box::new(connector),
        Arc::clone(&metrics),
    );
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(task.run(shutdown.clone()));
    // Two failed opens: 200 ms, then 400 ms of backoff.
    sleep(Duration::from_millis(700)).await;
    assert_eq!(metrics.counts.inverter_connect_failures.get(), 2);
    assert_eq!(metrics.counts.inverter_connects.get(), 1);
    assert!(sent.lock().unwrap().is_empty(), "nothing before a state");

    let t0 = Instant::now();
    sender.send_replace(Some(input(3, t0, Some(t0))));
    sleep(Duration::from_millis(10_500)).await;
    // Bursts at 1..=3 s after the state; at 4 s the last zero burst.
    let seen = bursts(&sent);
    assert_eq!(
        seen,
        vec![(100.0, true), (100.0, true), (100.0, true), (0.0, false)]
    );
    assert_eq!(sent.lock().unwrap().len(), 24);
    let ids: Vec<u16> = sent.lock().unwrap()[..6]
        .iter()
        .map(|(_, f)| f.standard_id().unwrap())
        .collect();
    assert_eq!(ids, [ID_LIMITS, 0x355, 0x356, 0x359, ID_REQUEST, 0x35E]);
    let last_at = sent.lock().unwrap().last().unwrap().0;
    assert!(last_at - t0 <= Duration::from_secs(4), "{:?}", last_at - t0);
    assert_eq!(metrics.counts.inverter_silences.get(), 1);
    assert_eq!(metrics.counts.inverter_frames_sent.get(), 24);

    // A fresh state: the bursts come back; shutdown sends a last zero one.
    let t1 = Instant::now();
    sender.send_replace(Some(input(2, t1, Some(t1))));
    sleep(Duration::from_millis(1_100)).await;
    shutdown.cancel();
    handle.await.unwrap();
    let seen = bursts(&sent);
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(seen[4], (100.0, true));
    assert_eq!(seen[5], (0.0, false));
}
