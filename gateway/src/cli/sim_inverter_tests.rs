//! The inverter side against the gateway's own slcan link: the adapter is
//! brought up, every frame of a report comes back decoded, and the
//! bursts read as the report.

#![allow(clippy::unwrap_used)]

use packgate_drivers::can::inverter::{encode_report, InverterReport};
use packgate_drivers::can::pylontech::Request;
use packgate_drivers::can::slcan::Bitrate;
use packgate_drivers::can::transport::SlcanLink;
use packgate_protocol::AlarmFlags;

use super::*;

fn sample_report() -> InverterReport {
    InverterReport {
        charge_voltage_limit_v: 55.2,
        charge_current_limit_a: 150.0,
        discharge_current_limit_a: 0.0,
        discharge_voltage_limit_v: 48.0,
        soc_pct: 64.0,
        soh_pct: 98.0,
        voltage_v: 52.87,
        current_a: -4.2,
        temperature_c: 31.3,
        alarms: AlarmFlags::OVER_TEMPERATURE,
        warnings: AlarmFlags::NONE,
        module_count: 2,
        request: Request {
            charge_enable: true,
            ..Request::default()
        },
        name: "packgate".into(),
    }
}

#[tokio::test]
async fn the_inverter_opens_like_an_adapter_and_reads_every_burst() {
    let (ours, theirs) = tokio::io::duplex(4096);
    let (sender, mut frames) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let reader = tokio::spawn(receive_frames(theirs, sender, shutdown.clone()));
    let mut link = SlcanLink::open(ours, Bitrate::Kbps500, Duration::from_secs(1))
        .await
        .unwrap();
    for _ in 0..2 {
        for frame in &encode_report(&sample_report()) {
            link.send_frame(frame, Duration::from_secs(1))
                .await
                .unwrap();
        }
    }
    let mut bursts = Vec::new();
    let mut burst = Burst::default();
    while bursts.len() < 2 {
        let received = frames.recv().await.unwrap();
        if burst.take(&received) {
            bursts.push(std::mem::take(&mut burst));
        }
    }
    shutdown.cancel();
    assert_eq!(reader.await.unwrap().unwrap(), 0, "no bad frame");
    let b = &bursts[1];
    assert_eq!(b.charge_voltage_limit_v, Some(55.2));
    assert_eq!(b.charge_current_limit_a, Some(150.0));
    assert_eq!(b.discharge_current_limit_a, Some(0.0));
    assert_eq!(b.discharge_voltage_limit_v, Some(48.0));
    assert_eq!((b.soc_pct, b.soh_pct), (Some(64), Some(98)));
    assert_eq!(b.voltage_v, Some(52.87));
    assert_eq!(b.current_a, Some(-4.2));
    assert_eq!(b.module_count, Some(2));
    assert_eq!(
        (b.charge_enable, b.discharge_enable),
        (Some(true), Some(false))
    );
    assert_eq!(b.name.as_deref(), Some("packgate"));
    let line = b.describe();
    assert!(line.contains("CCL 150.0 A"), "{line}");
    assert!(line.contains("alarms over_temperature"), "{line}");
    assert!(line.contains("charge on discharge off"), "{line}");
    let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(b).unwrap()).unwrap();
    assert_eq!(json["module_count"], 2);
}
