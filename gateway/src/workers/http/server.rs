//! The HTTP server itself: the routes, what every response carries (the
//! password check, security headers, a time limit), and the accept loop
//! with its bounds: at most [`Limits::max_connections`] connections, each
//! dropped when a request's head (or the next one on a kept-alive
//! connection) takes longer than [`Limits::header_read_timeout`] to
//! arrive, so neither a slow-loris client nor idle keep-alives pile up.
//! HTTP/1.1 only; TLS belongs in a reverse proxy.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::web::App;
use super::{auth, download, history, web, HttpMetrics};

/// The page's Content-Security-Policy: its own script, style and
/// connections only; no inline script, no frames, no plugins.
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// Longest a request may take to be answered (the head of the response;
/// the live stream and a download's body have limits of their own).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The server's bounds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Connections open at once; more are closed at once.
    pub(super) max_connections: usize,
    /// Longest wait for a request's head, also between two requests on a
    /// kept-alive connection.
    pub(super) header_read_timeout: Duration,
    /// Longest a stopping server waits for its connections to finish.
    pub(super) drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(10),
            drain: Duration::from_secs(5),
        }
    }
}

/// Every route, behind the password (when one is set), with the security
/// headers; every route but the live stream under [`REQUEST_TIMEOUT`].
pub(super) fn router(app: App) -> Router {
    let timed = Router::new()
        .route("/", get(web::index))
        .route("/assets/app.js", get(web::script))
        .route("/assets/style.css", get(web::style))
        .route("/metrics", get(web::metrics_page))
        .route("/api/packs/{id}/history", get(history::handler))
        .route("/api/packs/{id}/samples.csv", get(download::handler))
        .layer(middleware::from_fn_with_state(app.clone(), time_limit));
    Router::new()
        .route("/api/live", get(web::live))
        .merge(timed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), password))
        .layer(middleware::from_fn(security_headers))
        .with_state(app)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Answers 401 to a request without the right password, when one is set.
async fn password(State(app): State<App>, request: Request, next: Next) -> Response {
    let Some(password) = &app.site.http.password else {
        return next.run(request).await;
    };
    if auth::authorized(
        request.headers().get(header::AUTHORIZATION),
        password.expose(),
    ) {
        return next.run(request).await;
    }
    app.shared.metrics.auth_failures.inc();
    let mut response = (StatusCode::UNAUTHORIZED, "password required\n").into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(auth::CHALLENGE),
    );
    response
}

/// Answers 503 to a request that takes longer than [`REQUEST_TIMEOUT`].
async fn time_limit(State(app): State<App>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            app.shared.metrics.requests_timed_out.inc();
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway took too long to answer; try again\n",
            )
                .into_response()
        }
    }
}

/// What every response carries: no sniffing of types, no framing, no
/// referrer, the page's script policy; API answers are never cached.
async fn security_headers(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    if api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Accepts connections on `listener` and serves `router` on each, within
/// `limits`, until `shutdown`; then lets open connections finish their
/// requests (at most [`Limits::drain`]).
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<HttpMetrics>,
    shutdown: &CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut accept_error_logged = false;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: wait a little, never spin.
                if !std::mem::replace(&mut accept_error_logged, true) {
                    tracing::warn!(%error, "accepting an HTTP connection failed");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.connections_refused.inc();
            drop(stream);
            continue;
        };
        metrics.connections.inc();
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(64 * 1024);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    let _ = tokio::time::timeout(limits.drain, connections.wait()).await;
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
