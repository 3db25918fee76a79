//! `switchyard bench`'s end-to-end section: producers and workers running at once, with a
//! hand-written loop and with the `switchyard::Worker` runtime.

use super::*;

pub(super) async fn end_to_end(probe: &mut Probe, args: &BenchArgs) -> Res<()> {
    println!("## End to end: producers and workers at once\n");
    println!(
        "{} producers submit {} tasks while {} workers receive and complete them (complete and receive in one call); wall time from the first submit to the last completion.\n",
        args.producers, args.e2e_tasks, args.workers
    );
    println!(
        "| batch | tasks/s | Redis CPU per task | script calls per task | usec_per_call |\n| --- | --- | --- | --- | --- |"
    );
    for &batch in &args.e2e_batches {
        let batch = batch.max(1);
        let s = space(args, args.producers + args.workers + 2).await?;
        let q = s.queue("e2e", Policy::Fcfs, Strategy::LeastLoaded).await?;
        let capacity = (batch * 2).max(8) as u32;
        let mut ws = Vec::new();
        for i in 0..args.workers {
            ws.push(s.worker(&format!("w{i:02}"), q.as_str(), capacity).await?);
        }
        let total = args.e2e_tasks;
        let done = Arc::new(AtomicUsize::new(0));
        let before = Snapshot::take(probe).await?;
        let mut handles = Vec::new();
        for w in ws {
            let b = s.backend.clone();
            let done = done.clone();
            handles.push(tokio::spawn(async move {
                let cap = capacity as usize;
                let mut held = Vec::new();
                while done.load(Ordering::Relaxed) < total {
                    if held.is_empty() {
                        // As a `Worker` waits: parked, woken by a dispatch or handed a task.
                        held = b
                            .receive_wait(&w, cap, Duration::from_millis(50))
                            .await
                            .map_err(err)?;
                        continue;
                    }
                    if batch == 1 {
                        let mut next = Vec::new();
                        for d in held.drain(..) {
                            let (_, more) = b
                                .complete_and_receive(&d.lease, Vec::new(), 1)
                                .await
                                .map_err(err)?;
                            done.fetch_add(1, Ordering::Relaxed);
                            next.extend(more);
                        }
                        held = next;
                    } else {
                        let acks: Vec<(Lease, Vec<u8>)> =
                            held.drain(..).map(|d| (d.lease, Vec::new())).collect();
                        let n = acks.len();
                        let (_, next) = b
                            .complete_many(&w.id, acks, cap, false)
                            .await
                            .map_err(err)?;
                        done.fetch_add(n, Ordering::Relaxed);
                        held = next;
                    }
                }
                Ok::<(), String>(())
            }));
        }
        for p in 0..args.producers {
            let b = s.backend.clone();
            let qn = q.clone();
            let share = total / args.producers + usize::from(p < total % args.producers);
            handles.push(tokio::spawn(async move {
                let mut tasks = Tasks::new(10 + p as u64, 64);
                let mut left = share;
                while left > 0 {
                    let n = left.min(batch);
                    if n == 1 {
                        b.submit(tasks.next(qn.as_str())?).await.map_err(err)?;
                    } else {
                        b.submit_batch(tasks.batch(qn.as_str(), n)?)
                            .await
                            .map_err(err)?;
                    }
                    left -= n;
                }
                Ok::<(), String>(())
            }));
        }
        for h in handles {
            h.await.map_err(err)??;
        }
        println!("| {batch} | {} |", before.cells_since(probe, total).await?);
        s.cleanup(probe).await?;
    }
    println!();
    runtime_end_to_end(probe, args).await
}

/// The same as a user's program runs it: workers are `switchyard::Worker`s (capacity 8, a
/// no-op handler, heartbeats and maintenance on), producers submit one task per call; the
/// backend combines whatever calls overlap.
async fn runtime_end_to_end(probe: &mut Probe, args: &BenchArgs) -> Res<()> {
    println!(
        "With the worker runtime: {} producers submit {} tasks one per call; {} `switchyard::Worker`s of capacity 8 run a no-op handler (each slot completes its task and receives the next in one call; concurrent calls are combined).\n",
        args.producers, args.e2e_tasks, args.workers
    );
    println!(
        "| tasks/s | Redis CPU per task | script calls per task | usec_per_call |\n| --- | --- | --- | --- |"
    );
    let s = space(args, 4).await?;
    let q = s.queue("e2e", Policy::Fcfs, Strategy::LeastLoaded).await?;
    let client = Client::new(s.backend.clone());
    let total = args.e2e_tasks;
    let done = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(tokio::sync::Notify::new());
    let mut stops = Vec::new();
    let mut runs = Vec::new();
    for i in 0..args.workers {
        let (done, finished) = (done.clone(), finished.clone());
        let worker = Worker::builder(&client, &format!("rt{i:02}"), [q.as_str()])
            .map_err(err)?
            .capacity(8)
            .handle("job", move |_ctx, _payload| {
                let (done, finished) = (done.clone(), finished.clone());
                async move {
                    if done.fetch_add(1, Ordering::Relaxed) + 1 == total {
                        finished.notify_one();
                    }
                    Ok(Vec::new())
                }
            })
            .build()
            .map_err(err)?;
        stops.push(worker.shutdown_handle());
        runs.push(tokio::spawn(worker.run()));
    }
    // Let every worker register before the clock starts.
    while s.backend.stats().await.map_err(err)?.workers.len() < args.workers {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = Snapshot::take(probe).await?;
    let wait_all = finished.notified();
    let mut producers = Vec::new();
    for p in 0..args.producers {
        let client = client.clone();
        let qn = q.clone();
        let share = total / args.producers + usize::from(p < total % args.producers);
        producers.push(tokio::spawn(async move {
            let mut tasks = Tasks::new(100 + p as u64, 64);
            for _ in 0..share {
                client.submit(tasks.next(qn.as_str())?).await.map_err(err)?;
            }
            Ok::<(), String>(())
        }));
    }
    for p in producers {
        p.await.map_err(err)??;
    }
    if done.load(Ordering::Relaxed) < total {
        wait_all.await;
    }
    // The last handler has run; its acknowledgement is in flight: stop, which waits for it.
    for stop in &stops {
        stop.shutdown();
    }
    let mut completed = 0;
    for run in runs {
        completed += run.await.map_err(err)?.map_err(err)?.completed;
    }
    let cells = before.cells_since(probe, total).await?;
    if completed != total as u64 {
        return Err(format!("{completed} of {total} tasks were acknowledged"));
    }
    println!("| {cells} |");
    println!();
    s.cleanup(probe).await
}
