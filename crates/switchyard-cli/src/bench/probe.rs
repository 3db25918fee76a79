//! What the bench reads from the server: its CPU, memory and per-script counters (`INFO`),
//! around a measured piece of work.

use super::*;

/// Reads server-side counters on a connection of its own.
pub(super) struct Probe {
    pub(super) conn: redis::aio::MultiplexedConnection,
}

impl Probe {
    pub(super) async fn info(&mut self, section: &str) -> Res<HashMap<String, String>> {
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut self.conn)
            .await
            .map_err(err)?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect())
    }

    /// Redis CPU seconds so far (user + system).
    pub(super) async fn cpu(&mut self) -> Res<f64> {
        let info = self.info("cpu").await?;
        let get = |k: &str| {
            info.get(k)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok(get("used_cpu_user") + get("used_cpu_sys"))
    }

    /// `used_memory`, once the server has finished freeing what earlier runs unlinked.
    pub(super) async fn used_memory(&mut self) -> Res<u64> {
        for _ in 0..600 {
            let info = self.info("memory").await?;
            if info
                .get("lazyfree_pending_objects")
                .is_none_or(|v| v == "0")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let info = self.info("memory").await?;
        info.get("used_memory")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "no used_memory in INFO".into())
    }

    /// `(calls, usec)` of script calls so far: FCALL (Switchyard's functions) and EVALSHA (the
    /// floors' scripts).
    pub(super) async fn script_calls(&mut self) -> Res<(u64, u64)> {
        let info = self.info("commandstats").await?;
        let mut total = (0, 0);
        for command in ["cmdstat_fcall", "cmdstat_evalsha"] {
            let Some(line) = info.get(command) else {
                continue;
            };
            let field = |name: &str| {
                line.split(',')
                    .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            total.0 += field("calls");
            total.1 += field("usec");
        }
        Ok(total)
    }
}

/// Server counters and the clock at the start of an end-to-end run.
pub(super) struct Snapshot {
    calls: u64,
    usec: u64,
    cpu: f64,
    pub(super) started: Instant,
}

impl Snapshot {
    pub(super) async fn take(probe: &mut Probe) -> Res<Self> {
        let (calls, usec) = probe.script_calls().await?;
        let cpu = probe.cpu().await?;
        Ok(Snapshot {
            calls,
            usec,
            cpu,
            started: Instant::now(),
        })
    }

    /// The end-to-end table cells for `tasks` tasks run since the snapshot: tasks/s, Redis CPU
    /// per task, script calls per task, `usec_per_call` of those calls.
    pub(super) async fn cells_since(&self, probe: &mut Probe, tasks: usize) -> Res<String> {
        let wall = self.started.elapsed().as_secs_f64();
        let cpu = (probe.cpu().await? - self.cpu) * 1e6;
        let (calls, usec) = probe.script_calls().await?;
        let calls = calls - self.calls;
        Ok(format!(
            "{:.0} | {:.2} µs | {:.2} | {:.2}",
            tasks as f64 / wall,
            cpu / tasks as f64,
            calls as f64 / tasks as f64,
            (usec - self.usec) as f64 / calls.max(1) as f64
        ))
    }
}

/// µs of Redis CPU and script calls over `f`.
pub(super) async fn measure<F, Fut>(probe: &mut Probe, f: F) -> Res<(f64, u64, u64)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Res<()>>,
{
    let (c0, u0) = probe.script_calls().await?;
    let cpu0 = probe.cpu().await?;
    f().await?;
    let cpu1 = probe.cpu().await?;
    let (c1, u1) = probe.script_calls().await?;
    Ok(((cpu1 - cpu0) * 1e6, c1 - c0, u1 - u0))
}
