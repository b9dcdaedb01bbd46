//! The cloud of `deploy/cloud/` as shipped, for the fleet tests: its node
//! configuration and accounts on loopback ports with generated passwords,
//! its stream and bucket created from their definitions.

use std::path::Path;

use async_nats::jetstream::stream;

use super::cluster::{Cluster, Ports};

pub const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/cloud");

pub fn deploy_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(DEPLOY).join(name)).unwrap()
}

/// Replaces `from` with `to` in `text`; `from` must be there, so a change
/// of the shipped file's shape fails here rather than passing untested.
pub fn swap(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the shipped file");
    text.replace(from, to)
}

/// deploy/cloud/cloud-node.conf for node `index`, on loopback ports.
pub fn node_config(index: usize, ports: &Ports) -> String {
    let mut text = deploy_file("cloud-node.conf");
    text = swap(
        &text,
        "server_name: cloud-1",
        &format!("server_name: n{}", index + 1),
    );
    text = swap(
        &text,
        "listen: 0.0.0.0:4222",
        &format!("listen: 127.0.0.1:{}", ports.client[index]),
    );
    text = swap(
        &text,
        "http: 127.0.0.1:8222",
        &format!("http: 127.0.0.1:{}", ports.http[index]),
    );
    text = swap(&text, "max_file_store: 100GB", "max_file_store: 1GB");
    // The harness gives the store directory on the command line.
    text = swap(
        &text,
        "store_dir: \"/var/lib/nats\"",
        "# store_dir: on the command line",
    );
    text = swap(
        &text,
        "listen: 0.0.0.0:6222",
        &format!("listen: 127.0.0.1:{}", ports.route[index]),
    );
    for (n, port) in ports.route.iter().enumerate() {
        text = swap(
            &text,
            &format!("cloud-{}.example.internal:6222", n + 1),
            &format!("127.0.0.1:{port}"),
        );
    }
    swap(
        &text,
        "listen: 0.0.0.0:7422",
        &format!("listen: 127.0.0.1:{}", ports.leaf[index]),
    )
}

/// A stream definition of deploy/cloud/ (`PACKGATE_CLOUD.json`, or the
/// bucket's `PACKGATE_DESIRED.json`).
pub fn stream_definition(file: &str) -> stream::Config {
    serde_json::from_str(&deploy_file(file)).unwrap()
}

/// A fresh random password.
pub fn password() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut text = String::new();
    for _ in 0..2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(std::process::id().into());
        text.push_str(&format!("{:016x}", hasher.finish()));
    }
    text
}

/// The cloud of deploy/cloud/ with generated passwords for ops, site-7 and
/// site-8, its stream and bucket created from their definitions.
pub async fn shipped_cloud() -> (Cluster, [String; 3]) {
    let passwords = [password(), password(), password()];
    let mut accounts = deploy_file("fleet-accounts.conf");
    for (name, secret) in ["$OPS_PASSWORD", "$SITE_7_PASSWORD", "$SITE_8_PASSWORD"]
        .iter()
        .zip(&passwords)
    {
        accounts = swap(&accounts, name, &format!("\"{secret}\""));
    }
    let cluster = Cluster::start_custom(
        3,
        node_config,
        &[("fleet-accounts.conf", accounts)],
        Some(("ops".into(), passwords[0].clone())),
    )
    .await;
    for file in ["PACKGATE_CLOUD.json", "PACKGATE_DESIRED.json"] {
        let config = stream_definition(file);
        assert_eq!(config.num_replicas, 3, "{file}: three replicas");
        cluster.create_stream(config).await;
    }
    (cluster, passwords)
}

/// A TCP relay between a gateway and its cloud that can be cut, like the
/// site's uplink going down, and restored, while the cloud itself stays up
/// for the operator's tools.
pub struct Uplink {
    pub address: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    _task: tokio::task::JoinHandle<()>,
}

impl Uplink {
    /// A relay on a free loopback port to `upstream`.
    pub async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let accepting = std::sync::Arc::clone(&up);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !accepting.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cuts = cuts.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    cuts.borrow_and_update();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self {
            address,
            up,
            cut,
            _task: task,
        }
    }

    /// The URL a gateway uses to reach the cloud through it.
    pub fn url(&self) -> String {
        format!("nats://{}", self.address)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
