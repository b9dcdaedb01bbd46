//! The gateway as a process against a local broker and a stand-in cloud:
//! its configuration file, starting and stopping it, `packgate status`,
//! and what each stream holds per pack, in stream order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use packgate_protocol::{decode, BootId, Event, PackId, Sample};

use super::KillOnDrop;

/// Writes a configuration for `packs` simulated packs polled every 200 ms,
/// the local broker at `local_url` and the cloud at `cloud_url`; returns
/// its path. `extra_cloud` is added to the `[cloud]` section (the request
/// timeout is 2 s unless it says otherwise).
pub fn write_config(
    dir: &Path,
    local_url: &str,
    cloud_url: &str,
    gateway_id: &str,
    packs: usize,
    extra_cloud: &str,
) -> PathBuf {
    write_config_urls(
        dir,
        local_url,
        &[cloud_url.to_owned()],
        gateway_id,
        packs,
        extra_cloud,
    )
}

/// [`write_config`] with several cloud URLs (the nodes of a cluster).
pub fn write_config_urls(
    dir: &Path,
    local_url: &str,
    cloud_urls: &[String],
    gateway_id: &str,
    packs: usize,
    extra_cloud: &str,
) -> PathBuf {
    let cloud_urls = cloud_urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        r#"data_dir = "{data}"
[broker]
url = "{local_url}"
[collect]
poll_interval_ms = 200
[monitor]
snapshot_interval_s = 1
[http]
listen = "127.0.0.1:0"
[cloud]
enabled = true
urls = [{cloud_urls}]
gateway_id = "{gateway_id}"
upload_interval_ms = 500
retry_backoff_max_ms = 1000
{extra_cloud}
"#,
        data = dir.join("data").display(),
    );
    if !extra_cloud.contains("request_timeout_ms") {
        text.push_str("request_timeout_ms = 2000\n");
    }
    for n in 1..=packs {
        text.push_str(&format!(
            "[[packs]]\nid = \"sim-{n:02}\"\ndriver = \"sim\"\n"
        ));
    }
    let path = dir.join("packgate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `packgate run --config CONFIG`, its log appended to `log`.
pub fn spawn_gateway(config: &Path, log: &Path) -> KillOnDrop {
    spawn_packgate("run", config, log)
}

/// `packgate COMMAND --config CONFIG` (`run`, or one worker such as
/// `cloud`), its log appended to `log`.
pub fn spawn_packgate(command: &str, config: &Path, log: &Path) -> KillOnDrop {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_packgate"))
            .arg(command)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", gateway_log_filter())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// The log filter of spawned gateways: `info`, or what
/// `PACKGATE_TEST_RUST_LOG` says when a failing run is being diagnosed.
fn gateway_log_filter() -> String {
    std::env::var("PACKGATE_TEST_RUST_LOG").unwrap_or_else(|_| "info".to_owned())
}

/// The output of `packgate status --config CONFIG`.
pub fn status_text(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_packgate"))
        .arg("status")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line of `status` output after its `Cloud link` heading.
pub fn cloud_line(status: &str) -> String {
    let mut lines = status.lines().skip_while(|l| l.trim() != "Cloud link");
    lines.nth(1).unwrap_or_default().trim().to_owned()
}

/// Every sample or event of `stream` (only subjects matching `filter`,
/// when given), per pack, in stream order, as `(boot, seq)`: what the
/// stream held when called (it may grow meanwhile).
pub async fn keys_in_stream_order(
    client: &async_nats::Client,
    stream: &str,
    filter: Option<&str>,
) -> BTreeMap<PackId, Vec<(BootId, u64)>> {
    try_keys_in_stream_order(client, stream, filter)
        .await
        .unwrap_or_else(|error| panic!("reading {stream}: {error}"))
}

/// [`keys_in_stream_order`], or why the stream could not be read (a
/// cluster electing a leader, say).
pub async fn try_keys_in_stream_order(
    client: &async_nats::Client,
    stream: &str,
    filter: Option<&str>,
) -> Result<BTreeMap<PackId, Vec<(BootId, u64)>>, String> {
    let js = jetstream::new(client.clone());
    let mut stream = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let last = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .last_sequence;
    let reader: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: filter.unwrap_or_default().to_owned(),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let read = read_up_to(&reader, last).await;
    // The reader goes at once rather than lingering for its inactivity
    // threshold: a test that looks often would otherwise pile them up.
    let name = reader.cached_info().name.clone();
    let _ = stream.delete_consumer(&name).await;
    read
}

/// What `reader` delivers up to stream sequence `last`, per pack.
async fn read_up_to(
    reader: &consumer::PullConsumer,
    last: u64,
) -> Result<BTreeMap<PackId, Vec<(BootId, u64)>>, String> {
    let mut per_pack: BTreeMap<PackId, Vec<(BootId, u64)>> = BTreeMap::new();
    loop {
        let mut batch = reader
            .fetch()
            .max_messages(1_000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| e.to_string())?;
            if message.info().unwrap().stream_sequence > last {
                return Ok(per_pack);
            }
            let key = match decode::<Sample>(&message.payload) {
                Ok(s) => (s.pack_id, s.boot_id, s.seq),
                Err(_) => {
                    let e: Event = decode(&message.payload).unwrap();
                    (e.pack_id, e.boot_id, e.seq)
                }
            };
            per_pack.entry(key.0).or_default().push((key.1, key.2));
            got += 1;
        }
        if got == 0 {
            return Ok(per_pack);
        }
    }
}

/// Asserts that, for every pack, what the cloud holds is the start of what
/// the local stream holds, in the same order: nothing skipped, nothing
/// twice, nothing ahead of what came before it. Returns the cloud's total.
pub fn assert_prefix_of_local(
    what: &str,
    cloud: &BTreeMap<PackId, Vec<(BootId, u64)>>,
    local: &BTreeMap<PackId, Vec<(BootId, u64)>>,
) -> usize {
    let mut total = 0;
    for (pack, got) in cloud {
        let want = local.get(pack).map(Vec::as_slice).unwrap_or_default();
        assert!(
            got.len() <= want.len(),
            "{what} {pack}: the cloud holds {} messages, the local stream {}",
            got.len(),
            want.len()
        );
        if let Some(at) = got.iter().zip(want).position(|(g, w)| g != w) {
            panic!(
                "{what} {pack}: cloud order differs from the local stream at #{at}: \
                 the cloud has {:?}, the local stream {:?} (cloud {:?}..)",
                got[at],
                want[at],
                &got[at..got.len().min(at + 5)]
            );
        }
        total += got.len();
    }
    total
}
