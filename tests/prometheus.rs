//! The HTTP worker's `/metrics` scraped by a real Prometheus (Debian's
//! `prometheus`, started here on a free port with its own scrape config
//! and store): a pack's voltage read back through Prometheus's HTTP API is
//! one the gateway stored in SQLite, to the last bit.

// Test helpers below panic on a failed set-up step, which fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::wire::*;
use support::*;

/// `GET path` on `127.0.0.1:port`: the status line and the body, or none
/// while nothing listens.
fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

fn prometheus_binary() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin"])
    {
        let candidate = PathBuf::from(dir).join("prometheus");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("prometheus is not installed: `apt-get install prometheus` (./deploy/dev.sh test does)");
}

/// A Prometheus of this test's own, killed (by its PID) when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target_port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: packgate\n    static_configs:\n      \
                 - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The values of an instant `query`, by the given label.
    fn query(&self, query: &str, label: &str) -> Vec<(String, f64)> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let Some((status, body)) = get(self.port, &format!("/api/v1/query?query={encoded}")) else {
            return Vec::new();
        };
        if !status.contains("200") {
            return Vec::new();
        }
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["data"]["result"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .map(|r| {
                        let name = r["metric"][label].as_str().unwrap_or_default().to_owned();
                        let value = r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
                        (name, value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_pack_voltage_that_sqlite_holds() {
    let broker = TestBroker::start().await;
    let mut config = sim_config(&broker.url(), broker.dir.path(), 2, 500);
    config.monitor.snapshot_interval_s = 1;
    // Both packs as one bank: its limits are scraped too.
    config.banks.push(packgate::config::BankConfig {
        inverter: None,
        name: packgate_protocol::BankId::new("house").unwrap(),
        packs: ["sim-01", "sim-02"]
            .map(|p| packgate_protocol::PackId::new(p).unwrap())
            .to_vec(),
        pack_max_charge_a: None,
        pack_max_discharge_a: None,
        pack_capacity_ah: None,
        limits: packgate::bank::LimitRules::default(),
    });
    let http_port = free_port();
    config.http.listen = format!("127.0.0.1:{http_port}");
    let (shutdown, gateway) = start_gateway(&config).await;

    // The page itself: served, in the text format, with both packs.
    let mut page = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some((status, body)) = get(http_port, "/metrics") {
            if body.contains("packgate_battery_voltage_volts{pack=\"sim-02\"}")
                && body.contains("packgate_collect_polls_ok_total")
            {
                assert!(status.contains("200"), "{status}");
                page = Some(body);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = page.expect("/metrics shows both packs and the collector's counters");
    assert!(page.contains("# TYPE packgate_battery_voltage_volts gauge"));
    assert!(page.contains("packgate_build_info{version=\""));
    let (status, _) = get(http_port, "/nothing").unwrap();
    assert!(status.contains("404"), "{status}");

    let prometheus = Prometheus::start(http_port);
    let mut scraped = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && scraped.is_empty() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        scraped = prometheus.query("packgate_battery_voltage_volts{pack=\"sim-01\"}", "pack");
    }
    assert_eq!(
        scraped.len(),
        1,
        "Prometheus has sim-01's voltage: {scraped:?}"
    );
    let voltage = scraped[0].1;
    let up = prometheus.query("up{job=\"packgate\"}", "job");
    assert_eq!(up, vec![("packgate".to_owned(), 1.0)]);
    let packs = prometheus.query("count by (pack) (packgate_cell_voltage_volts)", "pack");
    assert_eq!(packs.len(), 2, "{packs:?}");
    assert!(packs.iter().all(|(_, cells)| *cells == 16.0), "{packs:?}");

    // The bank's limits as the inverter is given them.
    let mut online = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && online != vec![("house".to_owned(), 2.0)] {
        tokio::time::sleep(Duration::from_millis(500)).await;
        online = prometheus.query("packgate_bank_packs_online", "bank");
    }
    assert_eq!(online, vec![("house".to_owned(), 2.0)]);
    let cvl = prometheus.query("packgate_bank_charge_voltage_limit_volts", "bank");
    assert_eq!(cvl.len(), 1, "{cvl:?}");
    assert!((cvl[0].1 - 55.2).abs() < 1e-3, "{cvl:?}");
    let ccl = prometheus.query("packgate_bank_charge_current_limit_amperes", "bank");
    assert!(ccl.len() == 1 && ccl[0].1 >= 0.0, "{ccl:?}");

    shutdown.cancel();
    let (_report, connection) = gateway.await.unwrap();
    // The scraped value is one the gateway stored, exactly.
    let stored = rows(&config, "sim-01");
    assert!(
        stored
            .iter()
            .any(|r| f64::from(r.sample.reading.pack_voltage_v) == voltage),
        "{voltage} V is none of the {} stored samples",
        stored.len()
    );
    connection.close(&config.data_dir).await;
}
