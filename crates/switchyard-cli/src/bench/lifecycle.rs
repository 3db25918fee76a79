//! Redis CPU per task lifecycle (submit, receive, complete) at each batch size, per script and
//! next to the floors.

use super::floor::{BATCHES, Floors};
use super::*;

pub(super) async fn lifecycle(probe: &mut Probe, args: &BenchArgs, floors: &Floors) -> Res<()> {
    println!("## Redis CPU per task lifecycle (submit, receive, complete)\n");
    println!(
        "| batch | CPU per task | × trivial | × bare | usec_per_call submit / receive / complete | calls per task |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for batch in BATCHES {
        let s = space(args, 4).await?;
        let q = s.queue("life", Policy::Fcfs, Strategy::RoundRobin).await?;
        let w = s
            .worker("w", q.as_str(), u32::try_from(batch).map_err(err)?)
            .await?;
        let mut tasks = Tasks::new(1, args.payload);
        let rounds = (args.tasks / batch).max(1);
        let n = rounds * batch;
        // Per-script costs: one phase at a time.
        let mut per_phase = [(0u64, 0u64); 3];
        let mut total_cpu = 0.0;
        let mut total_calls = 0u64;
        for _ in 0..rounds {
            let specs = tasks.batch(q.as_str(), batch)?;
            let b = s.backend.clone();
            let (cpu, c, u) = measure(probe, || async move {
                b.submit_batch(specs).await.map_err(err)?;
                Ok(())
            })
            .await?;
            per_phase[0].0 += c;
            per_phase[0].1 += u;
            total_cpu += cpu;
            total_calls += c;
            let b = s.backend.clone();
            let wc = w.clone();
            let leases = Arc::new(std::sync::Mutex::new(Vec::new()));
            let out = leases.clone();
            let (cpu, c, u) = measure(probe, || async move {
                let ds = b.receive(&wc, batch).await.map_err(err)?;
                out.lock()
                    .map_err(err)?
                    .extend(ds.into_iter().map(|d| (d.lease, Vec::new())));
                Ok(())
            })
            .await?;
            per_phase[1].0 += c;
            per_phase[1].1 += u;
            total_cpu += cpu;
            total_calls += c;
            let acks: Vec<(Lease, Vec<u8>)> = std::mem::take(&mut *leases.lock().map_err(err)?);
            let b = s.backend.clone();
            let wc = w.clone();
            let (cpu, c, u) = measure(probe, || async move {
                b.complete_many(&wc.id, acks, 0, false).await.map_err(err)?;
                Ok(())
            })
            .await?;
            per_phase[2].0 += c;
            per_phase[2].1 += u;
            total_cpu += cpu;
            total_calls += c;
        }
        // The CPU total above includes the INFO calls around each phase; measure again without
        // them for the headline figure.
        let _ = total_cpu;
        let tasks = Tasks::new(2, args.payload);
        let per_task = cpu_per_task(probe, &s, &q, &w, batch, rounds, tasks).await?;
        let upc = |i: usize| per_phase[i].1 as f64 / per_phase[i].0.max(1) as f64;
        let times = |floor: Option<&f64>| match floor {
            Some(f) if *f > 0.0 => format!("{:.1}×", per_task / f),
            _ => "–".to_owned(),
        };
        println!(
            "| {batch} | {per_task:.2} µs | {} | {} | {:.2} / {:.2} / {:.2} | {:.3} |",
            times(Some(&floors.trivial)),
            times(floors.bare.get(&batch)),
            upc(0),
            upc(1),
            upc(2),
            total_calls as f64 / n as f64
        );
        s.cleanup(probe).await?;
    }
    println!(
        "\n(× trivial: CPU per task divided by the CPU of one `return 1` call; × bare: divided by \
         the bare lifecycle's CPU per task at the same batch size.)\n"
    );
    Ok(())
}

/// Redis CPU per task (µs) of `rounds` lifecycles of `batch` tasks on queue `q` and worker `w`
/// (submit the batch, receive it, complete it), nothing else measured.
pub(super) async fn cpu_per_task(
    probe: &mut Probe,
    s: &Space,
    q: &QueueName,
    w: &WorkerRef,
    batch: usize,
    rounds: usize,
    mut t: Tasks,
) -> Res<f64> {
    let b = s.backend.clone();
    let wc = w.clone();
    let qn = q.clone();
    let cpu = measure(probe, || async move {
        for _ in 0..rounds {
            b.submit_batch(t.batch(qn.as_str(), batch)?)
                .await
                .map_err(err)?;
            let ds = b.receive(&wc, batch).await.map_err(err)?;
            let acks = ds.into_iter().map(|d| (d.lease, Vec::new())).collect();
            b.complete_many(&wc.id, acks, 0, false).await.map_err(err)?;
        }
        Ok(())
    })
    .await?
    .0;
    Ok(cpu / (rounds * batch) as f64)
}
