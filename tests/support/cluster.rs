//! A cloud for the fleet tests: three real nats-server processes clustered
//! on loopback ports, JetStream on each with a store of its own in a
//! temporary directory, and one node killed (SIGKILL) and started again on
//! the same ports and store.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use packgate::broker::{NatsServer, NatsServerOptions};

use super::free_ports;

/// The cluster's name in every node's `cluster` block.
pub const CLUSTER_NAME: &str = "packgate-cloud";

/// One node: its server, its name, its route and leaf node ports.
pub struct Node {
    pub name: String,
    pub route_port: u16,
    pub leaf_port: u16,
    pub server: NatsServer,
}

/// The loopback ports of every node, by index: clients, routes, leaf
/// nodes, monitoring.
pub struct Ports {
    pub client: Vec<u16>,
    pub route: Vec<u16>,
    pub leaf: Vec<u16>,
    pub http: Vec<u16>,
}

/// A JetStream cluster of real nats-servers on 127.0.0.1.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
    /// The user and password the harness connects with (`None`: open).
    pub admin: Option<(String, String)>,
}

/// The configuration of node `name`: its cluster block with routes to
/// every node, and `extra` (accounts, a leaf node listener) after it.
fn node_config(name: &str, route_port: u16, route_ports: &[u16], extra: &str) -> String {
    let routes = route_ports
        .iter()
        .map(|port| format!("nats-route://127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "server_name: {name}\n\
         cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{route_port}\n  routes: [{routes}]\n}}\n\
         {extra}\n"
    )
}

impl Cluster {
    /// Starts `size` nodes with open access (any client may do anything)
    /// and waits until JetStream answers through each.
    pub async fn start(size: usize) -> Self {
        Self::start_with(size, |_| String::new()).await
    }

    /// Starts `size` nodes, each with `extra(index)` added to its
    /// configuration, and waits until JetStream has a meta leader.
    pub async fn start_with(size: usize, extra: impl Fn(usize) -> String) -> Self {
        Self::start_custom(
            size,
            |index, ports| {
                let name = format!("n{}", index + 1);
                node_config(&name, ports.route[index], &ports.route, &extra(index))
            },
            &[],
            None,
        )
        .await
    }

    /// Starts `size` nodes with the configuration `config(index, ports)`
    /// (which must name the server `n<index + 1>` and cluster it with the
    /// others on `ports.route`); `files` are written beside each node's
    /// configuration first (for an `include`); the harness connects as
    /// `admin` when given. Waits until JetStream has a meta leader.
    pub async fn start_custom(
        size: usize,
        config: impl Fn(usize, &Ports) -> String,
        files: &[(&str, String)],
        admin: Option<(String, String)>,
    ) -> Self {
        // A port picked free may be taken by another test before its node
        // binds it: the node then stops at start, and the whole cluster is
        // started again on other ports.
        let mut attempt = 1;
        loop {
            match Self::try_start(size, &config, files, admin.clone()).await {
                Ok(cluster) => return cluster,
                Err(error) if attempt < 3 && error.contains("address already in use") => {
                    eprintln!("cluster start {attempt}: a port was taken, again: {error}");
                    attempt += 1;
                }
                Err(error) => panic!("cluster node starts: {error}"),
            }
        }
    }

    async fn try_start(
        size: usize,
        config: &impl Fn(usize, &Ports) -> String,
        files: &[(&str, String)],
        admin: Option<(String, String)>,
    ) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let mut picked = free_ports(4 * size).into_iter();
        let mut next = |count: usize| picked.by_ref().take(count).collect::<Vec<u16>>();
        let ports = Ports {
            client: next(size),
            route: next(size),
            leaf: next(size),
            http: next(size),
        };
        let mut names = Vec::new();
        let mut starts = Vec::new();
        for index in 0..size {
            let name = format!("n{}", index + 1);
            let store = dir.path().join(&name);
            std::fs::create_dir_all(&store).unwrap();
            for (file, text) in files {
                std::fs::write(store.join(file), text).unwrap();
            }
            let mut options = NatsServerOptions::new(store);
            options.port = Some(ports.client[index]);
            options.config_text = Some(config(index, &ports));
            options.startup_timeout = Duration::from_secs(30);
            if let Some(path) = std::env::var_os("PACKGATE_NATS_SERVER") {
                options.executable = PathBuf::from(path);
            }
            names.push((name, ports.route[index], ports.leaf[index]));
            starts.push(NatsServer::start(options));
        }
        // Started together: a clustered JetStream waits for its peers.
        let servers = futures_util::future::join_all(starts).await;
        let mut nodes = Vec::new();
        let mut failed = None;
        for ((name, route_port, leaf_port), server) in names.into_iter().zip(servers) {
            match server {
                Ok(server) => nodes.push(Node {
                    name,
                    route_port,
                    leaf_port,
                    server,
                }),
                Err(error) => failed = Some(format!("{name}: {error:?}")),
            }
        }
        if let Some(error) = failed {
            for node in &mut nodes {
                node.server.kill().await;
            }
            return Err(error);
        }
        let cluster = Self { nodes, dir, admin };
        cluster.wait_jetstream(Duration::from_secs(30)).await;
        Ok(cluster)
    }

    /// Every node's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.server.url()).collect()
    }

    /// The client URLs as a TOML array's items: `"nats://..", "nats://.."`.
    pub fn urls_toml(&self) -> String {
        self.urls()
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A client of the harness (as `admin`, when set) that may use any
    /// node.
    pub async fn client(&self) -> async_nats::Client {
        self.options().connect(self.urls()).await.unwrap()
    }

    fn options(&self) -> async_nats::ConnectOptions {
        let options = match &self.admin {
            Some((user, password)) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            None => async_nats::ConnectOptions::new(),
        };
        options.request_timeout(Some(Duration::from_secs(5)))
    }

    /// Waits until JetStream answers an account info request through every
    /// running node (a meta leader is elected and known to each).
    pub async fn wait_jetstream(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for node in &self.nodes {
            if node.server.pid().is_none() {
                continue;
            }
            loop {
                let attempt = async {
                    let client = self
                        .options()
                        .connect(node.server.url())
                        .await
                        .map_err(|e| e.to_string())?;
                    // The raw account info: the client's typed one wants
                    // fields nats-server 2.9 does not send.
                    let reply = tokio::time::timeout(
                        Duration::from_secs(2),
                        client.request("$JS.API.INFO", "".into()),
                    )
                    .await
                    .map_err(|_| "timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
                    let text = String::from_utf8_lossy(&reply.payload).into_owned();
                    if text.contains("\"error\"") || !text.contains("account_info_response") {
                        return Err(text);
                    }
                    Ok(())
                }
                .await;
                let Err(error) = attempt else { break };
                if Instant::now() >= deadline {
                    let log = node.server.store_dir().join("nats-server.log");
                    let log = std::fs::read_to_string(log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    panic!(
                        "JetStream not ready on {} within {timeout:?}: {error}; log: {}",
                        node.name,
                        tail.join("\n")
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// The node named `name`.
    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Kills node `name` with SIGKILL, as a crash or a power cut would.
    pub async fn kill(&mut self, name: &str) {
        let node = self.node_mut(name);
        let pid = node.server.pid().expect("the node runs");
        super::signal(pid, libc::SIGKILL);
        // Reaped by the server handle.
        node.server.kill().await;
    }

    /// Starts node `name` again on its ports and store.
    pub async fn restart(&mut self, name: &str) {
        self.node_mut(name)
            .server
            .restart()
            .await
            .expect("the node starts again");
    }

    /// Creates a stream the way the cloud operator does: `replicas` copies,
    /// retried while the cluster elects its leaders.
    pub async fn create_stream(&self, config: stream::Config) {
        let js = jetstream::new(self.client().await);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match js.get_or_create_stream(config.clone()).await {
                Ok(_) => return,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "stream {} not created: {error}",
                        config.name
                    );
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }

    /// The name of the node leading `stream` now, if one does.
    pub async fn stream_leader(&self, stream: &str) -> Option<String> {
        let js = jetstream::new(self.client().await);
        let mut stream = js.get_stream(stream).await.ok()?;
        let info = stream.info().await.ok()?;
        info.cluster.as_ref().and_then(|c| c.leader.clone())
    }

    /// Replicas of `stream` (the leader and its followers) that are
    /// current, as the leader sees them.
    pub async fn current_replicas(&self, stream: &str) -> usize {
        let js = jetstream::new(self.client().await);
        let Ok(mut stream) = js.get_stream(stream).await else {
            return 0;
        };
        let Ok(info) = stream.info().await else {
            return 0;
        };
        info.cluster.as_ref().map_or(0, |c| {
            usize::from(c.leader.is_some()) + c.replicas.iter().filter(|r| r.current).count()
        })
    }
}
