//! What the bank worker has done, and each bank's latest limits as
//! gauges named after the bank (`ccl_a_<bank>`, `dcl_a_<bank>`,
//! `packs_counted_<bank>`).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use packgate_protocol::{BankId, BankState, LatencySummary};

use crate::telemetry::snapshot::MetricsSource;

crate::worker_metrics! {
    /// The bank worker's counters.
    pub struct BankCounts {
        counters {
            /// Samples of a bank's pack taken as its latest.
            samples_taken,
            /// Samples of packs in no bank, or older than the pack's latest.
            samples_ignored,
            /// Messages on the samples subject that did not decode.
            messages_malformed,
            /// States acknowledged by the broker.
            states_published,
            /// States whose publish failed or was not acknowledged in time.
            publish_failures,
            /// States not sent: the broker was unreachable, or too many
            /// publishes were waiting for their ack.
            states_skipped,
            /// States that broke the wire rules (not sent; a bug).
            states_invalid,
            /// Frames written to an inverter link.
            inverter_frames_sent,
            /// Frame writes to an inverter link that failed or timed out
            /// (the adapter is reopened).
            inverter_send_failures,
            /// Times an inverter link sent its last zero burst and fell
            /// silent for want of a fresh bank state.
            inverter_silences,
            /// Times an inverter adapter was opened.
            inverter_connects,
            /// Attempts to open an inverter adapter that failed.
            inverter_connect_failures,
            /// Commands lowering a bank's limits, applied and kept.
            limit_commands_applied,
            /// Commands lowering a bank's limits refused on a second check.
            limit_commands_rejected,
            /// Commands lowering a bank's limits that could not be kept
            /// (the file of overrides could not be written): not applied.
            limit_commands_failed,
        }
        gauges {}
        latencies {}
    }
}

/// One bank's latest limits.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BankGauges {
    /// Packs counted.
    pub packs_counted: u32,
    /// Charge current limit, A.
    pub charge_current_a: f64,
    /// Discharge current limit, A.
    pub discharge_current_a: f64,
}

impl BankGauges {
    /// The gauges of `state`.
    pub fn of(state: &BankState) -> Self {
        Self {
            packs_counted: state.packs_online,
            charge_current_a: f64::from(state.charge_current_a),
            discharge_current_a: f64::from(state.discharge_current_a),
        }
    }
}

/// The bank worker's metrics.
#[derive(Debug, Default)]
pub struct BankMetrics {
    /// Its counters.
    pub counts: BankCounts,
    banks: Mutex<BTreeMap<BankId, BankGauges>>,
}

impl BankMetrics {
    /// Records `bank`'s latest gauges.
    pub fn set(&self, bank: &BankId, gauges: BankGauges) {
        self.banks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(bank.clone(), gauges);
    }

    /// `bank`'s latest gauges, once it has had a state.
    pub fn bank(&self, bank: &BankId) -> Option<BankGauges> {
        self.banks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(bank)
            .copied()
    }
}

impl MetricsSource for BankMetrics {
    fn counters(&self) -> Vec<(String, u64)> {
        self.counts.counters()
    }

    fn gauges(&self) -> Vec<(String, f64)> {
        let banks = self.banks.lock().unwrap_or_else(PoisonError::into_inner);
        banks
            .iter()
            .flat_map(|(bank, g)| {
                [
                    (format!("packs_counted_{bank}"), f64::from(g.packs_counted)),
                    (format!("ccl_a_{bank}"), g.charge_current_a),
                    (format!("dcl_a_{bank}"), g.discharge_current_a),
                ]
            })
            .collect()
    }

    fn latencies(&self) -> Vec<LatencySummary> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn each_bank_has_its_own_gauges_within_the_name_cap() {
        let metrics = BankMetrics::default();
        let long = BankId::new("b".repeat(packgate_protocol::MAX_BANK_ID_LEN)).unwrap();
        let gauges = BankGauges {
            packs_counted: 2,
            charge_current_a: 150.5,
            discharge_current_a: 200.0,
        };
        metrics.set(&long, gauges);
        metrics.set(&BankId::new("a").unwrap(), BankGauges::default());
        metrics.counts.states_published.add(3);
        let names: Vec<String> = metrics.gauges().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 6);
        assert_eq!(names[..3], ["packs_counted_a", "ccl_a_a", "dcl_a_a"]);
        assert!(names
            .iter()
            .all(|n| n.len() <= packgate_protocol::limits::MAX_METRIC_NAME_LEN));
        assert!(metrics.gauges().contains(&(format!("ccl_a_{long}"), 150.5)));
        assert!(metrics
            .counters()
            .contains(&("states_published".to_owned(), 3)));
        assert_eq!(metrics.bank(&long), Some(gauges));
    }
}
