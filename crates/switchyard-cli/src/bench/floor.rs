//! The floors every figure is compared with: a trivial `return 1` script, and the bare
//! lifecycle (see [`bare`](super::bare)) at each batch size.

use super::bare::Bare;
use super::*;

/// The two floors every figure is compared with, measured on one connection making one call at
/// a time, as `lifecycle` does.
#[derive(Default)]
pub(super) struct Floors {
    /// Redis CPU of one `return 1` call, µs.
    pub(super) trivial: f64,
    /// Redis CPU per task of the bare lifecycle (`bare_lifecycle.lua`) at each batch size, µs.
    pub(super) bare: HashMap<usize, f64>,
}

pub(super) const BATCHES: [usize; 3] = [1, 16, 128];

pub(super) async fn floor(probe: &mut Probe, args: &BenchArgs) -> Res<Floors> {
    let n = args.tasks;
    let script = redis::Script::new("return 1");
    let mut conn = probe.conn.clone();
    let (cpu, calls, usec) = measure(probe, || async move {
        for _ in 0..n {
            let _: i64 = script.invoke_async(&mut conn).await.map_err(err)?;
        }
        Ok(())
    })
    .await?;
    let mut floors = Floors {
        trivial: cpu / n as f64,
        ..Floors::default()
    };
    println!("## Floors\n");
    println!(
        "A trivial script, and the bare lifecycle: three scripts (submit, receive, complete) that \
         do only the eight Redis commands any queue needs per task, with no validation, \
         scheduling, fencing or accounting (`crates/switchyard-cli/src/bench/bare_lifecycle.lua`).\n"
    );
    println!(
        "| script | batch | Redis CPU per task | script µs per task |\n| --- | --- | --- | --- |"
    );
    println!(
        "| `return 1` | 1 | {:.2} µs | {:.2} |",
        floors.trivial,
        usec as f64 / calls.max(1) as f64
    );
    let bare = Bare::new(&format!("sy:{{bench-bare-{}}}:", std::process::id()));
    let payload = vec![b'x'; args.payload];
    for batch in BATCHES {
        let rounds = (n / batch).max(1);
        let mut conn = probe.conn.clone();
        let (bare, payload) = (&bare, &payload);
        let (cpu, _, usec) = measure(probe, || async move {
            for _ in 0..rounds {
                for phase in ["submit", "receive", "complete"] {
                    let done: usize = bare
                        .call(phase, batch, &[payload.as_slice()])
                        .invoke_async(&mut conn)
                        .await
                        .map_err(err)?;
                    if done != batch {
                        return Err(format!("bare lifecycle: {phase} handled {done} of {batch}"));
                    }
                }
            }
            Ok(())
        })
        .await?;
        let tasks = (rounds * batch) as f64;
        floors.bare.insert(batch, cpu / tasks);
        println!(
            "| bare lifecycle | {batch} | {:.2} µs | {:.2} |",
            cpu / tasks,
            usec as f64 / tasks
        );
        let _: () = redis::cmd("UNLINK")
            .arg(bare.keys())
            .query_async(&mut probe.conn)
            .await
            .map_err(err)?;
    }
    println!();
    Ok(floors)
}
