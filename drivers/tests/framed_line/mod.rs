//! A simulated framed BMS line on a real pseudo-terminal pair, shared by
//! the framed protocols' end-to-end tests: the simulator serves the units
//! on one end, a [`SerialFrameLink`] holds the other.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::time::Duration;

use packgate_drivers::bms::{SerialFrameLink, SerialLineConfig};
use packgate_protocol::PackReading;
use packgate_sim::serve::framed::{serve_framed, FramedDevice, FramedServerOptions, FramedUnit};
use packgate_sim::serve::CancellationToken;
use packgate_sim::{LoadProfile, SimPack, SimPackConfig};
use tokio::task::JoinHandle;
use tokio_serial::SerialStream;

/// Each request's deadline on the test line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(250);

/// A pack with a constant load of `current_a` (positive charges), seeded
/// by `seed`, already running (a new model carries no current until its
/// first step).
pub fn pack(current_a: f64, seed: u64) -> SimPack {
    let config = SimPackConfig {
        load: LoadProfile::Constant { current_a },
        ..SimPackConfig::default()
    }
    .for_pack_index(seed);
    let pack = SimPack::new(&config);
    pack.advance(1.0);
    pack
}

/// The line: the link, the server's options (for its counters) and its
/// task.
pub struct Line {
    pub link: SerialFrameLink,
    pub options: FramedServerOptions,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl Line {
    /// `units` served as BMSs speaking `D` on one end of a pty pair; the
    /// link takes the other.
    pub fn start<D: FramedDevice>(units: &[FramedUnit]) -> Line {
        let (device, host) = SerialStream::pair().unwrap();
        let mut config = SerialLineConfig::new("/nonexistent/packgate-test-line", 115_200);
        config.request_timeout = REQUEST_TIMEOUT;
        config.inter_frame_gap = Duration::from_millis(2);
        let options = FramedServerOptions {
            seed: 11,
            ..FramedServerOptions::default()
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_framed::<D, _>(
            device,
            units.to_vec(),
            options.clone(),
            shutdown.clone(),
        ));
        Line {
            link: SerialFrameLink::with_port(config, host),
            options,
            shutdown,
            server,
        }
    }

    /// Stops the server and checks it ended cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.unwrap().unwrap();
    }
}

/// The resolution a protocol carries each field with.
#[derive(Debug, Clone, Copy)]
pub struct Resolution {
    pub pack_voltage_v: f32,
    pub current_a: f32,
    pub soc_pct: f32,
    pub cell_v: f32,
    pub temperature_c: f32,
}

fn close(polled: f32, held: f32, step: f32, what: &str) {
    // One step: the pack moved a little between the request and now, so a
    // value may round to the neighbouring step.
    assert!(
        (polled - held).abs() <= step + 1e-4,
        "{what}: polled {polled}, held {held}"
    );
}

/// The polled reading equals the one the simulator holds, field by field,
/// within `r`; balancing only where `balancing` (the protocol reports it).
pub fn assert_matches(polled: &PackReading, held: &PackReading, r: Resolution, balancing: bool) {
    close(
        polled.pack_voltage_v,
        held.pack_voltage_v,
        r.pack_voltage_v,
        "pack voltage",
    );
    close(polled.current_a, held.current_a, r.current_a, "current");
    close(polled.soc_pct, held.soc_pct, r.soc_pct, "soc");
    assert_eq!(polled.cell_voltages_v.0.len(), held.cell_voltages_v.0.len());
    for (a, b) in polled.cell_voltages_v.0.iter().zip(&held.cell_voltages_v.0) {
        close(*a, *b, r.cell_v, "cell voltage");
    }
    assert_eq!(polled.temperatures_c.0.len(), held.temperatures_c.0.len());
    for (a, b) in polled.temperatures_c.0.iter().zip(&held.temperatures_c.0) {
        close(*a, *b, r.temperature_c, "temperature");
    }
    if balancing {
        assert_eq!(polled.balancing, held.balancing);
    } else {
        assert_eq!(polled.balancing.0, 0, "not reported: no cell");
    }
    assert_eq!(polled.alarms, held.alarms);
    assert_eq!(polled.charge_enabled, held.charge_enabled);
    assert_eq!(polled.discharge_enabled, held.discharge_enabled);
    polled.validate().unwrap();
}
