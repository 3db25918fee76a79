//! `switchyard bench`'s memory section: bytes of Redis memory per queued task under every
//! policy, next to the floors that any task queue on Redis pays for the same tasks, measured on
//! the same server in the same run.

use switchyard::{Policy, Strategy};

use super::{BenchArgs, Probe, Res, Tasks, err, space};

/// Tasks queued per figure.
const N: usize = 200_000;

/// Entries written per pipeline in the floors.
const CHUNK: usize = 1_000;

/// The policies measured, as `switchyard declare` names them.
const POLICIES: [Policy; 5] = [
    Policy::Fcfs,
    Policy::PRIORITY,
    Policy::Priority {
        aging_step_ms: Some(1_000),
    },
    Policy::SJF,
    Policy::ShortestJobFirst {
        aging_factor: Some(2),
    },
];

pub(super) async fn memory(probe: &mut Probe, args: &BenchArgs) -> Res<()> {
    println!(
        "## Memory per queued task ({}-byte payload)\n",
        args.payload
    );
    println!("| what | tasks | bytes per task |\n| --- | --- | --- |");
    for policy in POLICIES {
        let bytes = queued(probe, args, policy).await?;
        println!("| Switchyard, {} | {N} | {bytes:.0} |", policy.name());
    }
    // The floors: what the plainest layout costs for the same tasks — the payload under a
    // 26-byte id in one hash (a record any queue needs to find a task by id), and the id once
    // in the structure that orders the queue. A sorted set is what orders anything but arrival
    // on Redis; its entry is what separates the two floors.
    for index in [Index::List, Index::SortedSet] {
        let bytes = floor(probe, args.payload, index).await?;
        println!("| floor: {} | {N} | {bytes:.0} |", index.label());
    }
    println!();
    Ok(())
}

/// Bytes per task of `N` tasks submitted to a queue of `policy`.
async fn queued(probe: &mut Probe, args: &BenchArgs, policy: Policy) -> Res<f64> {
    let s = space(args, 4).await?;
    let q = s.queue("mem", policy, Strategy::RoundRobin).await?;
    let mut tasks = Tasks::new(5, args.payload);
    let before = probe.used_memory().await?;
    s.fill(&mut tasks, &q, N).await?;
    let after = probe.used_memory().await?;
    s.cleanup(probe).await?;
    Ok(after.saturating_sub(before) as f64 / N as f64)
}

/// The structure a floor orders its tasks in.
#[derive(Clone, Copy)]
enum Index {
    List,
    SortedSet,
}

impl Index {
    fn label(self) -> &'static str {
        match self {
            Index::List => "payload in a hash under its id, the id in a list",
            Index::SortedSet => "payload in a hash under its id, the id in a sorted set",
        }
    }
}

/// Bytes per task of the plainest layout: `HSET records <id> <payload>` and the id pushed to
/// a list or added to a sorted set, in pipelines of raw commands (no script, no other field).
async fn floor(probe: &mut Probe, payload: usize, index: Index) -> Res<f64> {
    let tag = format!("sy-floor:{{{}}}", std::process::id());
    let (records, order) = (format!("{tag}:records"), format!("{tag}:order"));
    let value = vec![b'x'; payload];
    let before = probe.used_memory().await?;
    for start in (0..N).step_by(CHUNK) {
        let mut pipe = redis::pipe();
        for i in start..(start + CHUNK).min(N) {
            let id = format!("{i:026}");
            pipe.cmd("HSET").arg(&records).arg(&id).arg(&value).ignore();
            match index {
                Index::List => pipe.cmd("RPUSH").arg(&order).arg(&id).ignore(),
                Index::SortedSet => pipe.cmd("ZADD").arg(&order).arg(i).arg(&id).ignore(),
            };
        }
        let _: () = pipe.query_async(&mut probe.conn).await.map_err(err)?;
    }
    let after = probe.used_memory().await?;
    let _: () = redis::cmd("UNLINK")
        .arg(&records)
        .arg(&order)
        .query_async(&mut probe.conn)
        .await
        .map_err(err)?;
    Ok(after.saturating_sub(before) as f64 / N as f64)
}
