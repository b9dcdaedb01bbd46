//! The `packgate` command as a user runs it.

mod support;

use std::process::Command;

fn packgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_packgate"))
}

#[test]
fn a_missing_nats_server_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[broker]\nnats_server_path = \"/nonexistent/nats-server\"\n",
    )
    .unwrap();
    let out = packgate()
        .args([
            "run",
            "--http-listen",
            "127.0.0.1:0",
            "--sim",
            "1",
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("apt-get install nats-server"), "{stderr}");
}

#[test]
fn every_command_has_help() {
    for command in [
        vec![],
        vec!["run"],
        vec!["collect"],
        vec!["data"],
        vec!["control"],
        vec!["monitor"],
        vec!["http"],
        vec!["mqtt"],
        vec!["bank"],
        vec!["check-config"],
        vec!["query", "samples"],
        vec!["watch"],
        vec!["bench"],
        vec!["sunspec", "scan"],
        vec!["sim"],
    ] {
        let out = packgate().args(&command).arg("--help").output().unwrap();
        assert!(out.status.success(), "{command:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{command:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_then_query_shows_the_stored_samples() {
    let broker = support::TestBroker::start().await;
    let data_dir = broker.dir.path().join("data");
    let mut gateway = packgate()
        .args([
            "run",
            "--http-listen",
            "127.0.0.1:0",
            "--sim",
            "2",
            "--nats-url",
            &broker.url(),
            "--data-dir",
        ])
        .arg(&data_dir)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let database = data_dir.join("samples.db");
    assert!(
        support::eventually(std::time::Duration::from_secs(20), || {
            packgate::store::SampleStore::open_read_only(&database)
                .and_then(|s| s.count())
                .unwrap_or(0)
                >= 4
        })
        .await
    );
    support::sigterm_and_wait(&mut gateway);

    for (format, needle) in [
        ("table", "fresh"),
        ("json", "\"pack_id\":\"sim-01\""),
        ("csv", "sim-01"),
    ] {
        let out = packgate()
            .args([
                "query",
                "samples",
                "--pack",
                "sim-01",
                "--limit",
                "3",
                "--format",
                format,
                "--data-dir",
            ])
            .arg(&data_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(needle), "{format}: {stdout}");
    }
}

#[test]
fn profiles_list_show_and_check() {
    let out = packgate().args(["profiles", "list"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in ["packgate-sim", "sunspec-802", "jk-bms-pb", "seplos-v3"] {
        assert!(stdout.contains(name), "{name} missing: {stdout}");
    }
    let out = packgate()
        .args(["profiles", "show", "packgate-sim"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("mine.toml");
    std::fs::write(&good, &out.stdout).unwrap();
    let out = packgate()
        .args(["profiles", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid profile"));

    // The same profile with a cell array pointing outside its block.
    let text = String::from_utf8_lossy(&std::fs::read(&good).unwrap())
        .replace("offset = 16", "offset = 70");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let out = packgate()
        .args(["profiles", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cells"), "{stderr}");
}

#[test]
fn can_decode_replays_a_candump_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bus.log");
    // SoC 80 %, SoH 99 %; 53.00 V, -12.5 A, 24.0 °C; one garbled line.
    std::fs::write(
        &log,
        "(1700000000.000000) can0 355#50006300\n(1700000000.010000) can0 356#B41483FFF000\nnot a candump line\n",
    )
    .unwrap();
    let out = packgate()
        .args(["can", "decode"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("80"), "{stdout}");
    assert!(
        stdout.contains("53.00") || stdout.contains("53.0"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_not_up_yet_is_waited_for() {
    use packgate::broker::{server::free_port, NatsServer, NatsServerOptions};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let data_dir = dir.path().join("data");
    let mut gateway = packgate()
        .args([
            "run",
            "--http-listen",
            "127.0.0.1:0",
            "--sim",
            "1",
            "--nats-url",
            &format!("nats://127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data_dir)
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    // The gateway starts first and keeps waiting; the broker comes later.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        gateway.try_wait().unwrap().is_none(),
        "the gateway gave up on a broker that was not up yet"
    );
    let mut options = NatsServerOptions::new(dir.path().join("store"));
    options.port = Some(port);
    if let Some(path) = std::env::var_os("PACKGATE_NATS_SERVER") {
        options.executable = path.into();
    }
    let mut server = NatsServer::start(options).await.unwrap();
    let database = data_dir.join("samples.db");
    let stored = support::eventually(std::time::Duration::from_secs(30), || {
        packgate::store::SampleStore::open_read_only(&database)
            .and_then(|s| s.count())
            .unwrap_or(0)
            >= 3
    })
    .await;
    support::sigterm_and_wait(&mut gateway);
    server.stop().await;
    assert!(stored, "nothing stored after the broker came up");
}

/// `packgate command` against a broker with a control worker for sim-01.
#[allow(clippy::unwrap_used)] // test code: a failed start should fail loudly
async fn send(rig: &support::control::Rig, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_packgate"))
        .args(["command", "--nats-url"])
        .arg(rig.broker.url())
        .arg("--data-dir")
        .arg(&rig.config.data_dir)
        .args(args)
        .output()
        .await
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_takes_negative_values_rounds_read_backs_and_names_a_reused_id() {
    use support::control::{pack, Rig, TestBus, APPLY, CHARGE};
    let rig = Rig::start().await;
    let bus = TestBus::start(&rig.client, &pack("sim-01"), APPLY).await;
    let set = |id: &'static str, value: &'static str| {
        ["--pack", "sim-01", "--id", id, "set", CHARGE, value]
    };

    // A negative value needs no `--`: it reaches the worker, whose profile
    // refuses it.
    let (ok, _, stderr) = send(&rig, &set("neg", "-5")).await;
    assert!(!ok);
    assert!(stderr.contains("profile's bounds"), "{stderr}");

    // The read-back value is shown rounded.
    let (ok, stdout, stderr) = send(&rig, &set("dup", "61.3")).await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "dup: applied, read back 61.3");
    assert!((bus.charge_limit() - 61.3).abs() < 1e-9);

    // The same id again for the same command: its result, said plainly.
    let (ok, stdout, stderr) = send(&rig, &set("dup", "61.3")).await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("already used for the same command"),
        "{stderr}"
    );
    assert_eq!(stdout.trim(), "dup: applied, read back 61.3");

    // The same id for another value: refused, saying what the id did.
    let (ok, stdout, stderr) = send(&rig, &set("dup", "22")).await;
    assert!(!ok, "{stdout}");
    for needle in [
        "already used",
        "61.3",
        "applied, read back 61.3",
        "22",
        "not applied",
    ] {
        assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
    }
    assert!((bus.charge_limit() - 61.3).abs() < 1e-9);

    // Not a number: refused by the worker, with this command's id.
    let (ok, _, stderr) = send(&rig, &set("nan", "NaN")).await;
    assert!(!ok);
    assert!(stderr.contains("nan: rejected"), "{stderr}");
    assert!(stderr.contains("not a finite number"), "{stderr}");
    assert_eq!(rig.audit("nan").outcome.as_deref(), Some("rejected"));
    rig.stop().await;
}

/// `packgate ARGS` with `$PACKGATE_CONFIG` set to `config` (`""`: the
/// built-in defaults): its exit, stdout and stderr.
#[allow(clippy::unwrap_used)] // test code: a failed start should fail loudly
fn with_config_env(config: &std::ffi::OsStr, args: &[&str]) -> (bool, String, String) {
    let out = packgate()
        .args(args)
        .env("PACKGATE_CONFIG", config)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_reads_the_configuration_packgate_config_names() {
    let broker = support::TestBroker::start().await;
    let data_dir = broker.dir.path().join("data");
    let config = broker.dir.path().join("site.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[broker]\nurl = {:?}\n[collect]\npoll_interval_ms = 200\n\
             [http]\nlisten = \"127.0.0.1:0\"\n",
            data_dir.display().to_string(),
            broker.url(),
        ),
    )
    .unwrap();
    // The gateway too: no --config, no --nats-url. (Its --data-dir is
    // the file's, so that a build which ignored the file would not write
    // to the system's data directory.)
    let mut gateway = support::KillOnDrop(
        packgate()
            .args([
                "run",
                "--http-listen",
                "127.0.0.1:0",
                "--sim",
                "2",
                "--data-dir",
            ])
            .arg(&data_dir)
            .env("PACKGATE_CONFIG", &config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let database = data_dir.join("samples.db");
    let stored = support::eventually(std::time::Duration::from_secs(30), || {
        packgate::store::SampleStore::open_read_only(&database)
            .and_then(|s| s.count())
            .unwrap_or(0)
            >= 4
    })
    .await;
    let env = config.as_os_str();
    let named = format!("configuration {} ($PACKGATE_CONFIG)", config.display());

    let (ok, stdout, stderr) = with_config_env(env, &["status"]);
    assert!(stored && ok, "{stdout}{stderr}");
    assert!(stdout.contains(&named), "{stdout}");
    assert!(
        stdout.contains(&format!("data in {}", data_dir.display())),
        "{stdout}"
    );
    assert!(stdout.contains("Broker: reachable"), "{stdout}");
    assert!(
        stdout.contains("sim-01") && stdout.contains("online"),
        "{stdout}"
    );
    // Which file was read is in the debug log.
    assert!(
        stderr.contains("configuration") && stderr.contains(&config.display().to_string()),
        "{stderr}"
    );

    let (ok, stdout, stderr) = with_config_env(env, &["query", "samples", "--pack", "sim-02"]);
    assert!(ok && stdout.contains("fresh"), "{stdout}{stderr}");
    let (ok, stdout, stderr) = with_config_env(env, &["watch", "--once"]);
    assert!(ok && stdout.contains("sim-01"), "{stdout}{stderr}");
    let (ok, stdout, stderr) = with_config_env(
        env,
        &[
            "command",
            "--pack",
            "sim-01",
            "set",
            "charge_current_limit_a",
            "40",
        ],
    );
    assert!(ok && stdout.contains("applied"), "{stdout}{stderr}");
    let (ok, stdout, stderr) = with_config_env(env, &["check-config"]);
    assert!(ok && stdout.contains("valid, 0 packs"), "{stdout}{stderr}");

    // --config wins over the environment.
    let missing = broker.dir.path().join("missing.toml");
    let (ok, stdout, stderr) = packgate()
        .args(["status", "--config"])
        .arg(&config)
        .env("PACKGATE_CONFIG", &missing)
        .output()
        .map(|o| {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (o.status.success(), text(&o.stdout), text(&o.stderr))
        })
        .unwrap();
    assert!(
        ok && stdout.contains("Broker: reachable"),
        "{stdout}{stderr}"
    );
    // A file the environment names must exist: no silent defaults.
    let (ok, _, stderr) = with_config_env(missing.as_os_str(), &["status"]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("($PACKGATE_CONFIG)") && stderr.contains("cannot read"),
        "{stderr}"
    );
    // Set but empty: the built-in defaults, said so.
    let (_, stdout, _) = with_config_env(std::ffi::OsStr::new(""), &["status"]);
    assert!(
        stdout.contains("configuration none, the built-in defaults"),
        "{stdout}"
    );
    support::sigterm_and_wait(&mut gateway.0);
}

#[test]
fn bench_polls_modbus_tcp_devices_of_a_separate_process_with_every_worker() {
    let out = packgate()
        .args(["bench", "--transport", "modbus-tcp", "--devices", "3"])
        .args([
            "--duration",
            "6",
            "--warm-up",
            "2",
            "--all-workers",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = stdout.lines().last().unwrap();
    let report: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(report["transport"], "modbus-tcp");
    assert_eq!(report["packs"], 3);
    assert_eq!(report["registers_per_poll"], 64);
    let workers: Vec<&str> = report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(workers, ["collect", "data", "control", "monitor", "http"]);
    // Three devices polled once a second for about six seconds, each
    // sample stored once.
    let stored = report["stored"].as_u64().unwrap();
    assert!((9..=24).contains(&stored), "{json}");
    assert_eq!(report["published"].as_u64().unwrap(), stored, "{json}");
    assert_eq!(report["lost"], 0);
    assert_eq!(report["duplicated"], 0);
    let steady = &report["steady"];
    assert!(steady["window_s"].as_f64().unwrap() >= 3.5, "{json}");
    assert!(steady["gateway_rss_mib"].as_f64().unwrap() > 1.0, "{json}");
    assert!(steady["broker_rss_mib"].as_f64().unwrap() > 1.0, "{json}");
    // The window's latency: of samples stored in it, none above the whole
    // run's largest.
    let (p50, p99, max) = (
        steady["latency_ms_p50"].as_f64().unwrap(),
        steady["latency_ms_p99"].as_f64().unwrap(),
        steady["latency_ms_max"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{json}");
    assert!(max <= report["latency_ms_max"].as_f64().unwrap(), "{json}");
}
