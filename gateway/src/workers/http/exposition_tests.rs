use packgate_protocol::{
    AlarmFlags, BootId, CellVoltages, ClockQuality, LatencySummary, PackReading, Temperatures,
};

use super::*;

fn sample(pack: &str, soh: Option<f32>, quality: DataQuality) -> Sample {
    Sample {
        pack_id: PackId::new(pack).unwrap(),
        boot_id: BootId(1),
        seq: 7,
        timestamp_ms: 1_700_000_000_500,
        quality,
        reading: PackReading {
            pack_voltage_v: 52.5,
            current_a: -12.5,
            soc_pct: 76.5,
            soh_pct: soh,
            cell_voltages_v: CellVoltages(vec![3.3, 3.25]),
            temperatures_c: Temperatures(vec![21.5]),
            alarms: AlarmFlags::OVER_TEMPERATURE,
            charge_enabled: false,
            discharge_enabled: true,
            ..PackReading::default()
        },
        clock: ClockQuality::Trusted,
    }
}

fn exposed() -> Exposed {
    let mut e = Exposed::default();
    for s in [
        sample("rack-1", Some(98.0), DataQuality::Fresh),
        sample("jbd", None, DataQuality::Stale),
    ] {
        e.samples.insert(s.pack_id.clone(), s);
    }
    let snapshot = MetricsSnapshot {
        worker: "collect".into(),
        instance: "box:42".into(),
        timestamp_ms: 0,
        uptime_s: 30,
        version: "0.1.0".into(),
        rss_bytes: 12_000_000,
        cpu_s: 1.5,
        counters: vec![("polls_ok".into(), 120), ("odd name-1".into(), 3)],
        gauges: vec![("packs_offline".into(), 1.0)],
        latencies: vec![LatencySummary {
            name: "poll_to_ack".into(),
            count: 40,
            p50_ms: 2.0,
            p99_ms: 9.0,
            max_ms: 12.0,
        }],
        notes: vec![],
    };
    e.snapshots
        .insert(("collect".into(), "box:42".into()), snapshot);
    e
}

fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line {start:?} in\n{text}"))
}

#[test]
fn packs_are_exposed_in_base_units_and_ratios() {
    let text = render(&exposed(), "1.2.3");
    assert_eq!(
        line(&text, "packgate_build_info"),
        "packgate_build_info{version=\"1.2.3\"} 1"
    );
    assert_eq!(
        line(&text, "packgate_battery_voltage_volts{pack=\"rack-1\"}"),
        "packgate_battery_voltage_volts{pack=\"rack-1\"} 52.5"
    );
    assert!(text.contains("packgate_battery_current_amperes{pack=\"jbd\"} -12.5\n"));
    assert!(text.contains("packgate_battery_state_of_charge_ratio{pack=\"rack-1\"} 0.765\n"));
    // SoH only where the BMS reports it.
    let soh = line(
        &text,
        "packgate_battery_state_of_health_ratio{pack=\"rack-1\"}",
    );
    let value: f64 = soh.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((value - 0.98).abs() < 1e-6, "{soh}");
    assert!(!text.contains("packgate_battery_state_of_health_ratio{pack=\"jbd\"}"));
    assert!(text.contains("packgate_cell_voltage_volts{pack=\"rack-1\",cell=\"2\"} 3.25"));
    assert!(text.contains("packgate_battery_temperature_celsius{pack=\"jbd\",sensor=\"1\"} 21.5\n"));
    assert!(text.contains("packgate_battery_alarm{pack=\"rack-1\",alarm=\"over_temperature\"} 1\n"));
    assert!(text.contains("packgate_battery_alarm{pack=\"rack-1\",alarm=\"short_circuit\"} 0\n"));
    assert!(text.contains("packgate_battery_reading_fresh{pack=\"jbd\"} 0\n"));
    assert!(text.contains("packgate_battery_reading_fresh{pack=\"rack-1\"} 1\n"));
    assert!(text.contains("packgate_battery_charge_enabled{pack=\"rack-1\"} 0\n"));
    assert!(text.contains("packgate_last_sample_timestamp_seconds{pack=\"rack-1\"} 1700000000.5\n"));
}

#[test]
fn workers_are_exposed_as_counters_gauges_and_summaries() {
    let text = render(&exposed(), "1.2.3");
    assert!(text.contains("# TYPE packgate_collect_polls_ok_total counter\n"));
    assert!(text.contains("packgate_collect_polls_ok_total{instance=\"box:42\"} 120\n"));
    // A name that is no metric name is made one, never breaks the format.
    assert!(text.contains("packgate_collect_odd_name_1_total{instance=\"box:42\"} 3\n"));
    assert!(text.contains("packgate_collect_packs_offline{instance=\"box:42\"} 1\n"));
    assert!(text.contains("# TYPE packgate_collect_poll_to_ack_seconds summary\n"));
    assert!(text.contains(
        "packgate_collect_poll_to_ack_seconds{instance=\"box:42\",quantile=\"0.99\"} 0.009\n"
    ));
    assert!(text.contains("packgate_collect_poll_to_ack_seconds_count{instance=\"box:42\"} 40\n"));
    assert!(text.contains(
        "packgate_process_resident_memory_bytes{worker=\"collect\",instance=\"box:42\"} 12000000\n"
    ));
}

#[test]
fn every_family_is_declared_once_before_its_samples() {
    let text = render(&exposed(), "1.2.3");
    let mut declared = std::collections::BTreeSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(declared.insert(name.to_owned()), "{name} declared twice");
        } else if !l.starts_with('#') {
            let name = l.split(['{', ' ']).next().unwrap();
            let family = name.strip_suffix("_count").unwrap_or(name);
            assert!(
                declared.contains(name) || declared.contains(family),
                "{name} before its TYPE line"
            );
        }
    }
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    assert_eq!(
        metric_name(&["packgate", "Cloud", "x.y-z"]),
        "packgate_cloud_x_y_z"
    );
    assert_eq!(number(f64::NAN), "NaN");
    assert_eq!(number(f64::NEG_INFINITY), "-Inf");
}

#[test]
fn banks_are_exposed_with_their_limits() {
    use packgate_protocol::{BankId, BankStop, BootId, ChargeStage, Derating, SocWeighting};
    let mut e = exposed();
    assert!(
        !render(&e, "1").contains("packgate_bank_"),
        "no bank, no bank family"
    );
    let mut state = BankState {
        bank_id: BankId::new("house").unwrap(),
        boot_id: BootId(1),
        seq: 3,
        timestamp_ms: 1_700_000_000_000,
        packs_total: 3,
        packs_online: 2,
        voltage_v: 53.1,
        current_a: -42.5,
        soc_pct: 61.5,
        soc_weighting: SocWeighting::Capacity,
        soh_pct: None,
        min_cell: None,
        max_cell: None,
        min_temperature: None,
        max_temperature: None,
        alarms: AlarmFlags::NONE,
        charge_voltage_v: 55.2,
        charge_current_a: 150.0,
        discharge_current_a: 200.0,
        discharge_voltage_v: 48.0,
        stage: ChargeStage::Absorption,
        charge_derating: Derating::CellVoltage,
        discharge_derating: Derating::None,
        stop: None,
        packs: Vec::new(),
        overrides: Default::default(),
    };
    e.banks.insert(state.bank_id.clone(), state.clone());
    let text = render(&e, "1");
    for (start, value) in [
        (
            "packgate_bank_charge_voltage_limit_volts{bank=\"house\"} ",
            "55.2",
        ),
        (
            "packgate_bank_charge_current_limit_amperes{bank=\"house\"} ",
            "150",
        ),
        (
            "packgate_bank_discharge_current_limit_amperes{bank=\"house\"} ",
            "200",
        ),
        ("packgate_bank_current_amperes{bank=\"house\"} ", "-42.5"),
        (
            "packgate_bank_state_of_charge_ratio{bank=\"house\"} ",
            "0.615",
        ),
        ("packgate_bank_packs_online{bank=\"house\"} ", "2"),
        ("packgate_bank_stopped{bank=\"house\"} ", "0"),
    ] {
        let found = line(&text, start);
        let shown: f64 = found[start.len()..].parse().unwrap();
        assert!(
            (shown - value.parse::<f64>().unwrap()).abs() < 1e-4,
            "{found}"
        );
    }
    state.stop = Some(BankStop::NoFreshData);
    e.banks.insert(state.bank_id.clone(), state);
    assert!(render(&e, "1").contains("packgate_bank_stopped{bank=\"house\"} 1"));
}
