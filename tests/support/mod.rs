//! Shared parts of the end-to-end tests: a real nats-server per test on a
//! free port with a temporary store, configurations with simulated packs,
//! and checks on what reached SQLite.

// Test harness: a failed set-up step should fail the test loudly.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod browser;
pub mod cloud;
pub mod cloud_process;
pub mod cluster;
pub mod control;
pub mod fleet;
pub mod notify;
pub mod tls;
pub mod web;
pub mod wire;

use packgate::broker::{NatsServer, NatsServerOptions};
use packgate::config::Config;
use packgate::store::SampleStore;
use packgate_protocol::{BootId, PackId};

/// A nats-server for one test, with its store in a temporary directory.
pub struct TestBroker {
    pub server: NatsServer,
    pub dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start() -> Self {
        Self::start_with_config(None).await
    }

    /// A server with `text` in its configuration file (an `accounts` or a
    /// `tls` block, say).
    pub async fn start_with_config(text: Option<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut options = NatsServerOptions::new(dir.path().join("store"));
        options.config_text = text;
        if let Some(path) = std::env::var_os("PACKGATE_NATS_SERVER") {
            options.executable = PathBuf::from(path);
        }
        let server = NatsServer::start(options)
            .await
            .expect("nats-server starts");
        Self { server, dir }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}

/// A configuration for `packs` simulated packs polled every
/// `poll_interval_ms`, against `url`, with its data in `data_dir`.
pub fn sim_config(url: &str, data_dir: &Path, packs: usize, poll_interval_ms: u64) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_owned(),
        ..Config::default()
    };
    config.broker.url = Some(url.to_owned());
    config.broker.request_timeout_ms = 2_000;
    config.collect.poll_interval_ms = poll_interval_ms;
    config.data.shutdown_drain_ms = 10_000;
    // Tests run side by side: any free port, never the fixed default.
    config.http.listen = "127.0.0.1:0".into();
    config.add_sim_packs(packs).unwrap();
    config
}

/// Every stored `(boot, seq)` per pack, in insertion order.
pub fn stored_keys(database: &Path) -> BTreeMap<PackId, Vec<(BootId, u64)>> {
    let store = SampleStore::open_read_only(database).unwrap();
    store
        .pack_ids()
        .unwrap()
        .into_iter()
        .map(|pack| {
            let keys = store.keys_in_insert_order(&pack).unwrap();
            (pack, keys)
        })
        .collect()
}

/// Asserts that each pack's samples are stored exactly once, with
/// sequence numbers 1..=n of one boot and no gap; returns the total.
/// With `in_order`, the rows must also have been inserted in sequence order.
pub fn assert_exactly_once(database: &Path, packs: usize, in_order: bool) -> u64 {
    let keys = stored_keys(database);
    assert_eq!(
        keys.len(),
        packs,
        "packs in the database: {:?}",
        keys.keys()
    );
    let mut total = 0;
    for (pack, rows) in keys {
        assert!(!rows.is_empty(), "{pack}: nothing stored");
        let boot = rows[0].0;
        assert!(
            rows.iter().all(|(b, _)| *b == boot),
            "{pack}: several boots"
        );
        let mut seqs: Vec<u64> = rows.iter().map(|(_, s)| *s).collect();
        if in_order {
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{pack}: out of order: {seqs:?}"
            );
        }
        seqs.sort_unstable();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(
            seqs, expected,
            "{pack}: gap or duplicate in sequence numbers"
        );
        total += rows.len() as u64;
    }
    total
}

/// Samples in the store at `database` now; 0 while it cannot be read
/// (not created yet, or mid-write).
pub fn stored_count(database: &Path) -> u64 {
    SampleStore::open_read_only(database)
        .and_then(|store| store.count())
        .unwrap_or(0)
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Number of messages in a stream.
pub async fn stream_messages(url: &str, stream: &str) -> u64 {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(stream).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// `count` distinct free loopback ports: each listener is held until all
/// are picked, where `free_port` called in a row may hand out one port
/// twice.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A free loopback port, for a server this test starts (bound, then
/// released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `signal` to `pid`, a process this test started and has not
/// reaped (directly, or through a shell that has not reaped it).
pub fn signal(pid: u32, signal: i32) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on a process this test started and that is not
    // reaped yet, so the pid cannot belong to another process.
    unsafe {
        libc::kill(i32::try_from(pid).unwrap(), signal);
    }
}

/// The `key=value` number in the last line of `log` mentioning `what`.
pub fn logged_number(log: &str, what: &str, key: &str) -> Option<u64> {
    let line = log.lines().rev().find(|line| line.contains(what))?;
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Sends SIGTERM to a child process of this test and waits for it; the
/// child must exit cleanly.
pub fn sigterm_and_wait(child: &mut std::process::Child) {
    signal(child.id(), libc::SIGTERM);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}");
}

/// A child process of this test, killed (SIGKILL) and reaped if the test
/// fails before stopping it.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
