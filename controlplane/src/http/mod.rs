//! The HTTP side of the relay (default 127.0.0.1:9900): Prometheus `/metrics`, a
//! JSON API with the facts NG `query` and `statistics` give, health probes, and
//! the live dashboard (assets from `perf/dashboard/`, embedded in the binary).
//! Every handler reads published snapshots or takes the controller lock briefly;
//! none of them waits on a worker.

mod json;
mod live;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use json::{CallView, port_pairs_total, to_json};
pub use live::LiveFeed;

use crate::metrics::{Observatory, render};
use crate::ng::server::Shared;
use crate::relay::{DataplaneBackend, RelayHandle};

/// How often the live feed sends a frame (workers report once a second).
pub const LIVE_EVERY: Duration = Duration::from_secs(1);

const INDEX_HTML: &str = include_str!("../../../perf/dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("../../../perf/dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../../../perf/dashboard/dashboard.css");

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct HttpState {
    ctl: Shared<DataplaneBackend>,
    obs: Arc<Observatory>,
    port_pairs_total: u64,
    stop: watch::Receiver<bool>,
}

/// A running HTTP server.
#[derive(Debug)]
pub struct HttpHandle {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Binds `addr` and serves the relay's metrics, API and dashboard.
pub async fn start(
    addr: SocketAddr,
    relay: &RelayHandle,
    port_pairs_total: u64,
) -> std::io::Result<HttpHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let state = HttpState {
        ctl: relay.controller().clone(),
        obs: relay.observatory().clone(),
        port_pairs_total,
        stop: stop_rx.clone(),
    };
    let app = router(state);
    let mut done = stop_rx;
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = done.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    tracing::info!(%addr, "HTTP metrics, API and dashboard listening");
    Ok(HttpHandle { addr, stop, task })
}

impl HttpHandle {
    /// Ends live feeds, stops accepting and waits for open requests.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/dashboard.js",
            get(|| asset("text/javascript; charset=utf-8", DASHBOARD_JS)),
        )
        .route(
            "/dashboard.css",
            get(|| asset("text/css; charset=utf-8", DASHBOARD_CSS)),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/calls", get(calls))
        .route("/api/v1/calls/{call_id}", get(call))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/live", get(live))
        .with_state(state)
}

async fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn metrics(State(st): State<HttpState>) -> Response {
    let calls = st.calls();
    let facts = st.facts(&calls);
    let body = render(facts, st.obs.samples());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn readyz(State(st): State<HttpState>) -> Response {
    if st.obs.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first report of every worker\n",
        )
            .into_response()
    }
}

async fn calls(State(st): State<HttpState>) -> Response {
    let list: Vec<_> = st.calls().iter().map(CallView::to_json).collect();
    axum::Json(serde_json::json!({ "calls": list })).into_response()
}

async fn call(State(st): State<HttpState>, Path(call_id): Path<String>) -> Response {
    match st.call(&call_id) {
        Some(c) => axum::Json(c.to_json()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": "Unknown call-id" })),
        )
            .into_response(),
    }
}

async fn stats(State(st): State<HttpState>) -> Response {
    let mut feed = LiveFeed::default();
    let mut j = st.statistics();
    if let Some(m) = j.as_object_mut() {
        m.remove("result");
        m.insert("relay".into(), feed.frame(&st));
    }
    axum::Json(j).into_response()
}

/// Server-sent events: a frame at once, then one every [`LIVE_EVERY`], until the
/// client leaves or the server stops.
async fn live(
    State(st): State<HttpState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let feed = LiveFeed::default();
    let mut iv = tokio::time::interval(LIVE_EVERY);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold((st, feed, iv), |(st, mut feed, mut iv)| async {
        let mut stop = st.stop.clone();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return None,
            _ = iv.tick() => {}
        }
        let frame = feed.frame(&st);
        let ev = SseEvent::default().event("frame").data(frame.to_string());
        Some((Ok(ev), (st, feed, iv)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
