//! Queue administration: `switchyard pause` and `switchyard resume`.

use clap::Args;
use switchyard::display;

use crate::remote::{Remote, runtime};

/// Flags of `switchyard pause` and `switchyard resume`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub remote: Remote,

    /// The queue.
    pub queue: String,
}

/// Pauses (`paused`) or resumes a queue and says what that did.
pub fn run(args: &PauseArgs, paused: bool) -> Result<(), String> {
    runtime()?.block_on(async {
        let client = args.remote.connect().await?;
        let shown = display::quoted(&args.queue);
        let result = if paused {
            client.pause(&args.queue).await.map(|()| {
                format!(
                    "queue {shown} paused: nothing is dispatched from it; submissions wait, \
                     running tasks finish (`switchyard resume {}` to go on)",
                    args.queue
                )
            })
        } else {
            client
                .resume(&args.queue)
                .await
                .map(|n| format!("queue {shown} resumed: {n} waiting tasks dispatched at once"))
        };
        let said = result.map_err(|e| match e {
            switchyard::Error::UnknownQueue(_) => {
                format!("queue {shown} is not declared (`switchyard status` lists the queues)")
            }
            other => other.to_string(),
        })?;
        println!("{said}");
        Ok(())
    })
}
