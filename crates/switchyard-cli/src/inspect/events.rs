//! `switchyard events`: the event log, readable, filtered, followed.

use serde::Serialize;
use switchyard::{Client, Event, EventKind};

use super::EventsArgs;
use crate::remote::runtime;
use crate::views::{EVENT_PAGE, utc};

/// How often `--follow` asks for new events.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// One event as `--json` prints it.
#[derive(Serialize)]
struct EventLine<'a> {
    /// Where it is in the log (pass it to `--after`): the event's `id`, as `task --json`
    /// names it too.
    id: &'a str,
    at: u64,
    time: String,
    kind: &'static str,
    task: String,
    queue: &'a str,
    worker: Option<&'a str>,
    detail: Option<&'a str>,
}

/// The event's fields after its time and kind, labelled: `task=… queue=… worker=… error=…`.
pub fn labelled(e: &Event) -> String {
    let mut out = format!("task={} queue={}", e.task, e.queue.as_str());
    if let Some(w) = &e.worker {
        out.push_str(&format!(" worker={}", w.as_str()));
    }
    if let Some(d) = e.detail.as_deref().filter(|d| !d.is_empty()) {
        match e.kind {
            EventKind::Failed | EventKind::Dead => out.push_str(&format!(" error={d}")),
            EventKind::Progress => out.push_str(&format!(" progress={d}")),
            EventKind::Retried => match d.parse::<u64>() {
                Ok(at) => out.push_str(&format!(" runs_at={}", utc(at).replace(' ', "T"))),
                Err(_) => out.push_str(&format!(" detail={d}")),
            },
            _ => out.push_str(&format!(" detail={d}")),
        }
    }
    out
}

fn print(e: &Event, json: bool) -> Result<(), String> {
    if json {
        let line = EventLine {
            id: &e.id,
            at: e.at,
            time: utc(e.at),
            kind: e.kind.as_str(),
            task: e.task.to_string(),
            queue: e.queue.as_str(),
            worker: e.worker.as_ref().map(|w| w.as_str()),
            detail: e.detail.as_deref(),
        };
        println!(
            "{}",
            serde_json::to_string(&line).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "{}  {:<10} {}  id={}",
            utc(e.at),
            e.kind.as_str(),
            labelled(e),
            e.id
        );
    }
    Ok(())
}

/// Reads events after `after`, of `queue` only if given, up to `limit` (the whole log at most);
/// also returns the position after the last event read.
async fn read(
    client: &Client,
    mut after: Option<String>,
    queue: Option<&str>,
    limit: usize,
) -> Result<(Vec<Event>, Option<String>), String> {
    let mut found = Vec::new();
    for _ in 0..=(switchyard::backend::EVENT_LOG_CAP / EVENT_PAGE) {
        let page = client
            .events(after.as_deref(), EVENT_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        let full = page.len() == EVENT_PAGE;
        found.extend(
            page.into_iter()
                .filter(|e| queue.is_none_or(|q| e.queue.as_str() == q)),
        );
        if found.len() >= limit || !full {
            break;
        }
    }
    Ok((found, after))
}

/// Prints events from the capped log.
pub fn events(args: &EventsArgs) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let queue = args.queue.as_deref();
        if args.newest_first {
            // The last `limit`: the whole (capped) log is read, then its tail reversed.
            let (all, _) = read(&client, None, queue, usize::MAX).await?;
            for e in all.iter().rev().take(args.limit) {
                print(e, args.json)?;
            }
            return Ok(());
        }
        let mut position = if args.follow && args.after.is_none() {
            // Like `tail -f`: the last `limit` events, then what comes after the end.
            let (all, end) = read(&client, None, queue, usize::MAX).await?;
            for e in &all[all.len().saturating_sub(args.limit)..] {
                print(e, args.json)?;
            }
            end
        } else {
            let (first, mut position) =
                read(&client, args.after.clone(), queue, args.limit).await?;
            for e in first.iter().take(args.limit) {
                print(e, args.json)?;
            }
            if first.len() > args.limit {
                // Follow on from the last one printed, not from the last one read.
                position = first.get(args.limit - 1).map(|e| e.id.clone()).or(position);
            }
            position
        };
        if !args.follow {
            return Ok(());
        }
        std::io::Write::flush(&mut std::io::stdout()).map_err(|e| e.to_string())?;
        let stopped = crate::remote::stop_signal()?;
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => return Ok(()),
                _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            }
            let (new, next) = read(&client, position.clone(), queue, usize::MAX).await?;
            for e in &new {
                print(e, args.json)?;
            }
            std::io::Write::flush(&mut std::io::stdout()).map_err(|e| e.to_string())?;
            position = next.or(position);
        }
    })
}
