//! `switchyard tasks`: the task browser in a terminal. A page of a queue's tasks in one state,
//! and actions on all of them (`--redrive`, `--cancel`, `--delete`) in bounded steps.

use switchyard::{
    BULK_STEP, Browse, BrowseOrder, BulkAction, Client, QueueName, TaskInfo, TaskKind, TaskState,
};

use super::TasksArgs;
use crate::remote::runtime;
use crate::views::utc;

/// A state as the CLI takes it: the words of `status`'s headings (`inbox`, `retrying`) or
/// the state names (`dispatched`, `retry-scheduled`).
pub fn state_arg(text: &str) -> Result<TaskState, String> {
    match text {
        "inbox" => Ok(TaskState::Dispatched),
        "retrying" => Ok(TaskState::RetryScheduled),
        other => TaskState::parse(other).ok_or_else(|| {
            format!(
                "`{other}` is not a state: waiting-children, scheduled, ready, inbox \
                 (dispatched), running, retrying (retry-scheduled), succeeded, dead, cancelled or \
                 expired"
            )
        }),
    }
}

/// The time a listing shows for tasks in `state`, and its heading: when they entered it, or
/// when they leave it where that is what matters (a run-at, a lease's end).
pub fn time_of(state: TaskState) -> (&'static str, fn(&TaskInfo) -> Option<u64>) {
    match state {
        TaskState::Scheduled | TaskState::RetryScheduled => ("run_at (UTC)", |t| t.run_at),
        TaskState::Ready | TaskState::Dispatched => ("ready_since (UTC)", |t| t.ready_since),
        TaskState::Running => ("deadline (UTC)", |t| t.deadline),
        TaskState::WaitingChildren => ("created_at (UTC)", |t| Some(t.created_at)),
        _ => ("finished_at (UTC)", |t| t.finished_at),
    }
}

/// Lists a page, or acts on every task the filters select.
pub fn tasks(args: &TasksArgs) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let mut query = Browse::new(
            QueueName::new(&args.queue).map_err(|e| e.to_string())?,
            args.state,
        )
        .order(if args.newest {
            BrowseOrder::Newest
        } else {
            BrowseOrder::Oldest
        })
        .kind(
            args.kind
                .as_deref()
                .map(TaskKind::new)
                .transpose()
                .map_err(|e| e.to_string())?,
        )
        .id_prefix(args.id.as_deref())
        .after(args.cursor.clone())
        .limit(args.limit);
        let action = [
            (args.redrive, BulkAction::Redrive),
            (args.cancel, BulkAction::Cancel),
            (args.delete, BulkAction::Delete),
        ]
        .into_iter()
        .find_map(|(on, a)| on.then_some(a));
        if let Some(action) = action {
            query.limit = BULK_STEP;
            return bulk(&client, query, action, args.json).await;
        }
        let page = client.browse(&query).await.map_err(|e| e.to_string())?;
        if args.json {
            let text = serde_json::to_string_pretty(&page).map_err(|e| e.to_string())?;
            println!("{text}");
            return Ok(());
        }
        let state = args.state;
        if page.tasks.is_empty() {
            println!("(no {state} tasks on this page of {})", args.queue);
        } else {
            let (heading, time) = time_of(state);
            println!(
                "{:<26}  {:<16} {:>8}  {:<23}  detail",
                "task", "kind", "attempts", heading
            );
            for t in &page.tasks {
                let detail = match (&t.worker, &t.last_error) {
                    (Some(w), _) => format!("worker {w}"),
                    (None, Some(e)) => e.clone(),
                    (None, None) => format!("priority {}", t.priority),
                };
                println!(
                    "{:<26}  {:<16} {:>8}  {:<23}  {detail}",
                    t.id,
                    t.kind.as_str(),
                    format!("{}/{}", t.attempts, t.max_attempts),
                    time(t).map(utc).unwrap_or_else(|| "-".into()),
                );
            }
        }
        match &page.next {
            Some(next) => println!("next page: --cursor '{next}'"),
            None => println!("(end of the {state} tasks)"),
        }
        Ok(())
    })
}

/// `action` on every task `query` selects, a step of `BULK_STEP` at a time, saying on stderr
/// how far it got.
async fn bulk(
    client: &Client,
    mut query: Browse,
    action: BulkAction,
    json: bool,
) -> Result<(), String> {
    action.check(query.state).map_err(|e| e.to_string())?;
    let (mut done, mut refused) = (0u64, Vec::new());
    loop {
        let step = client
            .bulk_step(&query, action)
            .await
            .map_err(|e| e.to_string())?;
        done += step.done;
        refused.extend(step.refused);
        if !json && done > 0 {
            eprintln!("{} {done} tasks so far", past(action));
        }
        match step.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    if json {
        let said = serde_json::json!({"action": action, "done": done, "refused": refused});
        println!("{said}");
    } else {
        println!("{} {done} {} tasks", past(action), query.state);
        for (id, why) in &refused {
            println!("  not {id}: {why}");
        }
    }
    Ok(())
}

fn past(action: BulkAction) -> &'static str {
    match action {
        BulkAction::Redrive => "re-drove",
        BulkAction::Cancel => "cancelled",
        BulkAction::Delete => "deleted",
    }
}
