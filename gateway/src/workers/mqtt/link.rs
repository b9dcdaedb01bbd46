//! The connection to the MQTT broker: rumqttc's client and its event
//! loop in a task of its own, reconnecting with backoff, its queue bounded
//! (a publish that does not fit is dropped and counted, never waited for),
//! with the availability topic as last will.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::discovery::Topics;
use super::{MqttConfig, MqttError, MqttMetrics};
use crate::retry::Backoff;

/// Requests the client queues for the event loop at most.
const QUEUE: usize = 256;
/// Events (connections, incoming messages) waiting for the worker at most;
/// more incoming messages are dropped.
const EVENTS: usize = 64;
/// First wait after a failed connection; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest wait at shutdown for the last publishes to go out.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What the event loop tells the worker.
#[derive(Debug)]
pub(super) enum LinkEvent {
    /// Connected (again): announce, subscribe.
    Connected,
    /// The connection was lost; it is being made again.
    Disconnected,
    /// A message on a subscribed topic.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
    },
}

/// The client side of the connection.
#[derive(Debug)]
pub(super) struct Link {
    client: AsyncClient,
    task: JoinHandle<()>,
    metrics: Arc<MqttMetrics>,
}

/// rustls with the ring provider, trusting `ca_file`'s certificates, or
/// the system's roots without one.
fn tls(config: &MqttConfig) -> Result<TlsConfiguration, MqttError> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.tls_ca_file {
        Some(path) => {
            use rustls::pki_types::pem::PemObject as _;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| MqttError::Tls(format!("{}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| MqttError::Tls(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| MqttError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(client)))
}

fn options(config: &MqttConfig, topics: &Topics) -> Result<MqttOptions, MqttError> {
    let client_id = format!("packgate-{}", config.gateway_name);
    let mut options = MqttOptions::new(client_id, config.host.clone(), config.port);
    options.set_keep_alive(Duration::from_secs(u64::from(config.keep_alive_s)));
    options.set_clean_session(true);
    options.set_last_will(LastWill::new(
        topics.availability(),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(user) = &config.username {
        let password = config.password.as_ref().map_or("", |p| p.expose());
        options.set_credentials(user.clone(), password.to_owned());
    }
    if config.tls {
        options.set_transport(Transport::tls_with_config(tls(config)?));
    }
    Ok(options)
}

impl Link {
    /// Starts the event loop; the worker reads what happens from the
    /// returned receiver.
    pub(super) fn start(
        config: &MqttConfig,
        topics: &Topics,
        metrics: Arc<MqttMetrics>,
    ) -> Result<(Link, mpsc::Receiver<LinkEvent>), MqttError> {
        let (client, event_loop) = AsyncClient::new(options(config, topics)?, QUEUE);
        let (tx, rx) = mpsc::channel(EVENTS);
        let address = format!("{}:{}", config.host, config.port);
        let task = tokio::spawn(drive(event_loop, tx, Arc::clone(&metrics), address));
        Ok((
            Link {
                client,
                task,
                metrics,
            },
            rx,
        ))
    }

    fn try_publish(&self, topic: &str, payload: String, qos: QoS, retain: bool) -> bool {
        let queued = self.client.try_publish(topic, qos, retain, payload).is_ok();
        if !queued {
            self.metrics.publishes_dropped.inc();
        }
        queued
    }

    /// Queues a state (QoS 0, not retained); false when the queue is full.
    pub(super) fn publish(&self, topic: &str, payload: String) -> bool {
        self.try_publish(topic, payload, QoS::AtMostOnce, false)
    }

    /// Queues a retained message (QoS 1); false when the queue is full.
    pub(super) fn publish_retained(&self, topic: &str, payload: String) -> bool {
        self.try_publish(topic, payload, QoS::AtLeastOnce, true)
    }

    /// Subscribes to `topic` (QoS 1).
    pub(super) fn subscribe(&self, topic: &str) {
        if self.client.try_subscribe(topic, QoS::AtLeastOnce).is_err() {
            self.metrics.publishes_dropped.inc();
        }
    }

    /// Says `offline` (retained), disconnects, and gives the event loop a
    /// moment to send both.
    pub(super) async fn stop(self, topics: &Topics) {
        self.publish_retained(&topics.availability(), "offline".into());
        let _ = self.client.try_disconnect();
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Polls the event loop until the client disconnects (or the worker is
/// gone): connections and incoming messages go to the worker; a failure
/// is logged once per outage and retried with backoff.
async fn drive(
    mut event_loop: EventLoop,
    tx: mpsc::Sender<LinkEvent>,
    metrics: Arc<MqttMetrics>,
    address: String,
) {
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    let mut up = false;
    let mut warned = false;
    loop {
        match event_loop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                metrics.connections.inc();
                metrics.connected.set(1);
                backoff.reset();
                up = true;
                if std::mem::take(&mut warned) {
                    tracing::info!(%address, "MQTT broker reachable again");
                } else {
                    tracing::info!(%address, "connected to the MQTT broker");
                }
                if tx.send(LinkEvent::Connected).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let message = LinkEvent::Message {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                };
                let _ = tx.try_send(message);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(error) => {
                metrics.connected.set(0);
                if std::mem::take(&mut up) && tx.send(LinkEvent::Disconnected).await.is_err() {
                    return;
                }
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(%address, %error, "MQTT broker unreachable; retrying (polling and storing go on)");
                }
                if tx.is_closed() {
                    return;
                }
                backoff.sleep().await;
            }
        }
    }
}
