//! A bank state as the inverter reads it: through the encoder and the
//! Pylontech decoder, within the frames' resolution.

#![allow(clippy::unwrap_used)]

use packgate_drivers::can::inverter::encode_report;
use packgate_drivers::can::pylontech::{decode_frame, BmsFrame, PylonFlags};
use packgate_protocol::{
    AlarmFlags, BankId, BankStop, BootId, ChargeStage, Derating, Extreme, PackId, SocWeighting,
};

use super::*;

fn state() -> BankState {
    let extreme = |value: f32| Extreme {
        pack_id: PackId::new("sim-02").unwrap(),
        index: 1,
        value,
    };
    BankState {
        bank_id: BankId::new("house").unwrap(),
        boot_id: BootId(7),
        seq: 12,
        timestamp_ms: 1_700_000_000_000,
        packs_total: 3,
        packs_online: 3,
        voltage_v: 52.87,
        current_a: -42.35,
        soc_pct: 63.6,
        soc_weighting: SocWeighting::Capacity,
        soh_pct: Some(97.2),
        min_cell: Some(extreme(3.28)),
        max_cell: Some(extreme(3.31)),
        min_temperature: Some(extreme(21.5)),
        max_temperature: Some(extreme(31.26)),
        alarms: AlarmFlags::CELL_OVER_VOLTAGE,
        charge_voltage_v: 55.2,
        charge_current_a: 150.04,
        discharge_current_a: 300.0,
        discharge_voltage_v: 48.0,
        stage: ChargeStage::Absorption,
        charge_derating: Derating::CellVoltage,
        discharge_derating: Derating::None,
        stop: None,
        packs: Vec::new(),
        overrides: Default::default(),
    }
}

/// The report's six frames, decoded as an inverter would.
fn decoded(report: &InverterReport) -> Vec<BmsFrame> {
    encode_report(report)
        .iter()
        .map(|f| decode_frame(f).unwrap())
        .collect()
}

#[test]
fn a_running_bank_is_its_limits_totals_and_hottest_sensor() {
    let report = report(&state(), "packgate");
    assert_eq!(report.module_count, 3);
    assert!(report.request.charge_enable && report.request.discharge_enable);
    assert_eq!(report.temperature_c, f64::from(31.26f32));
    let frames = decoded(&report);
    let BmsFrame::Limits(limits) = &frames[0] else {
        panic!("{frames:?}")
    };
    assert!((limits.charge_voltage_limit_v - 55.2).abs() < 0.051);
    assert!((limits.charge_current_limit_a - 150.0).abs() < 0.051);
    assert!((limits.discharge_current_limit_a - 300.0).abs() < 0.051);
    assert!((limits.discharge_voltage_limit_v.unwrap() - 48.0).abs() < 0.051);
    let BmsFrame::SocSoh(soc) = &frames[1] else {
        panic!("{frames:?}")
    };
    assert_eq!((soc.soc_pct, soc.soh_pct), (64, 97));
    let BmsFrame::Measurements(m) = &frames[2] else {
        panic!("{frames:?}")
    };
    assert!((m.pack_voltage_v - 52.87).abs() < 0.006);
    assert!((m.current_a + 42.35).abs() < 0.051);
    assert!((m.temperature_c - 31.26).abs() < 0.051);
    let BmsFrame::Protection(p) = &frames[3] else {
        panic!("{frames:?}")
    };
    assert_eq!(p.protection, PylonFlags(PylonFlags::CELL_OVER_VOLTAGE));
    assert_eq!(p.module_count, 3);
    assert_eq!(frames[5], BmsFrame::Manufacturer("packgate".into()));
}

#[test]
fn a_zero_limit_turns_its_enable_off() {
    let mut hot = state();
    hot.charge_current_a = 0.0;
    let r = report(&hot, "x");
    assert!(!r.request.charge_enable);
    assert!(r.request.discharge_enable);
    hot.discharge_current_a = -3.0;
    let r = report(&hot, "x");
    assert_eq!(r.discharge_current_limit_a, 0.0);
    assert!(!r.request.discharge_enable);
}

#[test]
fn a_stopped_bank_sends_zero_currents_and_both_enables_off() {
    let mut stop = state();
    stop.stop = Some(BankStop::NoFreshData);
    stop.packs_online = 0;
    stop.max_temperature = None;
    stop.soh_pct = None;
    let r = report(&stop, "x");
    assert_eq!(
        (r.charge_current_limit_a, r.discharge_current_limit_a),
        (0.0, 0.0)
    );
    assert_eq!(r.request, Request::default());
    assert_eq!((r.module_count, r.temperature_c), (0, 0.0));
    assert_eq!(r.soh_pct, UNKNOWN_SOH_PCT);
    // The voltage limits stay: the inverter never reads a CVL of 0 V.
    assert_eq!(r.charge_voltage_limit_v, f64::from(55.2f32));
    let BmsFrame::Request(request) = &decoded(&r)[4] else {
        panic!()
    };
    assert!(!request.charge_enable && !request.discharge_enable);
}

#[test]
fn the_last_burst_keeps_the_measurements_and_zeroes_the_currents() {
    let last = stopped(report(&state(), "x"));
    assert_eq!(last.charge_current_limit_a, 0.0);
    assert_eq!(last.discharge_current_limit_a, 0.0);
    assert_eq!(last.request, Request::default());
    assert_eq!(last.soc_pct, f64::from(63.6f32));
}
