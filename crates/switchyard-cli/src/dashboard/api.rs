//! The page's API. Reads answer JSON; every action and every refusal answers
//! `{"ok": bool, "message": "<what happened, in words>"}`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use switchyard::admin::Purge;
use switchyard::{CancelOutcome, Error, QueueName, TaskId};
use switchyard_core::display;

use super::Shared;

/// An answer with `ok: false` and a message.
pub(super) fn refusal(status: StatusCode, message: impl Into<String>) -> Response {
    Refusal::new(status, message).into_response()
}

/// A request that could not be done, and why; answered as `{"ok": false, "message": …}`.
pub(super) struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let said = Said {
            ok: false,
            message: self.message,
        };
        (self.status, Json(said)).into_response()
    }
}

/// A backend error as a refusal: the user's mistakes as 4xx, the rest as 502 (Redis failed).
impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        let status = match &e {
            Error::TaskNotFound(_) | Error::UnknownQueue(_) | Error::DataLost { .. } => {
                StatusCode::NOT_FOUND
            }
            Error::WrongState { .. } | Error::QueueInUse { .. } => StatusCode::CONFLICT,
            Error::Invalid { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        };
        Refusal::new(status, e.to_string())
    }
}

/// What a handler answers.
pub(super) type Answer = Result<Response, Refusal>;

fn done(message: impl Into<String>) -> Response {
    Json(Said {
        ok: true,
        message: message.into(),
    })
    .into_response()
}

#[derive(Serialize)]
struct Said {
    ok: bool,
    message: String,
}

fn task_id(text: &str) -> Result<TaskId, Refusal> {
    text.parse::<TaskId>().map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("{e} (a task id is the 26 characters `submit` printed)"),
        )
    })
}

/// `GET /api/snapshot`: the newest snapshot.
pub(super) async fn snapshot(State(shared): State<Arc<Shared>>) -> Response {
    let json = shared.snapshots.borrow().clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.as_str().to_owned(),
    )
        .into_response()
}

/// `GET /metrics`: the namespace as Prometheus series, as of the last read.
pub(super) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}

/// `GET /api/stream`: the newest snapshot now, then each new one (server-sent events).
pub(super) async fn stream(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut rx = shared.snapshots.clone();
    rx.mark_changed();
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        // Ends when the sampler stops (shutdown): the page then reconnects to the next server.
        rx.changed().await.ok()?;
        let json = rx.borrow_and_update().clone();
        Some((Ok(SseEvent::default().data(json.as_str())), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// `GET /api/tasks/{id}`.
pub(super) async fn task(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Answer {
    let id = task_id(&id)?;
    match crate::views::task_view(&shared.client, id).await? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("no task {id} (never submitted, or purged after its retention time)"),
        )),
    }
}

#[derive(Deserialize)]
pub(super) struct DeadQuery {
    limit: Option<usize>,
}

/// `GET /api/queues/{queue}/dead?limit=N`: the oldest dead tasks (50 unless told, at most 1000).
pub(super) async fn dead(
    State(shared): State<Arc<Shared>>,
    Path(queue): Path<String>,
    Query(q): Query<DeadQuery>,
) -> Answer {
    let name = QueueName::new(&queue)?;
    let backend = shared.client.backend();
    if backend.queue_config(&name).await?.is_none() {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("queue {} is not declared", display::quoted(&queue)),
        ));
    }
    let list = backend
        .list_dead(&name, q.limit.unwrap_or(50).min(1000))
        .await?;
    Ok(Json(list).into_response())
}

/// Refuses unless the dashboard was started with `--allow-actions`.
pub(super) fn allowed(shared: &Shared, action: &str) -> Result<(), Refusal> {
    if shared.allow_actions {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!(
                "{action} refused: this dashboard only looks; start it with --allow-actions \
                 to act from the page"
            ),
        ))
    }
}

/// `POST /api/tasks/{id}/redrive`: a dead task back to its queue with fresh attempts.
pub(super) async fn redrive(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Answer {
    allowed(&shared, "re-drive")?;
    let id = task_id(&id)?;
    let handle = shared.client.redrive(id).await?;
    let state = match handle.state().await {
        Ok(Some(s)) => s.to_string(),
        _ => "back in its queue".to_owned(),
    };
    tracing::info!(task = %id, "re-driven from the dashboard");
    Ok(done(format!("task {id} re-driven: {state}")))
}

/// `POST /api/tasks/{id}/cancel`.
pub(super) async fn cancel(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Answer {
    allowed(&shared, "cancel")?;
    let id = task_id(&id)?;
    match shared.client.task_handle(id).cancel().await? {
        CancelOutcome::Cancelled { .. } => {
            tracing::info!(task = %id, "cancelled from the dashboard");
            Ok(done(format!("task {id} cancelled")))
        }
        CancelOutcome::Requested => Ok(done(format!(
            "task {id} is running: its worker was asked to stop it"
        ))),
        CancelOutcome::AlreadyFinished(state) => Err(Refusal::new(
            StatusCode::CONFLICT,
            format!("task {id} had already finished: {state}"),
        )),
        other => Ok(done(format!("task {id}: {other:?}"))),
    }
}

/// `POST /api/tasks/{id}/delete`: a finished task and its result, gone.
pub(super) async fn delete(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Answer {
    allowed(&shared, "delete")?;
    let id = task_id(&id)?;
    shared.client.delete_task(id).await?;
    tracing::info!(task = %id, "deleted from the dashboard");
    Ok(done(format!("task {id} deleted, with its result")))
}

/// `POST /api/queues/{queue}/pause`.
pub(super) async fn pause(State(shared): State<Arc<Shared>>, Path(queue): Path<String>) -> Answer {
    allowed(&shared, "pause")?;
    shared.client.pause(&queue).await?;
    tracing::info!(%queue, "paused from the dashboard");
    Ok(done(format!(
        "queue {} paused: nothing is dispatched from it; submissions wait, running tasks finish",
        display::quoted(&queue)
    )))
}

/// `POST /api/queues/{queue}/resume`.
pub(super) async fn resume(State(shared): State<Arc<Shared>>, Path(queue): Path<String>) -> Answer {
    allowed(&shared, "resume")?;
    let n = shared.client.resume(&queue).await?;
    tracing::info!(%queue, "resumed from the dashboard");
    Ok(done(format!(
        "queue {} resumed: {n} waiting tasks dispatched at once",
        display::quoted(&queue)
    )))
}

/// Tasks one purge step removes: one bounded script call; other clients go on between steps.
const PURGE_STEP: usize = 1000;

/// `POST /api/queues/{queue}/purge/{what}` (`waiting`, `dead` or `finished`): in bounded
/// steps until none is left.
pub(super) async fn purge(
    State(shared): State<Arc<Shared>>,
    Path((queue, what)): Path<(String, String)>,
) -> Answer {
    allowed(&shared, "purge")?;
    let what: Purge = what.parse()?;
    let mut removed = 0u64;
    loop {
        let step = shared.client.purge(&queue, what, PURGE_STEP).await?;
        removed += step.removed;
        if !step.more {
            break;
        }
    }
    tracing::info!(%queue, what = what.name(), removed, "purged from the dashboard");
    let verb = if what == Purge::Waiting {
        "cancelled"
    } else {
        "deleted"
    };
    Ok(done(format!(
        "queue {}: {removed} {} tasks {verb}",
        display::quoted(&queue),
        what.name()
    )))
}
