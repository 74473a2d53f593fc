//! The HTTP listener (`[http] listen`): the DICOMweb routes the daemon hands in (STOW-RS,
//! `ingest::stow`) and what an administrator or orchestrator polls: `/healthz` (the process
//! serves), `/readyz` (it can take and keep instances now, or the reasons it cannot),
//! `/metrics` (Prometheus text). What it checks comes in as values and closures, so `ops`
//! imports nothing of the stages it watches.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use super::health::Health;
use super::metrics::metrics;
use crate::shutdown::{Done, Shutdown};
use crate::store::{InstanceWriter, Store};

/// The HTTP listener's settings (`[http]` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address and port of the HTTP listener.
    pub listen: String,
    /// Largest STOW-RS request body, MiB; a larger one is answered 413.
    pub max_body_mb: u64,
    /// When set, STOW-RS requests must carry `Authorization: Bearer <token>`.
    pub bearer_token: String,
    /// A STOW-RS client that sends nothing for this long mid-body is answered 408.
    pub timeout_seconds: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:8080".into(),
            max_body_mb: 2048,
            bearer_token: String::new(),
            timeout_seconds: 30,
        }
    }
}

impl HttpSettings {
    pub fn validate(&self) -> Result<(), String> {
        self.listen_addr()?;
        if self.max_body_mb == 0 {
            return Err("max_body_mb must be at least 1".into());
        }
        if self.timeout_seconds == 0 {
            return Err("timeout_seconds must be at least 1".into());
        }
        if self.bearer_token.chars().any(|c| !c.is_ascii_graphic()) {
            return Err("bearer_token may hold printable ASCII only, no spaces".into());
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen
            .parse()
            .map_err(|_| format!("listen {:?} is not an address:port", self.listen))
    }
}

/// The HTTP listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("[http] {0}")]
    Settings(String),
    #[error("cannot listen on {addr} ([http] listen): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Whether the spool is above its free-space watermark; the reason when it is not.
pub type RoomCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the operations endpoints look at.
pub struct Ops {
    pub store: Arc<Store>,
    /// Ingest's group-commit writer: instances cannot be acknowledged without it.
    pub writer: InstanceWriter,
    pub spool_room: RoomCheck,
    /// `[storage] dir`, for the free-space gauge.
    pub storage_dir: PathBuf,
    pub health: Health,
    /// `[model] weights` is set, so the X-ray model must be loaded.
    pub model_configured: bool,
    pub model_loaded: bool,
    /// The last readiness check and when it ran (`readyz`).
    pub last_ready: tokio::sync::Mutex<Option<(std::time::Instant, Vec<String>)>>,
}

/// How long a readiness answer is reused.
const READY_REUSE: Duration = Duration::from_secs(1);

/// How long `/readyz` waits for the database before calling it not ready.
const DATABASE_PATIENCE: Duration = Duration::from_secs(5);

/// Bind `[http] listen` (at start-up, so that a taken port stops the daemon with its address).
pub async fn bind(settings: &HttpSettings) -> Result<TcpListener, HttpError> {
    let addr = settings.listen_addr().map_err(HttpError::Settings)?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Every route of the listener: the operations endpoints and `dicomweb` (STOW-RS).
pub fn router(ops: Arc<Ops>, dicomweb: Router) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(ops)
        .merge(dicomweb)
}

/// Connections served at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 256;
/// Connections one address may hold open at once, so that one client cannot take every
/// place (and the orchestrator's probes with them).
pub const MAX_PER_ADDRESS: usize = 64;
/// How long requests in flight get to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(40);

/// Serve until shutdown; requests in flight (a STOW-RS upload) get `DRAIN` to finish.
/// A connection must send its request headers within `header_timeout` (hyper waits for
/// ever unless given a timer), and at most `MAX_CONNECTIONS` are open at once
/// (`MAX_PER_ADDRESS` from one address): idle or
/// trickling connections must not exhaust file descriptors nor hold the shutdown. The
/// routes must not need more than `ConnectInfo<SocketAddr>` from the server.
pub async fn run(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    mut shutdown: Shutdown,
    done: Done,
) {
    let places = crate::places::Slots::new(MAX_CONNECTIONS, MAX_PER_ADDRESS);
    let (closing, _) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::error!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.recv() => break,
        };
        while connections.try_join_next().is_some() {}
        let place = match places.try_take(peer.ip()) {
            Ok(place) => place,
            Err(full) => {
                let held = match full {
                    crate::places::Full::Total(n) => format!("{n} already open"),
                    crate::places::Full::Peer(n) => format!("{n} already open from this address"),
                };
                tracing::warn!(peer = %peer.ip(), "HTTP connection closed: {held}");
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(
            app.clone().layer(axum::Extension(ConnectInfo(peer))),
        );
        let mut closing = closing.subscribe();
        connections.spawn(async move {
            let _place = place;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = closing.changed() => {
                    // Finish the request in flight, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(peer = %peer.ip(), error = %e, "HTTP connection ended");
            }
        });
    }
    let _ = closing.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        tracing::warn!(
            "HTTP requests still in flight {} s into the shutdown: cut off",
            DRAIN.as_secs()
        );
        connections.abort_all();
    }
    tracing::info!("HTTP listener stopped");
    drop(done);
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    // One check at a time, its answer reused for a second: a flood of probes must not
    // become a flood of database writes.
    let mut last = ops.last_ready.lock().await;
    let reasons = match last.as_ref() {
        Some((at, reasons)) if at.elapsed() < READY_REUSE => reasons.clone(),
        _ => {
            let reasons = ops.not_ready().await;
            *last = Some((std::time::Instant::now(), reasons.clone()));
            reasons
        }
    };
    drop(last);
    if reasons.is_empty() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    tracing::debug!(reasons = %reasons.join("; "), "not ready");
    let body: String = reasons.iter().map(|r| format!("{r}\n")).collect();
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

impl Ops {
    /// Why the daemon cannot take and keep instances now; empty when it can.
    async fn not_ready(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        let store = self.store.clone();
        let write = tokio::task::spawn_blocking(move || store.check_writable());
        match tokio::time::timeout(DATABASE_PATIENCE, write).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => reasons.push(format!("database not writable: {e}")),
            Ok(Err(e)) => reasons.push(format!("database check failed: {e}")),
            Err(_) => reasons.push(format!(
                "database did not answer within {} s",
                DATABASE_PATIENCE.as_secs()
            )),
        }
        if !self.writer.is_alive() {
            reasons.push("database writer has stopped".into());
        }
        if let Err(reason) = (self.spool_room)() {
            reasons.push(reason);
        }
        if self.model_configured && !self.model_loaded {
            reasons.push("X-ray model ([model] weights) not loaded".into());
        }
        for (part, since) in self.health.stalled() {
            reasons.push(format!(
                "{part} stalled: no heartbeat for {} s",
                since.as_secs()
            ));
        }
        reasons
    }
}

async fn metrics_text(State(ops): State<Arc<Ops>>) -> Response {
    let (store, dir) = (ops.store.clone(), ops.storage_dir.clone());
    let refreshed = tokio::task::spawn_blocking(move || {
        let stats = store.queue_stats().map_err(|e| e.to_string())?;
        let free = crate::fsutil::free_bytes(&dir).map_err(|e| e.to_string())?;
        metrics().refresh_gauges(&stats, free);
        Ok::<_, String>(())
    })
    .await;
    // Counters are still worth serving with stale gauges; say so in the log.
    match refreshed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics gauges not refreshed"),
        Err(e) => tracing::warn!(error = %e, "metrics gauges not refreshed"),
    }
    let mut response = metrics().render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
