//! The task browser: a queue's tasks in one state, a page at a time, and actions on many
//! tasks at once (re-drive every dead task, cancel every scheduled one, delete the succeeded
//! ones), each done in bounded steps.

use serde::Serialize;

use crate::{
    Browse, BrowseOrder, CancelOutcome, Client, Error, Result, TaskId, TaskPage, TaskState,
};

/// Tasks one step of an action on many tasks acts on, in the CLI and the dashboard (each step
/// one page, then one atomic call per task).
pub const BULK_STEP: usize = 100;

/// An action on many tasks (see [`Client::bulk_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// Dead tasks back to their queue with fresh attempts.
    Redrive,
    /// Tasks that have not finished: cancelled (a running one is asked to stop).
    Cancel,
    /// Finished tasks (succeeded, dead, cancelled) deleted with their outcome.
    Delete,
}

impl BulkAction {
    /// Its name in the CLI and the dashboard's API: `redrive`, `cancel`, `delete`.
    pub fn name(self) -> &'static str {
        match self {
            BulkAction::Redrive => "redrive",
            BulkAction::Cancel => "cancel",
            BulkAction::Delete => "delete",
        }
    }

    /// Whether it applies to tasks in `state`.
    pub fn applies_to(self, state: TaskState) -> bool {
        match self {
            BulkAction::Redrive => state == TaskState::Dead,
            BulkAction::Cancel => !state.is_terminal(),
            BulkAction::Delete => state.is_terminal(),
        }
    }

    /// Refuses an action on a state it does not apply to, naming the states it does.
    pub fn check(self, state: TaskState) -> Result<()> {
        if self.applies_to(state) {
            return Ok(());
        }
        let to = match self {
            BulkAction::Redrive => "dead tasks",
            BulkAction::Cancel => "tasks that have not finished",
            BulkAction::Delete => "finished tasks (succeeded, dead, cancelled)",
        };
        Err(Error::invalid(
            "action",
            format!("{} applies to {to}, not to {state} ones", self.name()),
        ))
    }
}

impl std::str::FromStr for BulkAction {
    type Err = Error;

    fn from_str(s: &str) -> Result<BulkAction> {
        match s {
            "redrive" => Ok(BulkAction::Redrive),
            "cancel" => Ok(BulkAction::Cancel),
            "delete" => Ok(BulkAction::Delete),
            other => Err(Error::invalid(
                "action",
                format!("`{other}` is not an action: redrive, cancel or delete"),
            )),
        }
    }
}

/// What one [`Client::bulk_step`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BulkStep {
    /// Tasks acted on.
    pub done: u64,
    /// Tasks the action was refused for (they had moved on meanwhile), with the reason.
    pub refused: Vec<(TaskId, String)>,
    /// Where the next step starts (`None`: every task of the state was seen).
    pub next: Option<String>,
}

impl Client {
    /// One page of the task browser (see [`Browse`] for the orders and filters).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::{Browse, BrowseOrder, Client, QueueConfig, QueueName, TaskSpec, TaskState};
    /// let client = Client::memory();
    /// client.declare("q", QueueConfig::default()).await?;
    /// for _ in 0..5 {
    ///     client.submit(TaskSpec::builder("q", "k").build()?).await?;
    /// }
    /// let ready = Browse::new(QueueName::new("q")?, TaskState::Ready).limit(3);
    /// let first = client.browse(&ready).await?;
    /// assert_eq!(first.tasks.len(), 3);
    /// let rest = client.browse(&ready.clone().after(first.next)).await?;
    /// assert_eq!((rest.tasks.len(), rest.next), (2, None));
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn browse(&self, query: &Browse) -> Result<TaskPage> {
        self.backend().browse(query).await
    }

    /// One bounded step of `action` on the tasks `query` lists: the tasks of one page (at most
    /// `query.limit`), each acted on in its own atomic step. Call again with
    /// [`BulkStep::next`] as the query's cursor until it is `None`; a task that moved on
    /// between the page and its action is counted in [`BulkStep::refused`], not acted on.
    ///
    /// Steps walk the state newest first whatever `query.order` says: a task that enters the
    /// state while they run (submitted meanwhile, or re-driven and dead again at once) lands
    /// behind the cursor and is not taken, so the action ends.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use switchyard::{Browse, BulkAction, Client, QueueConfig, QueueName, TaskSpec, TaskState};
    /// let client = Client::memory();
    /// client.declare("q", QueueConfig::default()).await?;
    /// for _ in 0..5 {
    ///     client.submit(TaskSpec::builder("q", "k").build()?).await?;
    /// }
    /// let mut query = Browse::new(QueueName::new("q")?, TaskState::Ready).limit(2);
    /// let mut cancelled = 0;
    /// loop {
    ///     let step = client.bulk_step(&query, BulkAction::Cancel).await?;
    ///     cancelled += step.done;
    ///     match step.next {
    ///         Some(next) => query.cursor = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(cancelled, 5);
    /// # Ok::<(), switchyard::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn bulk_step(&self, query: &Browse, action: BulkAction) -> Result<BulkStep> {
        action.check(query.state)?;
        let page = self
            .browse(&query.clone().order(BrowseOrder::Newest))
            .await?;
        let mut step = BulkStep {
            next: page.next,
            ..BulkStep::default()
        };
        for task in page.tasks {
            match self.act(task.id, action).await {
                Ok(()) => step.done += 1,
                Err(e @ (Error::WrongState { .. } | Error::TaskNotFound(_))) => {
                    step.refused.push((task.id, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(step)
    }

    /// `action` on one task.
    pub async fn act(&self, id: TaskId, action: BulkAction) -> Result<()> {
        match action {
            BulkAction::Redrive => self.redrive(id).await.map(drop),
            BulkAction::Delete => self.delete_task(id).await,
            BulkAction::Cancel => match self.backend().cancel(id).await? {
                CancelOutcome::AlreadyFinished(state) => Err(Error::WrongState {
                    id,
                    state,
                    operation: "cancel",
                }),
                _ => Ok(()),
            },
        }
    }
}
