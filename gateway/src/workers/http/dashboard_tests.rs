//! The Grafana dashboard in `deploy/grafana/` is valid JSON and every
//! metric its queries name is one `/metrics` exposes.

use std::collections::BTreeSet;
use std::time::Instant;

use packgate_protocol::{DataQuality, PackId, PackReading, Sample};

use super::exposition::{render, Exposed};
use crate::telemetry::snapshot::{take_snapshot, MetricsSource};
use crate::workers::cloud::CloudMetrics;
use crate::workers::collect::CollectMetrics;
use crate::workers::control::ControlMetrics;
use crate::workers::data::DataMetrics;
use crate::workers::monitor::MonitorMetrics;

const DASHBOARD: &str = include_str!("../../../../deploy/grafana/packgate-dashboard.json");

/// Every metric name the exposition can hold: one pack with every kind
/// of value, and every worker's metrics.
fn exposed_names() -> BTreeSet<String> {
    let mut exposed = Exposed::default();
    let pack = PackId::new("p").unwrap();
    let mut reading = PackReading {
        soh_pct: Some(99.0),
        ..PackReading::default()
    };
    reading.cell_voltages_v.0 = vec![3.3];
    reading.temperatures_c.0 = vec![20.0];
    exposed.samples.insert(
        pack.clone(),
        Sample {
            pack_id: pack,
            boot_id: packgate_protocol::BootId(1),
            seq: 1,
            timestamp_ms: 0,
            quality: DataQuality::Fresh,
            reading,
            clock: packgate_protocol::ClockQuality::Trusted,
        },
    );
    let sources: [(&str, &dyn MetricsSource); 6] = [
        ("collect", &CollectMetrics::default()),
        ("data", &DataMetrics::default()),
        ("control", &ControlMetrics::default()),
        ("monitor", &MonitorMetrics::default()),
        ("cloud", &CloudMetrics::default()),
        ("http", &super::HttpMetrics::default()),
    ];
    for (worker, source) in sources {
        let snapshot = take_snapshot(worker, "i", Instant::now(), source);
        exposed
            .snapshots
            .insert((worker.to_owned(), "i".to_owned()), snapshot);
    }
    render(&exposed, "test")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The `packgate_...` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("packgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_queries_only_metrics_that_exist() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let exposed = exposed_names();
    assert!(
        exposed.contains("packgate_collect_polls_ok_total"),
        "{exposed:?}"
    );
    let mut named = 0;
    for query in &queries {
        for name in metric_names(query) {
            named += 1;
            assert!(
                exposed.contains(&name),
                "the dashboard queries {name} ({query}), which /metrics does not expose"
            );
        }
    }
    assert!(named >= queries.len());
    assert_eq!(
        metric_names("rate(packgate_a_total[1m]) - packgate_b{x=\"1\"}"),
        vec!["packgate_a_total", "packgate_b"]
    );
}
