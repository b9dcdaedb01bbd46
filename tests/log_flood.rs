//! A flood of malformed messages against a running gateway (`packgate
//! run`, its log written to a file): 2,000 on the samples subject and
//! 2,000 on the command subject. Each is counted; the log gets a few WARN
//! lines, not 4,000, and the counts it reports (one per line let through,
//! plus those held back) add up to the messages sent, the last ones in a
//! summary line written once the flood has stopped. The valid samples are
//! stored exactly once all along, and the log has no colour codes.

// Tests: a failed step should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use packgate::store::MAX_DEAD_LETTER_ROWS;
use packgate_protocol::{names, PackId};
use support::cloud_process::{spawn_packgate, status_text};
use support::*;

/// Malformed messages sent on each subject.
const FLOOD: u64 = 2_000;

/// The limiter's interval: at most one line per interval per kind, and a
/// summary when an interval ends with lines held back.
const INTERVAL: Duration = Duration::from_secs(10);

/// A gateway configuration: two simulated packs polled every 100 ms, the
/// broker at `url`, `/metrics` on `http_port`.
fn write_config(dir: &Path, url: &str, http_port: u16) -> PathBuf {
    let text = format!(
        r#"data_dir = "{data}"
[broker]
url = "{url}"
[collect]
poll_interval_ms = 100
[monitor]
snapshot_interval_s = 1
[http]
listen = "127.0.0.1:{http_port}"
[[packs]]
id = "sim-01"
driver = "sim"
[[packs]]
id = "sim-02"
driver = "sim"
"#,
        data = dir.join("data").display(),
    );
    let path = dir.join("packgate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The body of `GET /metrics`, or none while nothing answers.
fn metrics(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response.split_once("\r\n\r\n")?.1.to_owned())
}

/// The value of counter `name` (any instance) in a `/metrics` page.
fn counter(page: &str, name: &str) -> Option<u64> {
    let line = page
        .lines()
        .find(|line| line.starts_with(&format!("{name}{{")))?;
    line.rsplit(' ')
        .next()?
        .parse::<f64>()
        .ok()
        .map(|v| v as u64)
}

/// What the log says about the lines of `what`: how many lines there are,
/// and how many messages they report in all (one for each line let
/// through, plus the `held_back` of each line and summary).
fn reported(log: &str, what: &str) -> (usize, u64, usize) {
    let mut lines = 0;
    let mut summaries = 0;
    let mut total = 0;
    for line in log.lines().filter(|line| line.contains(what)) {
        let held_back = logged_number(line, what, "held_back")
            .unwrap_or_else(|| panic!("no held_back in {line}"));
        assert!(line.contains("WARN"), "{line}");
        lines += 1;
        if line.contains("more like this in the last") {
            summaries += 1;
            assert!(
                line.contains(&format!("{held_back} more like this")),
                "the count in the text is the held_back: {line}"
            );
            total += held_back;
        } else {
            total += 1 + held_back;
        }
    }
    (lines, total, summaries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_messages_makes_a_few_lines_that_count_them_all() {
    let broker = TestBroker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let config = write_config(dir.path(), &broker.url(), http_port);
    let log_path = dir.path().join("log");
    let mut gateway = spawn_packgate("run", &config, &log_path);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let database = dir.path().join("data").join("samples.db");
    assert!(
        eventually(Duration::from_secs(30), || stored_count(&database) >= 20
            && metrics(http_port).is_some())
        .await,
        "the gateway does not store or serve; log:\n{}",
        log()
    );
    // Written to a file, the log is plain text.
    let started_log = log();
    assert!(started_log.contains("INFO"), "{started_log}");
    assert!(
        !started_log.contains('\u{1b}'),
        "colour codes in a log written to a file:\n{started_log}"
    );

    // The flood: undecodable bytes on a pack's samples subject (through
    // JetStream, each acked by the broker) and on the command subject.
    let client = async_nats::connect(broker.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let subject = names::sample_subject(&PackId::new("flood").unwrap());
    let started = Instant::now();
    for chunk in 0..FLOOD / 100 {
        let mut acks = Vec::new();
        for n in 0..100 {
            let payload = format!("junk {}", chunk * 100 + n).into_bytes();
            acks.push(js.publish(subject.clone(), payload.into()).await.unwrap());
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    for n in 0..FLOOD {
        let payload = format!("not a command {n}").into_bytes();
        client
            .publish(names::CONTROL_SUBJECT, payload.into())
            .await
            .unwrap();
        if n % 100 == 99 {
            client.flush().await.unwrap();
        }
    }
    client.flush().await.unwrap();

    // Every one is counted, ...
    let counted = || {
        let page = metrics(http_port).unwrap_or_default();
        (
            counter(&page, "packgate_data_messages_malformed_total"),
            counter(&page, "packgate_control_malformed_total"),
        )
    };
    assert!(
        eventually(Duration::from_secs(60), || counted()
            == (Some(FLOOD), Some(FLOOD)))
        .await,
        "malformed (data, control) in /metrics: {:?}",
        counted()
    );
    // ... and once the flood is over, the summary lines come without
    // any further message: the log's counts add up to the messages.
    // The line's message, or the end of its summary's.
    const SAMPLES: &str = ": malformed message on the samples stream";
    const COMMANDS: &str = ": malformed command ";
    assert!(
        eventually(INTERVAL * 3, || {
            let log = log();
            reported(&log, SAMPLES).1 >= FLOOD && reported(&log, COMMANDS).1 >= FLOOD
        })
        .await,
        "the log does not report every malformed message: samples {:?}, commands {:?}",
        reported(&log(), SAMPLES),
        reported(&log(), COMMANDS)
    );
    let elapsed = started.elapsed();
    let text = log();
    // At most a line and a summary per interval per kind.
    let bound = 2 * (elapsed.as_secs() / INTERVAL.as_secs() + 1) as usize;
    for what in [SAMPLES, COMMANDS] {
        let (lines, total, summaries) = reported(&text, what);
        assert_eq!(total, FLOOD, "{what}: counts in the log");
        assert!(
            lines <= bound,
            "{what}: {lines} lines in {elapsed:?} (at most {bound})"
        );
        assert!(summaries >= 1, "{what}: no summary line");
    }
    for line in text.lines().filter(|line| line.contains("WARN")) {
        eprintln!("{line}");
    }
    // Those over the origin's rate are counted, and so reported.
    let page = metrics(http_port).unwrap_or_default();
    let rate_limited = counter(&page, "packgate_control_rate_limited_total").unwrap();
    assert!(rate_limited > 0);
    // Their own line and summary run on their own interval, which may
    // have begun a moment after the malformed lines'.
    const RATE: &str = ": too many commands: refused";
    assert!(
        eventually(INTERVAL * 2, || reported(&log(), RATE).1 == rate_limited).await,
        "rate-limited commands: {:?} in the log, {rate_limited} counted",
        reported(&log(), RATE)
    );
    let text = log();
    let warnings = text.lines().filter(|line| line.contains("WARN")).count();
    assert!(
        warnings <= 30,
        "{warnings} WARN lines for {} malformed messages:\n{text}",
        2 * FLOOD
    );
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log written to a file:\n{text}"
    );

    // The flood cost the samples nothing: stored exactly once, all of the
    // stream but the malformed ones; and status shows the dead letters
    // kept (the newest, up to the table's bound).
    let status = status_text(&config);
    let kept = FLOOD.min(MAX_DEAD_LETTER_ROWS as u64);
    assert!(
        status.contains(&format!(
            "dead letters: {kept} samples could never be stored"
        )),
        "{status}"
    );

    // A last few just before the gateway stops: the first makes a line,
    // the others, held back, are counted when it stops, well within
    // their interval.
    const LAST: u64 = 5;
    for n in 0..LAST {
        let payload = format!("last junk {n}").into_bytes();
        js.publish(subject.clone(), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert!(
        eventually(Duration::from_secs(20), || counted().0
            == Some(FLOOD + LAST))
        .await,
        "malformed (data, control) in /metrics: {:?}",
        counted()
    );
    sigterm_and_wait(&mut gateway.0);
    let text = log();
    assert_eq!(
        reported(&text, SAMPLES).1,
        FLOOD + LAST,
        "the counts held back when the gateway stopped:\n{text}"
    );
    let stored = assert_exactly_once(&database, 2, false);
    let in_stream = stream_messages(&broker.url(), names::SAMPLES_STREAM.name).await;
    assert_eq!(
        stored + FLOOD + LAST,
        in_stream,
        "stored {stored}, in the stream {in_stream}"
    );
}
