//! Firmware-style behaviour end to end, through a real nats-server: a wall
//! clock that jumps backwards mid-run, and a data directory that fills up.

// Test code: a failed set-up step should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use packgate::runtime::Broker;
use packgate::store::SampleStore;
use packgate::workers::collect::clock::WallClock;
use packgate::workers::collect::{Collector, PackSet};
use packgate::workers::data::{run_data, DataMetrics};
use packgate_protocol::names;
use packgate_protocol::sample::ClockQuality;
use support::*;
use tokio_util::sync::CancellationToken;

/// The system clock moved by an offset the test sets.
#[derive(Debug, Default)]
struct ShiftedClock {
    offset_ms: AtomicI64,
}

impl WallClock for ShiftedClock {
    fn now_ms(&self) -> i64 {
        packgate::telemetry::now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

fn stored_count(database: &Path) -> u64 {
    SampleStore::open_read_only(database)
        .and_then(|s| s.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backward_clock_jump_keeps_the_order_and_marks_the_samples() {
    let broker = TestBroker::start().await;
    let packs = 3;
    let config = sim_config(&broker.url(), broker.dir.path(), packs, 50);
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let connection = Broker::open(&config, "test").await.unwrap();
    let stop_collect = CancellationToken::new();
    let stop_data = CancellationToken::new();
    connection
        .ensure_streams(&config, &stop_data)
        .await
        .unwrap();
    let wall = Arc::new(ShiftedClock::default());
    let collector = Collector::start_with_clock(
        &config.collect,
        PackSet::from_config(&config).unwrap(),
        connection.js.clone(),
        connection.client.clone(),
        stop_collect.clone(),
        wall.clone(),
    );
    let data_metrics = Arc::new(DataMetrics::default());
    let data = tokio::spawn(run_data(
        config.data.clone(),
        config.database_path(),
        connection.js.clone(),
        Arc::clone(&data_metrics),
        stop_data.clone(),
    ));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let jumped_at_ms = packgate::telemetry::now_ms();
    wall.offset_ms.store(-3_600_000, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_collect.cancel();
    let metrics = Arc::clone(&collector.metrics);
    let report = collector.finish().await;
    assert_eq!(report.unpublished, 0);
    assert_eq!(metrics.samples_dropped.get(), 0);
    assert_eq!(metrics.clock_jumps.get(), 1, "one jump, counted once");
    let published = metrics.samples_published.get() + metrics.samples_duplicate.get();
    let database = config.database_path();
    assert!(
        eventually(Duration::from_secs(20), || stored_count(&database)
            >= published)
        .await,
        "stored {} of {published}",
        stored_count(&database)
    );
    stop_data.cancel();
    data.await.unwrap().unwrap();

    // Sequence order holds, and the rows were inserted in it, although
    // the timestamps went back an hour.
    let stored = assert_exactly_once(&database, packs, true);
    assert_eq!(stored, published);
    let store = SampleStore::open_read_only(&database).unwrap();
    for pack in store.pack_ids().unwrap() {
        let mut rows = store.latest(&pack, usize::MAX).unwrap();
        rows.reverse(); // insertion order, which is seq order
        let samples: Vec<_> = rows.into_iter().map(|r| r.sample).collect();
        let backwards: Vec<usize> = samples
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[1].timestamp_ms < w[0].timestamp_ms)
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(backwards.len(), 1, "{pack}: one step back: {backwards:?}");
        let (before, after) = samples.split_at(backwards[0]);
        assert!(before.len() >= 10 && after.len() >= 10, "{pack}");
        assert!(
            before
                .iter()
                .all(|s| s.clock == ClockQuality::Trusted && s.timestamp_ms <= jumped_at_ms + 100),
            "{pack}: samples before the jump are trusted"
        );
        assert!(
            after
                .iter()
                .all(|s| s.clock == ClockQuality::Untrusted
                    && s.timestamp_ms < jumped_at_ms - 3_500_000),
            "{pack}: samples after the jump are untrusted"
        );
    }
    connection.close(&config.data_dir).await;
}

/// `packgate data` as a child, its log lines collected (and echoed). Its
/// stderr is a pipe, not a terminal: its lines must come without colour
/// codes (no `NO_COLOR` set here, so the gateway's own choice is tested).
fn spawn_data_worker(url: &str, data_dir: &Path, log: Arc<Mutex<Vec<String>>>) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_packgate"))
        .args(["data", "--nats-url", url, "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info,async_nats=off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("packgate data starts");
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[packgate data] {line}");
            log.lock().unwrap().push(line);
        }
    });
    child
}

/// Sets the soft file-size limit of process `pid` (the hard one stays
/// unlimited, so it can be raised again).
fn set_file_size_limit(pid: u32, bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    let pid = libc::pid_t::try_from(pid).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: `limit` is a valid rlimit for the call's duration; the old
    // limit is not asked for (null). The target is our own child.
    let rc = unsafe {
        libc::prlimit(
            pid,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut::<libc::rlimit>(),
        )
    };
    assert_eq!(
        rc,
        0,
        "prlimit refused: {}",
        std::io::Error::last_os_error()
    );
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Whether process `pid` ignores SIGXFSZ (its `SigIgn` mask in /proc).
fn ignores_sigxfsz(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    mask & (1 << (libc::SIGXFSZ - 1)) != 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_storing_without_acking_and_storing_resumes() {
    let broker = TestBroker::start().await;
    let packs = 4;
    let config = sim_config(&broker.url(), broker.dir.path(), packs, 20);
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let connection = Broker::open(&config, "test").await.unwrap();
    let stop_collect = CancellationToken::new();
    connection
        .ensure_streams(&config, &stop_collect)
        .await
        .unwrap();
    let collector = Collector::start(
        &config.collect,
        PackSet::from_config(&config).unwrap(),
        connection.js.clone(),
        connection.client.clone(),
        stop_collect.clone(),
    );
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut worker = spawn_data_worker(&broker.url(), broker.dir.path(), Arc::clone(&log));
    let pid = worker.id();
    let database = config.database_path();
    assert!(
        eventually(Duration::from_secs(20), || stored_count(&database) > 200).await,
        "the data worker stores nothing"
    );
    assert!(
        ignores_sigxfsz(pid),
        "`packgate data` must ignore SIGXFSZ (platform::ignore_sigxfsz in main)"
    );

    // The disk is full: no file of the worker may grow past its size now.
    let wal = database.with_extension("db-wal");
    let limit = file_len(&database).max(file_len(&wal)) + 16 * 1024;
    set_file_size_limit(pid, limit);
    // Storing stops (within what the files' slack still holds) ...
    let mut last = stored_count(&database);
    let mut steady_since = tokio::time::Instant::now();
    let stopped = eventually(Duration::from_secs(60), || {
        let now = stored_count(&database);
        if now != last {
            last = now;
            steady_since = tokio::time::Instant::now();
        }
        steady_since.elapsed() >= Duration::from_secs(2)
    })
    .await;
    assert!(stopped, "storing never stopped at the file-size limit");
    let full_at = stored_count(&database);
    let published_then = collector.metrics.samples_published.get();
    // ... and stays stopped while polling and publishing go on, the
    // worker alive and saying why.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stored_count(&database), full_at, "stored past the limit");
    assert!(
        collector.metrics.samples_published.get() > published_then + 100,
        "publishing went on"
    );
    assert!(worker.try_wait().unwrap().is_none(), "the data worker died");
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("cannot commit samples") && l.contains("disk_full=true")),
        "no disk-full error logged"
    );
    assert!(file_len(&database) <= limit && file_len(&wal) <= limit);

    // Space returns: everything arrives, once, in order of sequence.
    set_file_size_limit(pid, libc::RLIM_INFINITY);
    assert!(
        eventually(Duration::from_secs(30), || stored_count(&database)
            > full_at + 100)
        .await,
        "storing did not resume"
    );
    assert!(log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("samples are stored again")));
    stop_collect.cancel();
    let metrics = Arc::clone(&collector.metrics);
    let report = collector.finish().await;
    assert_eq!(report.unpublished, 0);
    assert_eq!(metrics.samples_dropped.get(), 0);
    let published = metrics.samples_published.get() + metrics.samples_duplicate.get();
    assert!(
        eventually(Duration::from_secs(30), || stored_count(&database)
            >= published)
        .await,
        "stored {} of {published}",
        stored_count(&database)
    );
    let pid = libc::pid_t::try_from(pid).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: signalling our own child, not yet reaped.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let status = worker.wait().unwrap();
    assert!(status.success(), "data worker exit: {status}");
    let stored = assert_exactly_once(&database, packs, false);
    assert_eq!(stored, published);
    let lines = log.lock().unwrap().clone();
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|line| !line.contains('\u{1b}')),
        "colour codes in a log written to a pipe: {:?}",
        lines.iter().find(|line| line.contains('\u{1b}'))
    );
    let in_stream = stream_messages(&broker.url(), names::SAMPLES_STREAM.name).await;
    assert_eq!(in_stream, stored, "stream {in_stream}, stored {stored}");
    connection.close(&config.data_dir).await;
}
