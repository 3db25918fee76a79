//! The task browser's API: a page of a queue's tasks in one state, and one bounded step of an
//! action on all of them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use switchyard::{BULK_STEP, Browse, BrowseOrder, BulkAction, QueueName, TaskKind};

use super::Shared;
use super::api::{Answer, Refusal, allowed};
use crate::inspect::state_arg;

/// What a page asks for (every field optional: the ready tasks, oldest first, 50).
#[derive(Deserialize)]
pub(super) struct PageQuery {
    state: Option<String>,
    order: Option<String>,
    kind: Option<String>,
    id: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

impl PageQuery {
    fn browse(&self, queue: &str) -> Result<Browse, Refusal> {
        let bad = |e: String| Refusal::new(StatusCode::BAD_REQUEST, e);
        let state = state_arg(self.state.as_deref().unwrap_or("ready")).map_err(bad)?;
        let order: BrowseOrder = self.order.as_deref().unwrap_or("oldest").parse()?;
        let kind = match self.kind.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => Some(TaskKind::new(k)?),
            None => None,
        };
        let query = Browse::new(QueueName::new(queue)?, state)
            .order(order)
            .kind(kind)
            .id_prefix(self.id.as_deref().filter(|p| !p.is_empty()))
            .after(self.cursor.clone().filter(|c| !c.is_empty()))
            .limit(self.limit.unwrap_or(50));
        query.validate()?;
        Ok(query)
    }
}

/// `GET /api/queues/{queue}/tasks?state=&order=&kind=&id=&cursor=&limit=`: one page
/// (`{tasks, next, examined}`).
pub(super) async fn tasks(
    State(shared): State<Arc<Shared>>,
    Path(queue): Path<String>,
    Query(q): Query<PageQuery>,
) -> Answer {
    let query = q.browse(&queue)?;
    let page = shared.client.browse(&query).await?;
    Ok(Json(page).into_response())
}

/// `POST /api/queues/{queue}/bulk/{action}?state=&kind=&id=&cursor=`: one step of `action`
/// (`redrive`, `cancel`, `delete`) on up to 100 of the tasks the query selects; answers
/// `{ok, message, done, refused, next}`, `next` the cursor of the following step (null at
/// the end). The page calls it until `next` is null, showing the count as it goes.
pub(super) async fn bulk(
    State(shared): State<Arc<Shared>>,
    Path((queue, action)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Answer {
    let action: BulkAction = action.parse()?;
    allowed(&shared, action.name())?;
    let mut query = q.browse(&queue)?;
    query.limit = BULK_STEP;
    action.check(query.state)?;
    let step = shared.client.bulk_step(&query, action).await?;
    if step.done > 0 {
        tracing::info!(%queue, action = action.name(), tasks = step.done, "bulk step from the dashboard");
    }
    Ok(Json(serde_json::json!({
        "ok": true,
        "message": format!("{} {}: {} tasks", action.name(), query.state, step.done),
        "done": step.done,
        "refused": step.refused.len(),
        "next": step.next,
    }))
    .into_response())
}
