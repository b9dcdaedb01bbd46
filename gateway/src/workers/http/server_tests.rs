//! The server's bounds and what every response carries, on a real
//! loopback socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::*;
use crate::config::{Config, Secret};
use crate::workers::http::web::Site;
use crate::workers::http::Shared;

/// The full router of a worker with `password`, served on a free port
/// within `limits`.
async fn start(
    password: Option<&str>,
    limits: Limits,
) -> (u16, Arc<HttpMetrics>, CancellationToken) {
    let mut config = Config {
        // No stores there: the handlers say so.
        data_dir: std::env::temp_dir().join("packgate-server-tests-no-such-dir"),
        ..Config::default()
    };
    config.http.password = password.map(Secret::from);
    let metrics = Arc::new(HttpMetrics::default());
    let shared = Shared::new(Arc::clone(&metrics));
    let shutdown = CancellationToken::new();
    let (_tx, rx) = watch::channel(Arc::<str>::from("{}"));
    let app = App::new(
        Arc::new(Site::new(
            config.http.clone(),
            crate::workers::GatewayView::of(&config),
            &config.data_dir,
        )),
        shared,
        rx,
        shutdown.clone(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, served) = (shutdown.clone(), Arc::clone(&metrics));
    tokio::spawn(async move { serve(listener, router(app), limits, served, &stop).await });
    (port, metrics, shutdown)
}

/// `GET path` with `Connection: close` and an optional `Authorization`;
/// the head and the body.
async fn get(port: u16, path: &str, authorization: Option<&str>) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// How long until the server closes `stream` (reads nothing but EOF).
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the server closes the connection")
            .unwrap_or(0);
        if n == 0 {
            return start.elapsed();
        }
    }
}

#[tokio::test]
async fn slow_heads_and_idle_keep_alives_are_dropped_and_connections_capped() {
    let limits = Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_millis(300),
        drain: Duration::from_secs(1),
    };
    let (port, metrics, shutdown) = start(None, limits).await;
    // A head that never ends (slow loris).
    let mut slow = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ")
        .await
        .unwrap();
    // A connection kept alive after its answer.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    idle.write_all(b"GET /assets/style.css HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // A third at once is over the cap: closed straight away.
    let mut third = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(closed_after(&mut third).await < Duration::from_millis(250));
    assert_eq!(metrics.connections_refused.get(), 1);
    let slow_for = closed_after(&mut slow).await;
    let idle_for = closed_after(&mut idle).await;
    assert!(slow_for >= Duration::from_millis(150), "{slow_for:?}");
    assert!(idle_for < Duration::from_secs(2), "{idle_for:?}");
    // Both places are free again.
    let (head, _) = get(port, "/assets/style.css", None).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    shutdown.cancel();
}

#[tokio::test]
async fn responses_carry_the_security_headers_and_the_password_is_asked() {
    let (port, metrics, shutdown) = start(Some("s3cret"), Limits::default()).await;
    for path in ["/", "/metrics", "/api/live", "/api/packs/p1/history"] {
        let (head, _) = get(port, path, None).await;
        assert!(head.starts_with("HTTP/1.1 401"), "{path}: {head}");
        assert!(
            head.contains("www-authenticate: Basic realm=\"packgate\""),
            "{head}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        // "packgate:wrong"
        let (head, _) = get(port, path, Some("Basic cGFja2dhdGU6d3Jvbmc=")).await;
        assert!(head.starts_with("HTTP/1.1 401"), "{path}: {head}");
    }
    assert_eq!(metrics.auth_failures.get(), 8);
    // "packgate:s3cret"
    let good = Some("Basic cGFja2dhdGU6czNjcmV0");
    let (head, body) = get(port, "/", good).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains(&format!(
        "content-security-policy: {CONTENT_SECURITY_POLICY}"
    )));
    assert!(head.contains("x-frame-options: DENY"), "{head}");
    assert!(body.contains("<script src=\"/assets/app.js\""), "{body}");
    // The page needs no inline script: the policy would block it.
    assert!(!body.contains("<script>"), "{body}");
    let (head, body) = get(port, "/metrics", good).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("packgate_build_info"), "{body}");
    let (head, _) = get(port, "/api/packs/p1/history", good).await;
    assert!(head.starts_with("HTTP/1.1 404"), "an unknown pack: {head}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    let (head, _) = get(port, "/api/packs/..%2Fetc/samples.csv", good).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let (head, _) = get(port, "/nothing", good).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    shutdown.cancel();
}
