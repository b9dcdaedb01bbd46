//! The cloud link's faults against real nats-servers, each said with its
//! cause: a certificate the gateway does not trust, one for another name,
//! TLS required of a server without it; files the configuration names
//! checked at start and by `check-config`; control requests announced only
//! once the cloud has taken the connection.

// Test harness: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use packgate::telemetry::snapshot::MetricsSource;
use packgate::workers::cloud::{run_cloud, CloudConfig, CloudError, CloudMetrics};
use support::cloud::*;
use support::tls::TestPki;
use support::*;
use tokio_util::sync::CancellationToken;

/// A local broker with the streams the cloud worker reads.
async fn local_broker() -> (TestBroker, async_nats::Client, jetstream::Context) {
    let local = TestBroker::start().await;
    let client = async_nats::connect(local.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    packgate::broker::ensure_streams(&js, &Default::default())
        .await
        .unwrap();
    (local, client, js)
}

/// Lines logged at WARN or ERROR that name `url` and say `what`.
fn fault_lines(url: &str, what: &str) -> usize {
    logs()
        .lines()
        .filter(|l| (l.contains("WARN") || l.contains("ERROR")) && l.contains(url))
        .filter(|l| l.contains(what))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_faults_are_named_with_their_cause_once_each() {
    let _serial = SERIAL.lock().await;
    capture_logs();
    let pki = TestPki::new();
    let (_local, client, js) = local_broker().await;
    let good = TestBroker::start_with_config(Some(pki.server_block("server"))).await;
    let elsewhere = TestBroker::start_with_config(Some(pki.server_block("elsewhere"))).await;
    let plain = TestBroker::start().await;
    let tls_url = |b: &TestBroker| format!("tls://127.0.0.1:{}", b.server.port());

    // (name, URL, CA file, require TLS, what the fault says)
    let cases: [(&str, String, PathBuf, bool, &str); 3] = [
        (
            "untrusted",
            tls_url(&good),
            pki.path("other-ca.pem"),
            false,
            "certificate unknown",
        ),
        (
            "mismatch",
            tls_url(&elsewhere),
            pki.path("ca.pem"),
            false,
            "name mismatch",
        ),
        (
            "plain",
            plain.url(),
            pki.path("ca.pem"),
            true,
            "TLS required",
        ),
    ];
    let shutdown = CancellationToken::new();
    let mut workers = Vec::new();
    let mut failing = Vec::new();
    for (name, url, ca, require_tls, says) in &cases {
        let config = CloudConfig {
            tls_ca_file: Some(ca.clone()),
            require_tls: *require_tls,
            ..cloud_config(url, &format!("gw-{name}"))
        };
        let metrics = Arc::new(CloudMetrics::default());
        workers.push(start_cloud(&config, &client, &js, &metrics, &shutdown));
        failing.push((*name, url.clone(), *says, metrics));
    }
    // The right CA and name: the link comes up, so TLS itself works here.
    let trusted = CloudConfig {
        tls_ca_file: Some(pki.path("ca.pem")),
        ..cloud_config(&tls_url(&good), "gw-trusted")
    };
    let trusted_metrics = Arc::new(CloudMetrics::default());
    workers.push(start_cloud(
        &trusted,
        &client,
        &js,
        &trusted_metrics,
        &shutdown,
    ));

    for (name, _, says, metrics) in &failing {
        wait_for(name, Duration::from_secs(20), async || {
            metrics.last_error().is_some_and(|e| e.contains(says))
        })
        .await;
    }
    wait_for("the trusted link", Duration::from_secs(20), async || {
        trusted_metrics.link_up()
    })
    .await;
    // More attempts, and more diagnoses of them: the cause is still known,
    // and was said once.
    tokio::time::sleep(Duration::from_secs(12)).await;
    for (name, url, says, metrics) in &failing {
        assert!(!metrics.link_up(), "{name}: link up");
        let error = metrics.last_error().unwrap_or_default();
        assert!(error.contains(says), "{name}: {error}");
        let notes = metrics.notes();
        assert!(
            notes
                .iter()
                .any(|(n, text)| n == "link_error" && text.contains(says)),
            "{name}: notes {notes:?}"
        );
        let lines = fault_lines(url, says);
        assert_eq!(lines, 1, "{name}: said {lines} times\n{}", logs());
        println!("{name}: {error}");
    }
    assert!(trusted_metrics.last_error().is_none());
    shutdown.cancel();
    for worker in workers {
        worker.await.unwrap();
    }
}

/// `packgate check-config FILE` on a configuration whose `[cloud]` names
/// `key = path`.
fn check_config_with(dir: &std::path::Path, key: &str, path: &std::path::Path) -> (bool, String) {
    let file = dir.join(format!("{key}.toml"));
    std::fs::write(
        &file,
        format!(
            "[cloud]\nenabled = true\nurls = [\"tls://127.0.0.1:4222\"]\n\
             gateway_id = \"site-7\"\n{key} = {:?}\n",
            path.display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_packgate"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_the_cloud_section_names_are_checked_at_start_and_by_check_config() {
    let _serial = SERIAL.lock().await;
    let (_local, client, js) = local_broker().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    for key in ["tls_ca_file", "creds_file"] {
        let mut config = cloud_config("tls://127.0.0.1:4222", "gw-files");
        match key {
            "tls_ca_file" => config.tls_ca_file = Some(missing.clone()),
            _ => config.creds_file = Some(missing.clone()),
        }
        // The worker refuses to start, naming the key and the file.
        let started = tokio::time::timeout(
            Duration::from_secs(5),
            run_cloud(
                &config,
                client.clone(),
                js.clone(),
                Arc::new(CloudMetrics::default()),
                CancellationToken::new(),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{key}: the worker started without its file"));
        match started {
            Err(CloudError::Config(error)) => {
                assert_eq!(error.key, format!("cloud.{key}"));
                assert!(error.reason.contains("missing.pem"), "{error}");
            }
            other => panic!("{key}: {other:?}"),
        }
        let (ok, stderr) = check_config_with(dir.path(), key, &missing);
        assert!(!ok, "check-config accepted a missing {key}");
        assert!(
            stderr.contains(&format!("cloud.{key}")) && stderr.contains("missing.pem"),
            "{stderr}"
        );
    }
    // Files that are there pass.
    let pki = TestPki::new();
    let (ok, stderr) = check_config_with(dir.path(), "tls_ca_file", &pki.path("ca.pem"));
    assert!(ok, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_requests_are_announced_only_once_the_cloud_took_the_connection() {
    let _serial = SERIAL.lock().await;
    capture_logs();
    let (_local, client, js) = local_broker().await;
    let cloud = TestBroker::start_with_config(Some(
        "accounts { CLOUD { users: [{ user: gateway, password: right }] } }\n".to_owned(),
    ))
    .await;
    let gw = "gw-announce";
    let announced = || {
        logs()
            .lines()
            .filter(|l| l.contains("serving control requests from the cloud"))
            .filter(|l| l.contains(&format!("packgate.{gw}.control")))
            .count()
    };
    let mut config = cloud_config(&cloud.url(), gw);
    config.user = Some("gateway".into());
    config.password = Some("wrong".into());
    let metrics = Arc::new(CloudMetrics::default());
    let shutdown = CancellationToken::new();
    let worker = start_cloud(&config, &client, &js, &metrics, &shutdown);
    wait_for("rejected attempts", Duration::from_secs(10), async || {
        metrics.auth_failures.get() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        announced(),
        0,
        "announced while the credentials are refused"
    );
    shutdown.cancel();
    worker.await.unwrap();

    config.password = Some("right".into());
    let metrics = Arc::new(CloudMetrics::default());
    let shutdown = CancellationToken::new();
    let worker = start_cloud(&config, &client, &js, &metrics, &shutdown);
    wait_for("the announcement", Duration::from_secs(10), async || {
        announced() == 1
    })
    .await;
    assert!(metrics.link_up());
    shutdown.cancel();
    worker.await.unwrap();
}
