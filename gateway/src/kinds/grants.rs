//! What a broker user may publish and subscribe to.

use packgate_protocol::names::ConsumerSpec;

/// The subjects one user may publish and subscribe to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to.
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
    /// Whether it may answer requests it received (one reply each).
    pub allow_responses: bool,
}

impl Permissions {
    /// Reading one durable consumer: its info, pulls and acks, nothing
    /// that creates, changes or deletes.
    pub fn consume(&mut self, spec: &ConsumerSpec) {
        let (stream, durable) = (spec.stream, spec.durable);
        self.publish.extend([
            format!("$JS.API.STREAM.INFO.{stream}"),
            format!("$JS.API.CONSUMER.INFO.{stream}.{durable}"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"),
            format!("$JS.ACK.{stream}.{durable}.>"),
        ]);
    }

    /// Publishing to each of `subjects`.
    pub fn publish_to(&mut self, subjects: &[&str]) {
        self.publish
            .extend(subjects.iter().map(|s| (*s).to_owned()));
    }

    /// Subscribing to each of `subjects`.
    pub fn subscribe_to(&mut self, subjects: &[&str]) {
        self.subscribe
            .extend(subjects.iter().map(|s| (*s).to_owned()));
    }
}
