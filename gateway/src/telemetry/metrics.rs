//! Declaring a worker's metrics once: each field's name is its metric's
//! name in snapshots, so a counter is named in one place only.

/// Declares a worker's metrics struct, its `Default` and its
/// [`MetricsSource`](crate::telemetry::snapshot::MetricsSource) impl from
/// one list of counters, gauges and latency histograms.
///
/// ```ignore
/// worker_metrics! {
///     /// What the data worker has done.
///     pub struct DataMetrics {
///         counters {
///             /// Samples committed.
///             samples_stored,
///         }
///         gauges {}
///         latencies {
///             /// From poll to commit.
///             poll_to_commit: "poll_to_commit",
///         }
///     }
/// }
/// ```
#[macro_export]
macro_rules! worker_metrics {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            counters { $( $(#[$cdoc:meta])* $counter:ident ),* $(,)? }
            gauges { $( $(#[$gdoc:meta])* $gauge:ident ),* $(,)? }
            latencies { $( $(#[$ldoc:meta])* $latency:ident : $label:literal ),* $(,)? }
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis struct $name {
            $( $(#[$cdoc])* $vis $counter: $crate::telemetry::Counter, )*
            $( $(#[$gdoc])* $vis $gauge: $crate::telemetry::Gauge, )*
            $( $(#[$ldoc])* $vis $latency: $crate::telemetry::LatencyHistogram, )*
        }

        impl ::std::default::Default for $name {
            fn default() -> Self {
                Self {
                    $( $counter: $crate::telemetry::Counter::default(), )*
                    $( $gauge: $crate::telemetry::Gauge::default(), )*
                    $( $latency: $crate::telemetry::LatencyHistogram::new($label), )*
                }
            }
        }

        impl $crate::telemetry::snapshot::MetricsSource for $name {
            fn counters(&self) -> Vec<(String, u64)> {
                vec![ $( (stringify!($counter).to_owned(), self.$counter.get()), )* ]
            }

            fn gauges(&self) -> Vec<(String, f64)> {
                vec![ $( (stringify!($gauge).to_owned(), self.$gauge.get() as f64), )* ]
            }

            fn latencies(&self) -> Vec<packgate_protocol::LatencySummary> {
                vec![ $( self.$latency.summary(), )* ]
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::telemetry::snapshot::MetricsSource;

    crate::worker_metrics! {
        /// Test metrics.
        struct TestMetrics {
            counters {
                /// One.
                stored,
                /// Two.
                failed,
            }
            gauges {
                /// Three.
                depth,
            }
            latencies {
                /// Four.
                commit: "commit",
            }
        }
    }

    #[test]
    fn names_come_from_the_fields() {
        let metrics = TestMetrics::default();
        metrics.stored.add(3);
        metrics.depth.set(-2);
        metrics.commit.record_us(1_000);
        assert_eq!(
            metrics.counters(),
            [("stored".to_owned(), 3), ("failed".to_owned(), 0)]
        );
        assert_eq!(metrics.gauges(), [("depth".to_owned(), -2.0)]);
        let latencies = metrics.latencies();
        assert_eq!(latencies.len(), 1);
        assert_eq!(latencies[0].count, 1);
    }
}
