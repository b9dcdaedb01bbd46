//! The realistic bench: simulated Modbus TCP devices served by a separate
//! `packgate sim` process, one endpoint per device, so the gateway polls
//! them over real sockets and its figures hold no simulator work.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use packgate_protocol::PackId;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::BenchError;
use crate::config::{BusConfig, BusLinkConfig, Config, ModbusTcpBusConfig, PackConfig};

/// How long the devices process may take to listen on every endpoint.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to exit once told to.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The profile the simulated devices answer to: one block of 64 holding
/// registers per poll.
pub const PROFILE: &str = "packgate-sim";
/// Holding registers read per poll with [`PROFILE`].
pub const REGISTERS_PER_POLL: u16 = 64;

/// The running devices process and the endpoints it serves.
#[derive(Debug)]
pub struct Devices {
    child: Child,
    /// `host:port` of each device, in order.
    pub addresses: Vec<String>,
}

/// The address announced on one line of `packgate sim`'s output
/// (`modbus-tcp 127.0.0.1:40123 units 1..=1`), if it is one.
pub fn announced_address(line: &str) -> Option<&str> {
    let mut words = line.strip_prefix("modbus-tcp ")?.split_whitespace();
    words.next()
}

impl Devices {
    /// Starts `executable sim` serving `count` single-pack Modbus TCP
    /// devices on free ports of 127.0.0.1, and waits until each listens.
    pub async fn start(executable: &Path, count: u16) -> Result<Self, BenchError> {
        let mut child = Command::new(executable)
            .args(["sim", "--packs", "1", "--modbus-tcp", "127.0.0.1:0"])
            .arg("--devices")
            .arg(count.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(BenchError::Devices)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Devices(std::io::ErrorKind::BrokenPipe.into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut addresses = Vec::with_capacity(usize::from(count));
        let read = async {
            while addresses.len() < usize::from(count) {
                match lines.next_line().await? {
                    Some(line) => addresses.extend(announced_address(&line).map(str::to_owned)),
                    None => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                }
            }
            Ok::<(), std::io::Error>(())
        };
        match tokio::time::timeout(START_TIMEOUT, read).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(BenchError::Devices(error)),
            Err(_) => return Err(BenchError::Devices(std::io::ErrorKind::TimedOut.into())),
        }
        // Keep the pipe drained so the simulator never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, addresses })
    }

    /// Stops the devices process and waits for it (bounded).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await;
    }

    /// The process id of the devices process.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Adds one Modbus TCP bus and one pack (unit 1, [`PROFILE`]) per address
/// to `config`: `tcp-001` carrying `mb-001`, and so on.
pub fn configure(config: &mut Config, addresses: &[String]) {
    let width = addresses.len().to_string().len().max(3);
    for (n, address) in addresses.iter().enumerate() {
        let bus = format!("tcp-{:0width$}", n + 1);
        if let Ok(id) = PackId::new(format!("mb-{:0width$}", n + 1)) {
            config.packs.push(PackConfig::modbus(id, &bus, 1, PROFILE));
        }
        config.buses.push(BusConfig {
            name: bus,
            link: BusLinkConfig::ModbusTcp(ModbusTcpBusConfig {
                address: address.clone(),
                request_timeout_ms: None,
                inter_frame_gap_ms: None,
                reconnect_backoff_max_ms: 5_000,
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_address_is_read_from_the_simulator_line() {
        assert_eq!(
            announced_address("modbus-tcp 127.0.0.1:40123 units 1..=1"),
            Some("127.0.0.1:40123")
        );
        assert_eq!(announced_address("modbus-rtu /dev/pts/3 9600 baud"), None);
        assert_eq!(announced_address("modbus-tcp"), None);
    }

    #[test]
    fn each_device_is_a_bus_of_its_own_with_one_pack() {
        let mut config = Config::default();
        configure(
            &mut config,
            &["127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned()],
        );
        assert_eq!(config.buses.len(), 2);
        assert_eq!(config.packs.len(), 2);
        assert_eq!(config.buses[1].name, "tcp-002");
        assert_eq!(config.packs[1].id.as_str(), "mb-002");
        match &config.buses[1].link {
            BusLinkConfig::ModbusTcp(tcp) => assert_eq!(tcp.address, "127.0.0.1:2"),
            other => panic!("{other:?}"),
        }
    }
}
