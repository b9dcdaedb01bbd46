//! The local NATS broker: starting one of our own when none is configured,
//! connecting, and setting up the streams and consumers.

pub mod auth;
pub mod connect;
pub mod embedded;
pub mod link_log;
pub mod local;
pub mod server;
pub mod setup;
pub mod view;

pub use auth::{BrokerCredentials, BrokerUser, CredentialsError};
pub use connect::{connect, BrokerError};
pub use embedded::EmbeddedBroker;
pub use link_log::broker_outage_within;
pub use local::Broker;
pub use server::{free_port, nats_server_version, NatsServer, NatsServerOptions};
pub use setup::{
    consumer_in_place, ensure_consumer, ensure_streams, fit_streams_to_disk, SetupAction,
    MIN_STREAM_BYTES, STREAMS_DISK_SHARE,
};
pub use view::{BrokerView, ConsumerView};
