//! `switchyard dashboard`: a live web view of one namespace, served by the binary.
//!
//! * [`sampler`] reads `stats` once per refresh (one script call, bounded by queues, workers
//!   and tasks in flight — not by how many tasks are stored) and turns it into the snapshot
//!   every page receives; however many pages are open, Redis sees one read per refresh.
//! * [`api`] answers the page: the snapshot pushed as server-sent events, a task by id, a dead
//!   set, and the actions (re-drive, cancel, delete a task; pause, resume, purge a queue),
//!   which are refused unless `--allow-actions`.
//! * The page itself (`assets/`) is embedded in the binary: no CDN, works offline.
//!
//! Safe by default: it binds loopback, actions are off, and `--token` (or
//! `SWITCHYARD_DASHBOARD_TOKEN`) makes every API request carry `Authorization: Bearer <token>`
//! (the page passes it on from its own address: `http://host:port/?token=<token>`).

mod api;
mod browse;
mod export;
mod sampler;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Args;
use switchyard::Client;

use crate::remote::{Remote, runtime};

/// Flags of `switchyard dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// Where to serve the page. The default is reachable from this machine only; to reach it
    /// from elsewhere bind another address, and set `--token`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Allow the page to act: re-drive, cancel and delete tasks, pause and resume queues, purge
    /// dead-letter sets. Without it the page only looks, and every action is refused with a
    /// message saying so.
    #[arg(long)]
    pub allow_actions: bool,

    /// Require this bearer token on every request (`Authorization: Bearer <token>`, or
    /// `?token=<token>` in the page's address). Never shown.
    #[arg(long, env = "SWITCHYARD_DASHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// How often to read the namespace, in ms (one `stats` call each time).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub refresh_ms: u64,
}

/// What every request handler shares.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) allow_actions: bool,
    token: Option<String>,
    pub(crate) snapshots: tokio::sync::watch::Receiver<Arc<String>>,
    /// Renders the Prometheus text of this process (the namespace as of the last read).
    pub(crate) metrics: switchyard::metrics::PrometheusHandle,
}

/// Serves the dashboard until SIGINT or SIGTERM.
pub fn run(args: &DashboardArgs) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let refresh = Duration::from_millis(args.refresh_ms);
        // Series of workers and queues that went away are dropped after a few reads.
        let metrics = switchyard::metrics::recorder(Some(refresh * 5 + Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        switchyard::metrics::describe(export::FAMILIES);
        let (snapshots, reader) = sampler::start(
            client.clone(),
            args.remote.namespace.clone(),
            refresh,
            args.allow_actions,
        )
        .await;
        let shared = Arc::new(Shared {
            client,
            allow_actions: args.allow_actions,
            token: args.token.clone().filter(|t| !t.is_empty()),
            snapshots,
            metrics,
        });
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("--listen {}: {e}", args.listen))?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("--listen {}: {e}", args.listen))?;
        if !bound.ip().is_loopback() && shared.token.is_none() {
            tracing::warn!(
                %bound,
                "the dashboard is reachable from other machines without a token (set --token)"
            );
        }
        // The line a script (or a test) waits for: the address actually bound (port 0 picks one).
        println!(
            "dashboard on http://{bound}/ (namespace {}, actions {})",
            args.remote.namespace,
            if args.allow_actions { "on" } else { "off" }
        );
        let stopped = crate::remote::stop_signal()?;
        // Stopping the reader ends the pages' event streams, so that the server can stop.
        let shutdown = async move {
            stopped.await;
            reader.abort();
        };
        axum::serve(listener, router(shared))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| format!("serving the dashboard: {e}"))
    })
}

fn router(shared: Arc<Shared>) -> Router {
    // The page's code holds no data, so it is served without the token (the page then sends
    // it with every call); the layer covers the routes added before it: the API.
    Router::new()
        .route("/api/snapshot", get(api::snapshot))
        .route("/metrics", get(api::metrics))
        .route("/api/stream", get(api::stream))
        .route("/api/tasks/{id}", get(api::task))
        .route("/api/queues/{queue}/dead", get(api::dead))
        .route("/api/queues/{queue}/tasks", get(browse::tasks))
        .route("/api/queues/{queue}/bulk/{action}", post(browse::bulk))
        .route("/api/tasks/{id}/redrive", post(api::redrive))
        .route("/api/tasks/{id}/cancel", post(api::cancel))
        .route("/api/tasks/{id}/delete", post(api::delete))
        .route("/api/queues/{queue}/pause", post(api::pause))
        .route("/api/queues/{queue}/resume", post(api::resume))
        .route("/api/queues/{queue}/purge/{what}", post(api::purge))
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route(
            "/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP)),
        )
        .route(
            "/tasks.js",
            get(|| asset("text/javascript; charset=utf-8", TASKS)),
        )
        .route(
            "/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
        .with_state(shared)
}

const INDEX: &str = include_str!("assets/index.html");
const APP: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");
const TASKS: &str = include_str!("assets/tasks.js");

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// With a token set, every API request must carry it (header, or `token` in the query string
/// for the event stream, which cannot set headers).
async fn authorize(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if cross_site(&request) {
        return api::refusal(
            StatusCode::FORBIDDEN,
            "cross-site request refused: actions are taken only from the dashboard's own page",
        );
    }
    let Some(expected) = &shared.token else {
        return next.run(request).await;
    };
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let from_query = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(str::to_owned)
    });
    let given = from_header.map(str::to_owned).or(from_query);
    if given.is_some_and(|g| same_secret(g.as_bytes(), expected.as_bytes())) {
        next.run(request).await
    } else {
        api::refusal(
            StatusCode::UNAUTHORIZED,
            "this dashboard needs its token: open it as /?token=<token>, or send \
             Authorization: Bearer <token>",
        )
    }
}

/// A request that changes something, sent by a page of another site: a browser names the page's
/// origin, and it is not this server's. (Without it, any web page open in the operator's
/// browser could post to a dashboard on loopback that has actions on and no token.)
fn cross_site(request: &Request) -> bool {
    if request.method() == axum::http::Method::GET {
        return false;
    }
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
    };
    match (header(header::ORIGIN), header(header::HOST)) {
        (Some(origin), Some(host)) => origin.split_once("://").is_none_or(|(_, o)| o != host),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Compares without stopping at the first difference (the time taken tells nothing).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }
}
