//! The embedded broker under supervision: our own nats-server child,
//! restarted on the same store and port when it dies, so the gateway's
//! pending publishes drain into it again; when it cannot be restarted the
//! broker is declared lost and the process stops (the service manager
//! restarts it), never running on without a broker in silence.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use packgate_protocol::names;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::server::{NatsServer, NatsServerOptions, ServerError};

/// How often the child is checked where the kernel cannot tell its death
/// (no pidfd): a dead one is started again within this, while the
/// gateway's publishes wait in its pending queue.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often JetStream is asked whether it answers.
const PROBE_EVERY: Duration = Duration::from_secs(3);
/// Unanswered probes in a row, with the connection up, before a restart.
const PROBES_BEFORE_RESTART: u32 = 3;
/// Time given to a restarted server before it is probed again.
const RESTART_GRACE: Duration = Duration::from_secs(30);

/// The streams JetStream has loaded, from its account info reply.
fn streams_loaded(account_info: &[u8]) -> Option<u64> {
    let info: serde_json::Value = serde_json::from_slice(account_info).ok()?;
    info.get("streams")?.as_u64()
}

/// The streams the store holds on disk (a folder each, in the account of
/// a server without accounts).
fn streams_on_disk(store_dir: &std::path::Path) -> u64 {
    let streams = store_dir.join("jetstream").join("$G").join("streams");
    std::fs::read_dir(streams).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .count() as u64
    })
}

/// Our own nats-server, watched and restarted.
#[derive(Debug)]
pub struct EmbeddedBroker {
    server: Arc<Mutex<NatsServer>>,
    url: String,
    store_dir: PathBuf,
    pid: Arc<AtomicU32>,
    restarts: Arc<AtomicU64>,
    lost: CancellationToken,
    stop: CancellationToken,
    watch: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts the server and its watch.
    pub async fn start(options: NatsServerOptions) -> Result<Self, ServerError> {
        let server = NatsServer::start(options).await?;
        let url = server.url();
        let store_dir = server.store_dir().to_owned();
        let pid = Arc::new(AtomicU32::new(server.pid().unwrap_or(0)));
        let server = Arc::new(Mutex::new(server));
        let restarts = Arc::new(AtomicU64::new(0));
        let (lost, stop) = (CancellationToken::new(), CancellationToken::new());
        let watch = tokio::spawn(watch(
            Arc::clone(&server),
            Arc::clone(&pid),
            Arc::clone(&restarts),
            lost.clone(),
            stop.clone(),
        ));
        Ok(Self {
            server,
            url,
            store_dir,
            pid,
            restarts,
            lost,
            stop,
            watch,
        })
    }

    /// The client URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The directory of its JetStream store.
    pub fn store_dir(&self) -> PathBuf {
        self.store_dir.clone()
    }

    /// The server's process id (of its latest start).
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::Relaxed)).filter(|pid| *pid != 0)
    }

    /// Times the server died and was started again.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Fires when the server died and could not be started again.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Until `stop`: asks JetStream every few seconds whether it answers.
    /// When it does not, several times in a row, while the connection is
    /// up, the server is restarted on the same store: nats-server 2.9
    /// stops its JetStream for good after a write fails on a full disk,
    /// and only a restart brings it back once there is room again.
    pub fn spawn_jetstream_watch(
        &self,
        client: async_nats::Client,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let server = Arc::clone(&self.server);
        let store_dir = self.store_dir.clone();
        let (pid, restarts, lost) = (
            Arc::clone(&self.pid),
            Arc::clone(&self.restarts),
            self.lost.clone(),
        );
        tokio::spawn(async move {
            let mut unanswered = 0u32;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(PROBE_EVERY) => {}
                    () = stop.cancelled() => return,
                }
                if client.connection_state() != async_nats::connection::State::Connected {
                    unanswered = 0;
                    continue;
                }
                // A JetStream that is up answers its info request, one
                // that is stuck lets it time out. One that answers without
                // the streams its store holds did not load them (it started
                // on a full disk): only a restart with room loads them.
                let probe = client.request(names::JS_API_INFO_SUBJECT, bytes::Bytes::new());
                match tokio::time::timeout(PROBE_EVERY, probe).await {
                    Ok(Ok(reply)) => {
                        let on_disk = streams_on_disk(&store_dir);
                        match streams_loaded(&reply.payload) {
                            Some(loaded) if loaded < on_disk => {
                                unanswered += 1;
                                tracing::warn!(
                                    loaded,
                                    on_disk,
                                    unanswered,
                                    "JetStream answers without the streams its store holds \
                                     (started on a full disk?)"
                                );
                            }
                            _ => unanswered = 0,
                        }
                    }
                    Ok(Err(error)) => {
                        unanswered += 1;
                        tracing::warn!(%error, unanswered, "JetStream does not answer");
                    }
                    Err(_) => {
                        unanswered += 1;
                        tracing::warn!(unanswered, "JetStream does not answer");
                    }
                }
                if unanswered < PROBES_BEFORE_RESTART {
                    continue;
                }
                unanswered = 0;
                tracing::error!(
                    "JetStream stopped answering, or runs without its streams, while the \
                     broker runs (a full disk?); restarting the embedded nats-server on the \
                     same store"
                );
                let mut server = server.lock().await;
                match server.restart().await {
                    Ok(()) => {
                        restarts.fetch_add(1, Ordering::Relaxed);
                        pid.store(server.pid().unwrap_or(0), Ordering::Relaxed);
                        tracing::warn!(pid = ?server.pid(), "embedded nats-server running again");
                    }
                    Err(error) => {
                        tracing::error!(%error, "the embedded nats-server cannot be started again; stopping");
                        lost.cancel();
                        return;
                    }
                }
                drop(server);
                // JetStream recovers its store before it answers: on a slow
                // box that takes a while, and must not be taken for a hang.
                tokio::select! {
                    () = tokio::time::sleep(RESTART_GRACE) => {}
                    () = stop.cancelled() => return,
                }
            }
        })
    }

    /// Stops the watch, then the server (SIGTERM, then SIGKILL).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.watch.await;
        self.server.lock().await.stop().await;
    }
}

async fn watch(
    server: Arc<Mutex<NatsServer>>,
    pid: Arc<AtomicU32>,
    restarts: Arc<AtomicU64>,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    loop {
        let exit = server.lock().await.exit_fd();
        let exited = exit.and_then(|fd| {
            // SAFETY: the OwnedFd is moved into the AsyncFd, which keeps it
            // open, unchanged, until it is dropped.
            #[allow(unsafe_code)]
            let registered = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            };
            registered.ok()
        });
        tokio::select! {
            // Readable once the child has exited: nothing wakes before.
            _ = async { exited.as_ref()?.readable().await.ok() }, if exited.is_some() => {}
            () = tokio::time::sleep(CHECK_EVERY), if exited.is_none() => {}
            () = stop.cancelled() => return,
        }
        let mut server = server.lock().await;
        let Some(status) = server.exit_status() else {
            continue;
        };
        tracing::error!(%status, "the embedded nats-server died; starting it again on the same store");
        match server.restart().await {
            Ok(()) => {
                restarts.fetch_add(1, Ordering::Relaxed);
                pid.store(server.pid().unwrap_or(0), Ordering::Relaxed);
                tracing::warn!(pid = ?server.pid(), "embedded nats-server running again");
            }
            Err(error) => {
                tracing::error!(%error, "the embedded nats-server cannot be started again; stopping");
                lost.cancel();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{streams_loaded, streams_on_disk};

    #[test]
    fn the_streams_loaded_are_read_from_the_account_info() {
        // As nats-server 2.9 answered after starting on a full disk.
        let reply = br#"{"type":"io.nats.jetstream.api.v1.account_info_response","memory":0,"storage":0,"streams":0,"consumers":0}"#;
        assert_eq!(streams_loaded(reply), Some(0));
        assert_eq!(streams_loaded(br#"{"streams":4,"consumers":6}"#), Some(4));
        assert_eq!(streams_loaded(b"not json"), None);
        assert_eq!(streams_loaded(br#"{"error":{"code":503}}"#), None);
    }

    #[test]
    fn the_streams_on_disk_are_the_folders_of_the_store() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(streams_on_disk(dir.path()), 0);
        let streams = dir.path().join("jetstream").join("$G").join("streams");
        for name in ["PACKGATE_SAMPLES", "PACKGATE_EVENTS"] {
            std::fs::create_dir_all(streams.join(name)).unwrap();
        }
        std::fs::write(streams.join("stray"), b"").unwrap();
        assert_eq!(streams_on_disk(dir.path()), 2);
    }
}
