//! packgate's wire contract: the typed messages that flow between the
//! collector, the workers and the cloud, their versioned postcard codec, and
//! every NATS name (subjects, streams, consumers) in one place.
//!
//! This crate is pure: no I/O, no async runtime. Everything here can be
//! unit- and property-tested without a broker.

pub mod bank;
pub mod codec;
pub mod command;
pub mod event;
pub mod ids;
pub mod limits;
pub mod metrics;
pub mod names;
mod rules;
pub mod sample;
mod sample_v1;

pub use bank::{
    BankPack, BankState, BankStop, ChargeStage, Derating, Extreme, PackShare, SiteOverrides,
    SocWeighting, ABSORPTION_VOLTAGE_V, BANK_SETTINGS, MAX_BANK_PACKS, SITE_MAX_CHARGE_A,
    SITE_MAX_DISCHARGE_A,
};
pub use codec::{
    decode, encode, DecodeError, MessageKind, WireMessage, OLDEST_READABLE_VERSION, SCHEMA_VERSION,
};
pub use command::{Command, CommandId, CommandOrigin, CommandOutcome, CommandReply, SettingName};
pub use event::{Event, EventKind};
pub use ids::{BankId, BootId, IdError, PackId, MAX_BANK_ID_LEN};
pub use limits::RuleError;
pub use metrics::{LatencySummary, MetricsSnapshot};
pub use sample::{
    AlarmFlags, BalancingState, CellVoltages, ClockQuality, DataQuality, PackReading, Sample,
    SampleError, Temperatures, MAX_CELLS, MAX_TEMPERATURE_SENSORS,
};
