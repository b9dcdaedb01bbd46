//! The local web page in a real headless browser (Debian's `chromium`,
//! driven over the DevTools protocol): it loads, shows every simulated
//! pack with the values the store holds for the sample it shows, updates
//! live within 2 s, draws its history charts, shows the pipeline and the
//! recent events; the live stream, the history API and the CSV download
//! checked with a plain HTTP client against the store; an exposed server
//! without a password is refused at start, and a wrong password gets 401.
//!
//! Skipped, with a line saying so, only where chromium is not installed
//! (`./deploy/dev.sh test` installs it).

// Test code: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use packgate::config::{Config, Secret};
use packgate::store::SampleStore;
use packgate_protocol::PackId;
use serde_json::Value;

use support::browser::{chromium, Browser};
use support::web::{cards, get, live_events, shown, stored};
use support::wire::start_gateway;
use support::*;

const PACKS: [&str; 4] = ["sim-01", "sim-02", "sim-03", "sim-04"];

/// Everything the browser checks, run on a thread of its own.
fn check_in_browser(chromium: &Path, port: u16, database: &Path) {
    let mut browser = Browser::launch(chromium, 1280, 900);
    browser.open(&format!("http://127.0.0.1:{port}/"), 1280, 900);
    let first = every_pack_shown_live(&mut browser);
    check_cards_show_the_stores_values(&first, database);
    let start = check_cards_move_on_within_2_s(&mut browser, &first);
    check_history_charts(&mut browser, start);
    check_pipeline(&mut browser);
    check_bank(&mut browser);
}

/// Waits until every pack is shown, live: the cards then shown.
fn every_pack_shown_live(browser: &mut Browser) -> Vec<Value> {
    let all = browser.wait_for(
        "document.body.dataset.live + ' ' + document.querySelectorAll('article.pack').length + ' ' +
         document.querySelectorAll('article.pack[data-seq]').length",
        Duration::from_secs(20),
        |v| v == "live 4 4",
    );
    assert_eq!(all, "live 4 4", "the page shows the four packs, live");
    let first = cards(browser);
    let ids: Vec<&str> = first.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, PACKS);
    first
}

/// The values shown are the store's for the sample shown.
fn check_cards_show_the_stores_values(first: &[Value], database: &Path) {
    for card in first {
        let pack = card["id"].as_str().unwrap();
        let row = stored(
            database,
            pack,
            card["boot"].as_str().unwrap(),
            card["seq"].as_u64().unwrap(),
        );
        let r = &row.sample.reading;
        assert_eq!(card["timestamp_ms"], row.sample.timestamp_ms);
        assert_eq!(
            card["voltage_v"].as_str().unwrap().parse::<f32>().unwrap(),
            r.pack_voltage_v,
            "{pack}"
        );
        let volts = shown(&card["shown_voltage"]);
        assert!(
            (volts - f64::from(r.pack_voltage_v)).abs() <= 0.005 + 1e-6,
            "{pack}: shown {volts} V, stored {} V",
            r.pack_voltage_v
        );
        let soc = shown(&card["shown_soc"]);
        assert!(
            (soc - f64::from(r.soc_pct)).abs() <= 0.05 + 1e-6,
            "{pack}: shown {soc} %, stored {} %",
            r.soc_pct
        );
        let amps = shown(&card["shown_current"]);
        assert!((amps - f64::from(r.current_a)).abs() <= 0.005 + 1e-6);
        assert_eq!(card["cells"], r.cell_voltages_v.0.len(), "a bar per cell");
        assert_eq!(card["state"], "online");
    }
}

/// Live: every pack's card moves on, each sample shown within 2 s of
/// being taken. Returns when the 5 s of watching began.
fn check_cards_move_on_within_2_s(browser: &mut Browser, first: &[Value]) -> Instant {
    let start = Instant::now();
    let mut updates = 0;
    let mut slowest = 0;
    let mut seen: Vec<u64> = first.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    while start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        for (i, card) in cards(browser).iter().enumerate() {
            let seq = card["seq"].as_u64().unwrap();
            if seq != seen[i] {
                seen[i] = seq;
                updates += 1;
                let delay =
                    card["updated_at"].as_i64().unwrap() - card["timestamp_ms"].as_i64().unwrap();
                slowest = slowest.max(delay);
                assert!(
                    delay < 2_000,
                    "{} seq {seq} shown {delay} ms after it was taken",
                    card["id"]
                );
            }
        }
    }
    assert!(
        updates >= 4 * 3,
        "{updates} updates in 5 s of four packs polled every second"
    );
    eprintln!("{updates} updates seen in 5 s, the slowest shown {slowest} ms after its poll");
    start
}

/// The history charts: SVG paths with points, for the first pack.
fn check_history_charts(browser: &mut Browser, start: Instant) {
    let charts = browser.wait_for(
        "JSON.stringify([...document.querySelectorAll('svg.chart')].map(s => ({
            id: s.id, points: Number(s.dataset.points),
            lines: [...s.querySelectorAll('path.line')].map(p => p.getAttribute('d')) })))",
        Duration::from_secs(70),
        |v| {
            let charts: Vec<Value> =
                serde_json::from_str(v.as_str().unwrap_or("[]")).unwrap_or_default();
            charts.len() == 4
                && charts
                    .iter()
                    .all(|c| c["points"].as_u64().unwrap_or(0) >= 2)
        },
    );
    let charts: Vec<Value> = serde_json::from_str(charts.as_str().unwrap()).unwrap();
    eprintln!(
        "charts drawn {} ms after the live check",
        start.elapsed().as_millis() - 5_000
    );
    for chart in &charts {
        let points = chart["points"].as_u64().unwrap();
        assert!(points >= 2, "{chart}");
        let lines = chart["lines"].as_array().unwrap();
        let expected_lines = if chart["id"] == "chart-cells" { 2 } else { 1 };
        assert_eq!(lines.len(), expected_lines, "{chart}");
        for d in lines {
            let d = d.as_str().unwrap();
            let vertices = d.matches(['M', 'L']).count() as u64;
            assert_eq!(vertices, points, "a vertex per point: {d}");
        }
    }
    let section = browser.eval("document.getElementById('history-section').dataset.pack");
    assert_eq!(section, "sim-01");
}

/// The pipeline: the workers of the gateway alive, the packs' events.
fn check_pipeline(browser: &mut Browser) {
    let alive = browser.wait_for(
        "[...document.querySelectorAll('#workers td.state.alive')].length",
        Duration::from_secs(15),
        |v| v.as_u64().unwrap_or(0) >= 5,
    );
    assert!(
        alive.as_u64().unwrap() >= 5,
        "collect, data, control, monitor, http alive: {alive}"
    );
    let online_events = browser.wait_for(
        "[...document.querySelectorAll('#events td.pack_online')].length",
        Duration::from_secs(15),
        |v| v.as_u64().unwrap_or(0) >= 4,
    );
    assert!(online_events.as_u64().unwrap() >= 4, "{online_events}");
    let commands = browser.eval("document.getElementById('commands-note').textContent");
    assert_eq!(commands, "none", "no command was sent");
}

/// The bank, with every pack counted and its limits shown.
fn check_bank(browser: &mut Browser) {
    let bank = browser.wait_for(
        "JSON.stringify([...document.querySelectorAll('#banks tbody tr')].map(r => \
         [...r.cells].map(c => c.textContent)))",
        Duration::from_secs(15),
        |v| {
            v.as_str()
                .is_some_and(|t| t.contains("house") && t.contains("4 / 4"))
        },
    );
    let rows: Vec<Vec<String>> = serde_json::from_str(bank.as_str().unwrap()).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], "house");
    assert_eq!(rows[0][1], "4 / 4");
    assert_eq!(rows[0][5], "55.2 V", "the absorption voltage: {rows:?}");
    assert!(
        rows[0][6].ends_with(" A") && rows[0][7].ends_with(" A"),
        "{rows:?}"
    );
    let hidden = browser.eval("document.getElementById('banks-section').hidden");
    assert_eq!(hidden, Value::Bool(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_pack_live_with_the_stores_values_and_charts() {
    let Some(chromium) = chromium() else {
        eprintln!(
            "SKIPPED: chromium is not installed (apt-get install chromium; ./deploy/dev.sh test installs it)"
        );
        return;
    };
    let broker = TestBroker::start().await;
    let mut config = sim_config(&broker.url(), broker.dir.path(), 4, 1_000);
    config.monitor.snapshot_interval_s = 1;
    // The four packs as one bank, drawn with its limits.
    config.banks.push(house_of_four_packs());
    let port = free_port();
    config.http.listen = format!("127.0.0.1:{port}");
    let (shutdown, gateway) = start_gateway(&config).await;
    let database = config.database_path();
    assert!(
        eventually(Duration::from_secs(20), || {
            SampleStore::open_read_only(&database)
                .and_then(|s| s.pack_ids())
                .is_ok_and(|ids| ids.len() == 4)
        })
        .await,
        "the four packs are stored"
    );

    tokio::task::spawn_blocking(move || check_live_stream(port))
        .await
        .unwrap();
    let db = database.clone();
    tokio::task::spawn_blocking(move || check_in_browser(&chromium, port, &db))
        .await
        .unwrap();
    let pack = PackId::new("sim-02").unwrap();
    check_history_api(port, &database, &pack);
    check_csv_download(port, &database, &pack).await;

    shutdown.cancel();
    let (_report, connection) = gateway.await.unwrap();
    connection.close(&config.data_dir).await;
}

/// The four simulated packs as one bank, `house`, with default limits.
fn house_of_four_packs() -> packgate::config::BankConfig {
    packgate::config::BankConfig {
        inverter: None,
        name: packgate_protocol::BankId::new("house").unwrap(),
        packs: (1..=4)
            .map(|i| PackId::new(format!("sim-0{i}")).unwrap())
            .collect(),
        pack_max_charge_a: None,
        pack_max_discharge_a: None,
        pack_capacity_ah: None,
        limits: packgate::bank::LimitRules::default(),
    }
}

/// The live stream, read directly: a hello, the health and every pack
/// (the health gathered afresh for the first page open, so it may come
/// after the packs), then the packs again as they are polled.
fn check_live_stream(port: u16) {
    let events = live_events(port, Duration::from_millis(3_500));
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "hello", "{names:?}");
    let mut next_two = names[1..3].to_vec();
    next_two.sort_unstable();
    assert_eq!(next_two, ["overview", "packs"], "{names:?}");
    assert_eq!(events[0].1["configured"], serde_json::json!(PACKS));
    assert_eq!(events[0].1["banks"], serde_json::json!([]));
    let first = 1 + names[1..].iter().position(|n| *n == "packs").unwrap();
    let overview = &events[1 + names[1..].iter().position(|n| *n == "overview").unwrap()].1;
    assert!(
        overview["workers"]
            .as_array()
            .is_some_and(|w| !w.is_empty()),
        "{overview}"
    );
    assert_eq!(events[first].1["packs"].as_array().unwrap().len(), 4);
    let first_seq = events[first].1["packs"][0]["seq"].as_u64().unwrap();
    let later: Vec<u64> = events[first + 1..]
        .iter()
        .filter(|(n, _)| n == "packs")
        .flat_map(|(_, d)| d["packs"].as_array().unwrap().clone())
        .filter(|p| p["id"] == "sim-01")
        .map(|p| p["seq"].as_u64().unwrap())
        .collect();
    assert!(
        later.len() >= 2 && later.iter().all(|s| *s > first_seq),
        "sim-01 after seq {first_seq}: {later:?}"
    );
}

/// The history API's charts hold the store's samples of the span.
fn check_history_api(port: u16, database: &Path, pack: &PackId) {
    let count = |from, to| {
        SampleStore::open_read_only(database)
            .unwrap()
            .count_between(pack, from, to)
            .unwrap()
    };
    let (status, _, body) = get(port, "/api/packs/sim-02/history?range=day", None);
    assert!(status.contains("200"), "{status}");
    let history: Value = serde_json::from_str(&body).unwrap();
    let (from, to) = (
        history["from_ms"].as_i64().unwrap(),
        history["to_ms"].as_i64().unwrap(),
    );
    assert_eq!(to - from, 86_400_000);
    let points = history["points"].as_array().unwrap();
    let in_points: u64 = points.iter().map(|p| p["n"].as_u64().unwrap()).sum();
    assert_eq!(in_points, history["samples"].as_u64().unwrap());
    assert!(in_points > 0 && in_points <= count(from, to), "{in_points}");
    assert!(points.len() <= 300);
}

/// The CSV of a span holds exactly the store's rows of that span, and
/// only packs the gateway knows can be read.
async fn check_csv_download(port: u16, database: &Path, pack: &PackId) {
    let to = packgate::telemetry::now_ms() - 2_000;
    let from = to - 3_600_000;
    assert!(
        eventually(Duration::from_secs(10), || {
            let store = SampleStore::open_read_only(database).unwrap();
            store.count_between(pack, to, i64::MAX).unwrap() > 0
        })
        .await,
        "sim-02 has samples after the span"
    );
    let (status, head, csv) = get(
        port,
        &format!("/api/packs/sim-02/samples.csv?from={from}&to={to}"),
        None,
    );
    assert!(status.contains("200"), "{status}");
    assert!(head.contains("content-type: text/csv"), "{head}");
    assert!(
        head.contains(&format!("filename=\"sim-02_{from}_{to}.csv\"")),
        "{head}"
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with(
        "time,timestamp_ms,pack_id,boot_id,seq,quality,pack_voltage_v,current_a,soc_pct"
    ));
    let store = SampleStore::open_read_only(database).unwrap();
    let (rows, _) = store.page_between(pack, from, to, None, 100_000).unwrap();
    assert!(rows.len() >= 5, "{} rows", rows.len());
    assert_eq!(
        lines.len(),
        rows.len() + 1,
        "a header and a line per stored sample"
    );
    for (line, row) in lines[1..].iter().zip(&rows) {
        let fields: Vec<&str> = line.split(',').collect();
        let s = &row.sample;
        assert_eq!(fields[1], s.timestamp_ms.to_string());
        assert_eq!(fields[2], "sim-02");
        assert_eq!(fields[4], s.seq.to_string());
        assert_eq!(fields[6], s.reading.pack_voltage_v.to_string());
        assert_eq!(fields[7], s.reading.current_a.to_string());
        assert_eq!(fields[8], s.reading.soc_pct.to_string());
    }
    // Only packs the gateway knows; no path through the id.
    let (status, _, _) = get(port, "/api/packs/sim-09/samples.csv", None);
    assert!(status.contains("404"), "{status}");
    let (status, _, _) = get(port, "/api/packs/sim%2F..%2F01/history", None);
    assert!(status.contains("400"), "{status}");
    let (status, _, _) = get(
        port,
        "/api/packs/sim-01/samples.csv?from=0&to=999999999999",
        None,
    );
    assert!(status.contains("400"), "more than 7 days: {status}");
}

fn packgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_packgate"));
    command.env("PACKGATE_CONFIG", "");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_page_needs_a_password_and_a_wrong_one_gets_401() {
    // Listening beyond loopback without a password: refused at start,
    // naming the key, before anything runs.
    let dir = tempfile::tempdir().unwrap();
    let out = packgate()
        .args([
            "run",
            "--sim",
            "1",
            "--http-listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("http.password") && stderr.contains("not a loopback address"),
        "{stderr}"
    );
    assert!(!dir.path().join("samples.db").exists(), "nothing ran");
    let file = dir.path().join("exposed.toml");
    std::fs::write(
        &file,
        "[collect]\npoll_interval_ms = 1000\n\n[http]\nlisten = \"0.0.0.0:9640\"\n",
    )
    .unwrap();
    let out = packgate().arg("check-config").arg(&file).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The key is left out: its section's line is named.
    assert!(stderr.contains("line 4: http.password"), "{stderr}");

    // With a password, every path asks for it.
    let broker = TestBroker::start().await;
    let mut config: Config = sim_config(&broker.url(), broker.dir.path(), 1, 1_000);
    let port = free_port();
    config.http.listen = format!("127.0.0.1:{port}");
    config.http.password = Some(Secret::from("correct horse"));
    let (shutdown, gateway) = start_gateway(&config).await;
    // "packgate:correct horse" and "packgate:wrong"
    let right = "Basic cGFja2dhdGU6Y29ycmVjdCBob3JzZQ==";
    let wrong = "Basic cGFja2dhdGU6d3Jvbmc=";
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server listens");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let checks = tokio::task::spawn_blocking(move || {
        for path in [
            "/",
            "/metrics",
            "/api/packs/sim-01/history",
            "/api/live",
            "/assets/app.js",
        ] {
            let (status, head, _) = get(port, path, None);
            assert!(status.contains("401"), "{path}: {status}");
            assert!(head.contains("www-authenticate: Basic"), "{head}");
            let (status, _, _) = get(port, path, Some(wrong));
            assert!(
                status.contains("401"),
                "{path} with a wrong password: {status}"
            );
        }
        for path in ["/", "/metrics", "/api/packs/sim-01/history"] {
            let (status, _, _) = get(port, path, Some(right));
            assert!(status.contains("200"), "{path} with the password: {status}");
        }
    });
    checks.await.unwrap();
    shutdown.cancel();
    let (_report, connection) = gateway.await.unwrap();
    connection.close(&config.data_dir).await;
}

/// The README's picture of the page: `packgate run --sim 4` as a user
/// starts it, after `PACKGATE_SCREENSHOT_WAIT_S` seconds (default 600) of
/// history, at 1280 x 900 (`PACKGATE_SCREENSHOT_HEIGHT` pixels high), into
/// `docs/web-page.png` (or `PACKGATE_SCREENSHOT_PATH`). Run by hand:
/// `cargo test -p packgate --test web -- --ignored readme_screenshot`.
#[test]
#[ignore = "writes docs/web-page.png; run by hand"]
fn readme_screenshot() {
    let chromium = chromium().expect("chromium is installed");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _gateway = KillOnDrop(
        packgate()
            .args(["run", "--sim", "4", "--http-listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let wait_s: u64 = std::env::var("PACKGATE_SCREENSHOT_WAIT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    std::thread::sleep(Duration::from_secs(wait_s));
    let height: u32 = std::env::var("PACKGATE_SCREENSHOT_HEIGHT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(900);
    let mut browser = Browser::launch(&chromium, 1280, height);
    browser.open(&format!("http://127.0.0.1:{port}/"), 1280, height);
    let ready = browser.wait_for(
        "document.querySelectorAll('article.pack').length === 4 && \
         Number(document.getElementById('chart-cells').dataset.points) > 2 && \
         document.querySelectorAll('#workers td.state.alive').length >= 5",
        Duration::from_secs(60),
        |v| v == true,
    );
    assert_eq!(ready, true);
    // Let the ages and the live values settle for a moment.
    std::thread::sleep(Duration::from_millis(1_500));
    let path = std::env::var_os("PACKGATE_SCREENSHOT_PATH").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/web-page.png"),
        PathBuf::from,
    );
    browser.screenshot(&path);
    let size = std::fs::metadata(&path).unwrap().len();
    eprintln!("{}: {size} bytes", path.display());
}
