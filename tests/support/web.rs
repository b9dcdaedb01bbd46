//! The gateway's web server read as its clients read it: plain HTTP
//! requests, the live event stream, and the pack cards of the page in a
//! browser, with the stored samples they are checked against.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use packgate::store::{SampleStore, StoredSample};
use packgate_protocol::PackId;
use serde_json::Value;

use super::browser::Browser;

/// `GET path` on `127.0.0.1:port` with an optional `Authorization`: the
/// status line, the head and the body.
pub fn get(port: u16, path: &str, authorization: Option<&str>) -> (String, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, head.to_owned(), body)
}

/// The body of a chunked response.
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// The events of the live stream read for `duration`: (event, data).
pub fn live_events(port: u16, duration: Duration) -> Vec<(String, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    write!(
        stream,
        "GET /api/live HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let deadline = Instant::now() + duration;
    let mut text = Vec::new();
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("content-type: text/event-stream"), "{text}");
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let mut name = None;
        let mut data = None;
        // Chunk sizes of the transfer encoding sit on lines of their own.
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = Some(n.to_owned());
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = Some(d.to_owned());
            }
        }
        if let (Some(name), Some(data)) = (name, data) {
            events.push((name, serde_json::from_str(&data).unwrap()));
        }
    }
    events
}

/// What the page shows of each pack, read from its cards.
const CARDS: &str = "JSON.stringify([...document.querySelectorAll('article.pack')].map(a => ({
    id: a.dataset.pack, state: a.dataset.state, seq: Number(a.dataset.seq), boot: a.dataset.boot,
    timestamp_ms: Number(a.dataset.timestampMs), updated_at: Number(a.dataset.updatedAt),
    voltage_v: a.dataset.voltageV,
    shown_voltage: a.querySelector('.v-voltage').textContent,
    shown_soc: a.querySelector('.v-soc').textContent,
    shown_current: a.querySelector('.v-current').textContent,
    cells: a.querySelectorAll('svg.cells rect.cell').length })))";

pub fn cards(browser: &mut Browser) -> Vec<Value> {
    let text = browser.eval(CARDS);
    serde_json::from_str(text.as_str().unwrap_or("[]")).unwrap()
}

/// The number before the unit of a shown value: `52.61 V` is 52.61.
pub fn shown(text: &Value) -> f64 {
    text.as_str()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The stored sample of `pack` with `boot` and `seq`, once stored.
pub fn stored(database: &Path, pack: &str, boot: &str, seq: u64) -> StoredSample {
    let pack = PackId::new(pack).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let store = SampleStore::open_read_only(database).unwrap();
        let found = store
            .latest(&pack, 50)
            .unwrap()
            .into_iter()
            .find(|r| r.sample.seq == seq && r.sample.boot_id.to_string() == boot);
        if let Some(row) = found {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "{pack} {boot}:{seq} never stored"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
