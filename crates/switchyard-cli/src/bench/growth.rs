//! `switchyard bench`'s growth sections: CPU per task cycle as the backlog deepens (`depth`)
//! and as workers are added (`workers`).

use super::*;

/// The rows of one growth table: CPU per cycle, as a multiple of the table's first row too.
#[derive(Default)]
struct Growth {
    base: Option<f64>,
}

impl Growth {
    /// Prints `| label | size | CPU per cycle (× first) | usec_per_call |` from a measurement.
    fn row(
        &mut self,
        label: &str,
        size: usize,
        cycles: usize,
        (cpu, calls, usec): (f64, u64, u64),
    ) {
        let per = cpu / cycles as f64;
        let base = *self.base.get_or_insert(per);
        println!(
            "| {label} | {size} | {per:.2} µs ({:.2}×) | {:.2} |",
            per / base,
            usec as f64 / calls.max(1) as f64
        );
    }
}

pub(super) async fn depth(probe: &mut Probe, args: &BenchArgs) -> Res<()> {
    println!("## Growth with queue depth\n");
    println!(
        "A worker of capacity 1 completes a task and receives the next from a backlog of D tasks while one more task is submitted: one cycle.\n"
    );
    println!("| policy | D | CPU per cycle | usec_per_call |\n| --- | --- | --- | --- |");
    let cycles = (args.tasks / 4).max(1);
    for policy in [Policy::Fcfs, Policy::PRIORITY] {
        let mut growth = Growth::default();
        for d in [1_000usize, args.max_depth] {
            let s = space(args, 4).await?;
            let q = s.queue("deep", policy, Strategy::RoundRobin).await?;
            let w = s.worker("w", q.as_str(), 1).await?;
            let mut tasks = Tasks::new(3, args.payload);
            s.fill(&mut tasks, &q, d + 1).await?;
            let mut lease = s
                .backend
                .receive(&w, 1)
                .await
                .map_err(err)?
                .pop()
                .ok_or("nothing received")?
                .lease;
            let b = s.backend.clone();
            let qn = q.clone();
            let measured = measure(probe, || async move {
                for _ in 0..cycles {
                    let (_, mut next) = b
                        .complete_and_receive(&lease, Vec::new(), 1)
                        .await
                        .map_err(err)?;
                    lease = next.pop().ok_or("backlog ran dry")?.lease;
                    b.submit(tasks.next(qn.as_str())?).await.map_err(err)?;
                }
                Ok(())
            })
            .await?;
            growth.row(&policy.name(), d, cycles, measured);
            s.cleanup(probe).await?;
        }
    }
    println!();
    Ok(())
}

pub(super) async fn workers(probe: &mut Probe, args: &BenchArgs) -> Res<()> {
    println!("## Growth with worker count\n");
    println!(
        "Each cycle submits a task (the strategy picks among W idle workers of capacity 4), receives it on the chosen worker and completes it.\n"
    );
    println!("| strategy | W | CPU per cycle | usec_per_call |\n| --- | --- | --- | --- |");
    let cycles = (args.tasks / 4).max(1);
    for strategy in Strategy::ALL.into_iter().filter(Strategy::is_push) {
        let mut growth = Growth::default();
        for count in [4usize, 64, 1024] {
            let s = space(args, 4).await?;
            let q = s.queue("many", Policy::Fcfs, strategy).await?;
            for i in 0..count {
                s.worker(&format!("w{i:04}"), q.as_str(), 4).await?;
            }
            let b = s.backend.clone();
            let qn = q.clone();
            let mut tasks = Tasks::new(4, args.payload);
            let measured = measure(probe, || async move {
                for _ in 0..cycles {
                    let out = b.submit(tasks.next(qn.as_str())?).await.map_err(err)?;
                    let w = me(out.assigned.ok_or("no worker picked")?);
                    for d in b.receive(&w, 1).await.map_err(err)? {
                        b.complete(&d.lease, Vec::new()).await.map_err(err)?;
                    }
                }
                Ok(())
            })
            .await?;
            growth.row(strategy.name(), count, cycles, measured);
            s.cleanup(probe).await?;
        }
    }
    println!();
    Ok(())
}
