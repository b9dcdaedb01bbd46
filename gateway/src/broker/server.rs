//! A nats-server child process with JetStream: the embedded broker of
//! `packgate run --sim` on a laptop, and the real broker of every test.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// How to start the server.
#[derive(Debug, Clone)]
pub struct NatsServerOptions {
    /// The executable: a name on PATH or a path.
    pub executable: PathBuf,
    /// The JetStream store directory (created if missing).
    pub store_dir: PathBuf,
    /// Port to listen on, on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
    /// Time allowed to start listening.
    pub startup_timeout: Duration,
    /// Configuration text given to the server in a file of its store
    /// directory (mode 0600), such as the `authorization` block; `None`
    /// runs it open to any local client (tests).
    pub config_text: Option<String>,
    /// Hold an exclusive lock on the store directory while the server
    /// runs, so a second gateway on the same store fails at once instead
    /// of running a second server on it.
    pub lock_store: bool,
}

impl NatsServerOptions {
    /// Options for `nats-server` from PATH with its store in `store_dir`.
    pub fn new(store_dir: impl Into<PathBuf>) -> Self {
        Self {
            executable: PathBuf::from("nats-server"),
            store_dir: store_dir.into(),
            port: None,
            startup_timeout: Duration::from_secs(10),
            config_text: None,
            lock_store: false,
        }
    }
}

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The executable is not there.
    #[error(
        "{0} not found. Install it with `sudo apt-get install nats-server` \
         (Debian, Raspberry Pi OS), set broker.nats_server_path, \
         or point broker.url at a running nats-server"
    )]
    NotFound(PathBuf),
    /// Spawning or preparing failed.
    #[error("cannot start {path}: {source}")]
    Spawn {
        /// The executable.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another process holds the store directory.
    #[error(
        "the broker store {0} is in use by another packgate process; \
         stop it first (two servers on one store would corrupt it)"
    )]
    StoreInUse(PathBuf),
    /// It exited or did not listen in time; its log says why.
    #[error("nats-server did not start listening on {addr} within {timeout:?}: {log_tail}")]
    NotListening {
        /// Where it should listen.
        addr: SocketAddr,
        /// The time allowed.
        timeout: Duration,
        /// The end of its log.
        log_tail: String,
    },
}

/// A running nats-server child, killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    options: NatsServerOptions,
    port: u16,
    child: Option<Child>,
    /// The store lock, held for the server's life.
    _lock: Option<std::fs::File>,
}

/// The version of the nats-server at `executable` (a path or a name on
/// PATH), from `nats-server --version`; `None` when it cannot be read.
pub fn nats_server_version(executable: &Path) -> Option<(u32, u32, u32)> {
    let output = std::process::Command::new(executable)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&output.stdout))
}

/// `(2, 9, 10)` from `nats-server: v2.9.10`.
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let version = text.trim().rsplit('v').next()?;
    let mut parts = version.split(['.', '-', '+']).map(str::parse::<u32>);
    Some((
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    ))
}

fn which_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// Takes an exclusive, non-blocking lock on `store_dir/packgate.lock`;
/// the kernel releases it when the process dies, however it dies.
fn lock_store(store_dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd as _;
    std::fs::create_dir_all(store_dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(store_dir.join("packgate.lock"))?;
    // SAFETY: flock(2) on a descriptor this function owns; no memory is
    // passed.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Makes the child get SIGTERM when the thread that started it dies, so a
/// gateway killed with SIGKILL does not leave an orphaned broker
/// listening on its store.
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only
    // calls async-signal-safe functions (prctl, getppid, kill).
    #[allow(unsafe_code)]
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl: then we are orphaned
            // already and must not start.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGTERM);
            }
            Ok(())
        });
    }
}

/// A free TCP port on 127.0.0.1 (bind port 0, read it, release it).
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

impl NatsServer {
    /// Starts the server and waits until it accepts connections.
    pub async fn start(options: NatsServerOptions) -> Result<Self, ServerError> {
        let port = match options.port {
            Some(port) => port,
            None => free_port().map_err(|source| ServerError::Spawn {
                path: options.executable.clone(),
                source,
            })?,
        };
        let lock = if options.lock_store {
            Some(
                lock_store(&options.store_dir).map_err(|source| match source.kind() {
                    std::io::ErrorKind::WouldBlock => {
                        ServerError::StoreInUse(options.store_dir.clone())
                    }
                    _ => ServerError::Spawn {
                        path: options.store_dir.clone(),
                        source,
                    },
                })?,
            )
        } else {
            None
        };
        let mut server = Self {
            options,
            port,
            child: None,
            _lock: lock,
        };
        server.spawn().await?;
        Ok(server)
    }

    fn log_path(&self) -> PathBuf {
        self.options.store_dir.join("nats-server.log")
    }

    async fn spawn(&mut self) -> Result<(), ServerError> {
        let path = self.options.executable.clone();
        let spawn_error = |source| ServerError::Spawn {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.options.store_dir).map_err(spawn_error)?;
        // Debian installs nats-server in /usr/sbin, off a normal user's PATH.
        if self.options.executable == Path::new("nats-server")
            && which_on_path("nats-server").is_none()
        {
            let sbin = PathBuf::from("/usr/sbin/nats-server");
            if sbin.exists() {
                self.options.executable = sbin;
            }
        }
        // Keep the previous run's log beside, so "ready" means this run.
        let log = self.log_path();
        if log.exists() {
            std::fs::rename(&log, log.with_extension("log.1")).map_err(spawn_error)?;
        }
        let mut command = Command::new(&self.options.executable);
        if let Some(text) = &self.options.config_text {
            let file = self.options.store_dir.join("nats-server.conf");
            super::auth::write_private(&file, text).map_err(spawn_error)?;
            command.arg("--config").arg(file);
        }
        die_with_parent(&mut command);
        let child = command
            .arg("--addr")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--jetstream")
            .arg("--store_dir")
            .arg(&self.options.store_dir)
            .arg("--log")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    ServerError::NotFound(path.clone())
                } else {
                    ServerError::Spawn {
                        path: path.clone(),
                        source,
                    }
                }
            })?;
        self.child = Some(child);
        self.wait_ready().await
    }

    /// Waits until the server answers with its INFO line and JetStream is
    /// reported ready in its log.
    async fn wait_ready(&mut self) -> Result<(), ServerError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = tokio::time::Instant::now() + self.options.startup_timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_status)) = child.try_wait() {
                    break;
                }
            }
            if Self::answers_info(addr).await && self.log_says_ready() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log_tail = self.log_tail();
        self.kill().await;
        Err(ServerError::NotListening {
            addr,
            timeout: self.options.startup_timeout,
            log_tail,
        })
    }

    fn log_says_ready(&self) -> bool {
        std::fs::read_to_string(self.log_path())
            .map(|log| log.contains("Server is ready"))
            .unwrap_or(false)
    }

    async fn answers_info(addr: SocketAddr) -> bool {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.ok()?;
            Some(&buf == b"INFO")
        };
        matches!(
            tokio::time::timeout(Duration::from_millis(500), attempt).await,
            Ok(Some(true))
        )
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        &self.options.store_dir
    }

    /// The child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// A descriptor that becomes readable when the running server exits
    /// (a pidfd, Linux 5.3 and later): its death wakes a watch that would
    /// otherwise poll. `None` when no server runs or the kernel has none.
    pub fn exit_fd(&self) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::FromRawFd as _;
        let pid = libc::pid_t::try_from(self.pid()?).ok()?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor (or -1); no memory is passed.
        #[allow(unsafe_code)]
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: `fd` was just returned by the kernel and is owned by
        // nothing else.
        #[allow(unsafe_code)]
        Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }

    /// How the server exited, if it has (it is reaped then); `None` while
    /// it runs or when it was stopped on purpose.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops the server cleanly (SIGTERM), killing it if it has not exited
    /// after five seconds.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) on the pid of a child we own and have not yet
            // reaped, so the pid cannot have been reused.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port and store, after a
    /// [`kill`](Self::kill) or [`stop`](Self::stop).
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.stop().await;
        let deadline = tokio::time::Instant::now() + self.options.startup_timeout;
        // The port can linger briefly after the old process is reaped.
        loop {
            match self.spawn().await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions_are_read_from_the_servers_banner() {
        assert_eq!(parse_version("nats-server: v2.9.10\n"), Some((2, 9, 10)));
        assert_eq!(
            parse_version("nats-server: v2.10.22-beta.1"),
            Some((2, 10, 22))
        );
        assert_eq!(parse_version("nats-server: vx"), None);
        assert_eq!(parse_version(""), None);
        assert!(Some((2, 10, 0)) > parse_version("nats-server: v2.9.25"));
    }
}
