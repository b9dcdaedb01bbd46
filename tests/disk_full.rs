//! A full disk under a running gateway: the data directory (and, with the
//! embedded broker, its store) on a small tmpfs, filled to the last byte
//! while packs are polled, then freed. Nothing published may be lost or stored twice,
//! the gateway must recover by itself, and the service manager's watchdog
//! must not be fed while samples go nowhere.
//!
//! The tmpfs is mounted in a private mount namespace of an unprivileged
//! user namespace (`unshare -rm`), so the test needs no root; the test
//! reaches the files through `/proc/PID/root`. Where the kernel refuses
//! user namespaces the test says so and passes without running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use support::notify::Notifications;
use support::*;

/// Size of the data directory's filesystem.
const DISK_MB: u32 = 48;
/// How long the disk stays full.
const FULL_FOR: Duration = Duration::from_secs(8);
/// Longer than the data worker's delay before a refused batch comes back.
const REDELIVERY_WAIT: Duration = Duration::from_secs(5);
/// The watchdog interval given to the gateway.
const WATCHDOG: Duration = Duration::from_millis(500);

fn user_namespaces_work() -> bool {
    Command::new("unshare")
        .args(["-rm", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where the gateway's broker runs, and on which disk its store is.
#[derive(Debug, Clone, PartialEq)]
enum BrokerKind {
    /// The gateway's own, its store on the small disk.
    Embedded,
    /// A running one at this URL, its store elsewhere.
    ExternalElsewhere(String),
    /// One of its own, its store on the small disk, restarted by its
    /// service manager.
    ExternalOnTheSameDisk,
}

/// A gateway in a private mount namespace whose `data_dir` is a small
/// tmpfs.
struct Confined {
    shell: Child,
    outside: tempfile::TempDir,
    data_dir: PathBuf,
}

impl Confined {
    fn start(broker: BrokerKind) -> Self {
        let outside = tempfile::tempdir().unwrap();
        let data_dir = outside.path().join("data");
        std::fs::create_dir(&data_dir).unwrap();
        let nats = std::env::var("PACKGATE_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let mut nats_port = String::new();
        let broker_key = match &broker {
            BrokerKind::Embedded => format!("nats_server_path = \"{nats}\""),
            BrokerKind::ExternalElsewhere(url) => format!("url = \"{url}\""),
            BrokerKind::ExternalOnTheSameDisk => {
                let port = packgate::broker::free_port().unwrap();
                nats_port = port.to_string();
                format!("url = \"nats://127.0.0.1:{port}\"")
            }
        };
        let config = format!("[collect]\npoll_interval_ms = 100\n[broker]\n{broker_key}\n");
        std::fs::write(outside.path().join("packgate.toml"), config).unwrap();
        // With NATS_PORT, a nats-server of its own with its store on the
        // small disk, started again whenever it exits, as its service
        // manager would.
        let script = "mount -t tmpfs -o size=${DISK_MB}m packgate-test \"$1\" || exit 97; \
             if [ -n \"$NATS_PORT\" ]; then \
               ( while [ ! -f \"$2/nats.stop\" ]; do \
                   \"$NATS\" -a 127.0.0.1 -p \"$NATS_PORT\" -js -sd \"$1/external\" >>\"$2/nats.log\" 2>&1 & \
                   echo $! >\"$2/nats.pid\"; wait $!; done ) & \
               sleep 1; \
             fi; \
             \"$3\" run --sim 2 --config \"$2/packgate.toml\" --data-dir \"$1\" 2>\"$2/log\" & \
             echo $! >\"$2/gateway.pid\"; wait $!; echo $? >\"$2/gateway.rc\"; sleep 120";
        let shell = Command::new("unshare")
            .args(["-rm", "sh", "-c", script, "sh"])
            .arg(&data_dir)
            .arg(outside.path())
            .arg(env!("CARGO_BIN_EXE_packgate"))
            .env("DISK_MB", DISK_MB.to_string())
            .env("NATS", &nats)
            .env("NATS_PORT", nats_port)
            .env("NOTIFY_SOCKET", outside.path().join("notify.sock"))
            .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            shell,
            outside,
            data_dir,
        }
    }

    /// The pid in `name` in the outside directory, once written.
    fn pid_in(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.outside.path().join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Restarts the broker of its own, as its operator or service manager
    /// does: SIGTERM, SIGKILL when it has not gone after five seconds.
    async fn restart_external_broker(&self) {
        let pid = self.pid_in("nats.pid").unwrap();
        signal(pid, libc::SIGTERM);
        let gone = || !Path::new(&format!("/proc/{pid}")).exists();
        if !eventually(Duration::from_secs(5), gone).await {
            signal(pid, libc::SIGKILL);
        }
        assert!(
            eventually(Duration::from_secs(10), || self.pid_in("nats.pid")
                != Some(pid))
            .await
        );
    }

    /// A path inside the namespace's data directory, seen from here.
    fn inside(&self, name: &str) -> PathBuf {
        let mut path = PathBuf::from(format!("/proc/{}/root", self.shell.id()));
        path.push(self.data_dir.strip_prefix("/").unwrap());
        path.push(name);
        path
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.outside.path().join("log")).unwrap_or_default()
    }

    fn gateway_pid(&self) -> Option<u32> {
        self.pid_in("gateway.pid")
    }

    /// The gateway's own nats-server: its child process.
    fn embedded_broker_pid(&self) -> Option<u32> {
        let gateway = self.gateway_pid()?;
        let tasks = std::fs::read_dir(format!("/proc/{gateway}/task")).ok()?;
        tasks
            .filter_map(Result::ok)
            .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
            .flat_map(|children| {
                children
                    .split_whitespace()
                    .filter_map(|pid| pid.parse::<u32>().ok())
                    .collect::<Vec<_>>()
            })
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "nats-server")
            })
    }

    /// A copy of the samples database as it is now. SQLite resolves
    /// `/proc/PID/root` to this namespace's root, so it cannot open the
    /// file in place; a copy of the database and its WAL reads the same.
    fn samples_copy(&self) -> Option<PathBuf> {
        let copy = tempfile::tempdir_in(self.outside.path()).ok()?.keep();
        for suffix in ["", "-wal"] {
            let from = self.inside(&format!("samples.db{suffix}"));
            if from.exists() {
                std::fs::copy(&from, copy.join(format!("samples.db{suffix}"))).ok()?;
            }
        }
        let database = copy.join("samples.db");
        // Opening as the writer recovers the copied WAL.
        packgate::store::SampleStore::open(&database).ok()?;
        Some(database)
    }

    fn stored(&self) -> u64 {
        self.samples_copy()
            .and_then(|database| packgate::store::SampleStore::open_read_only(&database).ok())
            .and_then(|store| store.count().ok())
            .unwrap_or(0)
    }

    /// Fills the filesystem to the last byte; returns the filler's size.
    fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.inside("filler")).unwrap();
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(_) => break,
            }
        }
        // Whatever a 64 KiB write could not take.
        while file.write(&chunk[..512]).is_ok_and(|n| n > 0) {
            written += 512;
        }
        written
    }

    /// Gives `bytes` of the filler back: room for a file or two, not for
    /// a stream.
    fn make_room(&self, bytes: u64) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(self.inside("filler"))
            .unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len.saturating_sub(bytes)).unwrap();
    }

    fn free(&self) {
        std::fs::remove_file(self.inside("filler")).unwrap();
    }

    /// SIGTERM to the gateway; waits for its exit code.
    async fn stop(&self) -> i32 {
        let pid = self.gateway_pid().unwrap();
        signal(pid, libc::SIGTERM);
        let rc = self.outside.path().join("gateway.rc");
        assert!(
            eventually(Duration::from_secs(60), || rc.exists()).await,
            "the gateway did not stop; log:\n{}",
            self.log()
        );
        std::fs::read_to_string(rc).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Confined {
    fn drop(&mut self) {
        // The gateway is the shell's child: killed first, or it would
        // outlive a failed test.
        let _ = std::fs::write(self.outside.path().join("nats.stop"), "");
        if let Some(pid) = self.pid_in("nats.pid") {
            signal(pid, libc::SIGKILL);
        }
        if let Some(pid) = self.gateway_pid() {
            signal(pid, libc::SIGKILL);
        }
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// What happens to the broker while the disk is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhileFull {
    /// Nothing more.
    Nothing,
    /// The embedded nats-server dies and the gateway starts it again at
    /// once, on a disk with room for its configuration but not for its
    /// streams: it comes up without them.
    EmbeddedBrokerKilled,
}

async fn survive_a_full_disk(broker: BrokerKind, while_full: WhileFull) {
    if !user_namespaces_work() {
        // Skipping is a choice made where it is known not to work, never
        // a silent pass.
        assert!(
            std::env::var_os("PACKGATE_ALLOW_SKIP_DISK_FULL").is_some_and(|v| v == "1"),
            "this kernel refuses unprivileged user namespaces (unshare -rm), which the \
             full-disk test needs; set PACKGATE_ALLOW_SKIP_DISK_FULL=1 to skip it here"
        );
        eprintln!("skipped: this kernel refuses unprivileged user namespaces (unshare -rm)");
        return;
    }
    let restart_broker = broker == BrokerKind::ExternalOnTheSameDisk;
    let gateway = Confined::start(broker);
    let notifications = Notifications::listen(&gateway.outside.path().join("notify.sock"));
    assert!(
        eventually(Duration::from_secs(30), || gateway.stored() >= 30).await,
        "nothing stored before the disk filled; log:\n{}",
        gateway.log()
    );

    let filled = gateway.fill();
    let full_since = Instant::now();
    assert!(filled > 0, "the filler wrote nothing");
    tokio::time::sleep(FULL_FOR).await;
    if while_full == WhileFull::EmbeddedBrokerKilled {
        // Room for its configuration file, not for its streams (as on a
        // root filesystem whose reserve only root may use).
        gateway.make_room(256 * 1024);
        let pid = gateway
            .embedded_broker_pid()
            .expect("the gateway's nats-server");
        signal(pid, libc::SIGKILL);
        assert!(
            eventually(Duration::from_secs(20), || gateway
                .log()
                .contains("embedded nats-server running again"))
            .await,
            "the embedded broker was not started again; log:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let stored_while_full = gateway.stored();
    gateway.free();
    // The end of the window in which the watchdog must starve: from here
    // on the disk has room again, and a broker restarted below is
    // unreachable for a moment, which the watchdog rule counts as holding.
    let freed_at = Instant::now();
    if restart_broker {
        // nats-server 2.9 keeps its JetStream stopped after a failed
        // write until it is restarted.
        gateway.restart_external_broker().await;
    }

    // Recovery: storing resumes well past what was stored before, and
    // what was refused while the disk was full (handed back to the broker
    // for a later delivery) comes back and is stored too.
    assert!(
        eventually(Duration::from_secs(60), || gateway.stored()
            > stored_while_full + 60
            && gateway.log().contains("samples are stored again"))
        .await,
        "storing did not resume after the disk was freed; log:\n{}",
        gateway.log()
    );
    tokio::time::sleep(REDELIVERY_WAIT).await;
    let rc = gateway.stop().await;
    let log = gateway.log();
    assert_eq!(rc, 0, "the gateway failed; log:\n{log}");

    // Shown only when the test fails.
    eprintln!("gateway log:\n{log}");
    let stored = assert_exactly_once(&gateway.samples_copy().unwrap(), 2, false);
    let published = logged_number(&log, "collect worker stopped", "published").unwrap();
    let unpublished = logged_number(&log, "collect worker stopped", "unpublished").unwrap();
    let dropped = logged_number(&log, "collect worker stopped", "dropped").unwrap();
    assert_eq!((unpublished, dropped), (0, 0), "samples lost; log:\n{log}");
    assert_eq!(stored, published, "published but not stored; log:\n{log}");

    // The watchdog was fed before, not while the disk was full (after
    // the gateway had a few periods to notice), and again after.
    let noticed = full_since + 6 * WATCHDOG;
    assert!(notifications.watchdogs_between(full_since - Duration::from_secs(3), full_since) > 0);
    assert_eq!(
        notifications.watchdogs_between(noticed, freed_at),
        0,
        "the watchdog was fed while nothing could be stored; statuses: {:?}",
        notifications.statuses()
    );
    assert!(notifications.watchdogs_between(freed_at, Instant::now()) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_embedded_broker_loses_nothing_and_recovers() {
    survive_a_full_disk(BrokerKind::Embedded, WhileFull::Nothing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_broker_restarted_on_a_full_disk_gets_its_streams_back_once_there_is_room() {
    survive_a_full_disk(BrokerKind::Embedded, WhileFull::EmbeddedBrokerKilled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_disk_beside_an_external_broker_loses_nothing_and_recovers() {
    let broker = TestBroker::start().await;
    survive_a_full_disk(
        BrokerKind::ExternalElsewhere(broker.url()),
        WhileFull::Nothing,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_an_external_broker_loses_nothing_once_it_is_restarted() {
    survive_a_full_disk(BrokerKind::ExternalOnTheSameDisk, WhileFull::Nothing).await;
}

#[tokio::test]
async fn streams_larger_than_the_broker_can_hold_are_halved_until_they_fit() {
    use packgate::broker::{ensure_streams, SetupAction, MIN_STREAM_BYTES};
    // A broker that may hold 16 MiB on disk in all.
    let mut broker =
        TestBroker::start_with_config(Some("jetstream { max_file_store: 16777216 }\n".to_owned()))
            .await;
    let client = async_nats::connect(broker.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);

    let configured = packgate::config::StreamsConfig::default();
    let actions = ensure_streams(&js, &configured).await.unwrap();
    // Every packgate stream (samples, events, metrics, banks).
    assert_eq!(actions.len(), packgate_protocol::names::STREAMS.len());
    assert_eq!(actions.len(), 4);
    // Streams made by a pass that was then refused and halved are still
    // reported new, not updated.
    assert!(
        actions.iter().all(|(_, a)| *a == SetupAction::Created),
        "{actions:?}"
    );
    let mut total = 0;
    for (name, _) in &actions {
        let mut stream = js.get_stream(*name).await.unwrap();
        let max_bytes = stream.info().await.unwrap().config.max_bytes;
        assert!(max_bytes >= MIN_STREAM_BYTES, "{name}: {max_bytes}");
        total += max_bytes;
    }
    assert!(total <= 16 * 1024 * 1024, "{total} bytes reserved");
    // The samples stream keeps the largest share.
    let mut samples = js.get_stream("PACKGATE_SAMPLES").await.unwrap();
    let samples_bytes = samples.info().await.unwrap().config.max_bytes;
    assert!(samples_bytes >= total / 2, "{samples_bytes} of {total}");
    broker.server.stop().await;
}

#[tokio::test]
async fn a_second_start_keeps_the_streams_an_earlier_start_halved() {
    use packgate::broker::{ensure_streams, SetupAction};
    use packgate::config::{StreamLimits, StreamsConfig};
    const MIB: i64 = 1024 * 1024;
    // Room for the samples stream grown back and two of the others, not
    // for all four: a second start that tried the configured sizes again
    // would grow the first streams, be refused on a later one and shrink
    // them all back.
    let mut broker = TestBroker::start_with_config(Some(format!(
        "jetstream {{ max_file_store: {} }}\n",
        82 * MIB
    )))
    .await;
    let client = async_nats::connect(broker.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let sized = |samples: i64, other: i64| {
        let one = |max_bytes| StreamLimits {
            max_bytes,
            max_age_s: 3600,
        };
        StreamsConfig {
            samples: one(samples),
            events: one(other),
            metrics: one(other),
            banks: one(other),
        }
    };
    let sizes = |js: async_nats::jetstream::Context| async move {
        let mut sizes = Vec::new();
        for spec in packgate_protocol::names::STREAMS {
            let mut stream = js.get_stream(spec.name).await.unwrap();
            sizes.push(stream.info().await.unwrap().config.max_bytes);
        }
        sizes
    };

    let configured = sized(64 * MIB, 8 * MIB);
    let first = ensure_streams(&js, &configured).await.unwrap();
    assert!(
        first.iter().all(|(_, a)| *a == SetupAction::Created),
        "{first:?}"
    );
    let halved = sizes(js.clone()).await;
    assert_eq!(halved, vec![32 * MIB, 4 * MIB, 4 * MIB, 4 * MIB]);

    for start in 2..5 {
        let again = ensure_streams(&js, &configured).await.unwrap();
        assert!(
            again.iter().all(|(_, a)| *a == SetupAction::Unchanged),
            "start {start}: {again:?}"
        );
        assert_eq!(sizes(js.clone()).await, halved, "start {start}");
    }

    // A changed configuration is tried as it is: these sizes fit.
    let smaller = sized(48 * MIB, 8 * MIB);
    let changed = ensure_streams(&js, &smaller).await.unwrap();
    assert!(
        changed.iter().all(|(_, a)| *a == SetupAction::Updated),
        "{changed:?}"
    );
    assert_eq!(
        sizes(js.clone()).await,
        vec![48 * MIB, 8 * MIB, 8 * MIB, 8 * MIB]
    );
    broker.server.stop().await;
}
