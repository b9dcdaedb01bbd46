//! A real headless browser for the tests: Debian's `chromium`, driven over
//! the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
//! messages ended by a NUL byte, commands on its fd 3, answers on its fd
//! 4). The two descriptors are named pipes the shell hands it, so no
//! WebSocket client is needed. Every wait has a timeout.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::KillOnDrop;

/// Longest wait for one answer of the browser.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The installed chromium, if any.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').chain(["/usr/bin"]) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = Path::new(dir).join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// One headless chromium with one page, closed when dropped.
pub struct Browser {
    child: KillOnDrop,
    commands: File,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromium` with a window of `width` x `height`.
    pub fn launch(chromium: &Path, width: u32, height: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let to_browser = dir.path().join("to-browser");
        let from_browser = dir.path().join("from-browser");
        for fifo in [&to_browser, &from_browser] {
            let made = Command::new("mkfifo").arg(fifo).status().unwrap();
            assert!(made.success(), "mkfifo {}", fifo.display());
        }
        let script = format!(
            "exec \"$0\" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
             --no-first-run --no-default-browser-check --disable-extensions --hide-scrollbars \
             --remote-debugging-pipe --user-data-dir='{}' --window-size={width},{height} \
             about:blank 3<'{}' 4>'{}'",
            dir.path().join("profile").display(),
            to_browser.display(),
            from_browser.display(),
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(chromium)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let child = KillOnDrop(child);
        // The shell opens its end of each pipe in this order.
        let commands = File::options().write(true).open(&to_browser).unwrap();
        let mut answers_pipe = File::open(&from_browser).unwrap();
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = [0u8; 65536];
            loop {
                let n = match answers_pipe.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(value) = serde_json::from_slice(&message[..end]) {
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            commands,
            answers,
            next_id: 1,
            session: None,
            _dir: dir,
        }
    }

    /// Sends one command (to the page, once one is open) and waits for its
    /// answer; panics on an error answer.
    fn call(&mut self, method: &str, params: Value, to_page: bool) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if to_page {
            message["sessionId"] = json!(self.session.clone().expect("a page is open"));
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer to {method}: {e}"));
            if answer["id"] == json!(id) {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page of `width` x `height`.
    pub fn open(&mut self, url: &str, width: u32, height: u32) {
        let target = self.call(
            "Target.createTarget",
            json!({ "url": "about:blank" }),
            false,
        );
        let attached = self.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
            false,
        );
        self.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
            true,
        );
        self.call("Page.navigate", json!({ "url": url }), true);
    }

    /// The value of a JavaScript expression in the page (a promise is
    /// awaited); `null` when it throws.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            true,
        );
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` every 100 ms until `done` holds for its
    /// value or `timeout` passes; the last value either way.
    pub fn wait_for(
        &mut self,
        expression: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(expression);
            if done(&value) || Instant::now() >= deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of what the page shows, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }), true);
        let png = base64_decode(shot["data"].as_str().unwrap());
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .commands
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\"}\0");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // KillOnDrop ends it otherwise.
    }
}

/// Standard base64, as the browser sends a screenshot.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let body = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut bits = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            bits |= value(*c) << (18 - 6 * i);
        }
        out.extend_from_slice(&bits.to_be_bytes()[1..chunk.len()]);
    }
    out
}
