//! What a page of the task browser costs a deep queue: `--max-depth` ready tasks (1,000,000 by
//! default), paged through in several ways, each call's duration read from the server's own
//! SLOWLOG (every call logged while this runs; the server's settings are restored after).

use switchyard::{Browse, BrowseOrder, TaskKind, TaskState};

use super::*;

/// One way of paging: its name, the query of the first page, and how many pages to read.
struct Walk {
    name: &'static str,
    query: Browse,
    pages: usize,
}

pub(super) async fn browse(probe: &mut Probe, args: &BenchArgs) -> Res<()> {
    println!("## The task browser: a page on a deep queue\n");
    println!(
        "{} ready tasks; each page is one call of `browse` (read-only). Durations are the \
         server's own: the slowest from SLOWLOG (calls of {LOGGED_US} µs or more logged), the \
         mean from INFO commandstats.\n",
        args.max_depth
    );
    println!(
        "| policy | walk | pages | slowest call | mean call |\n| --- | --- | --- | --- | --- |"
    );
    let saved: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("slowlog-*")
        .query_async(&mut probe.conn)
        .await
        .map_err(err)?;
    for policy in [Policy::Fcfs, Policy::PRIORITY] {
        let s = space(args, 4).await?;
        let q = s.queue("deep", policy, Strategy::RoundRobin).await?;
        let mut tasks = Tasks::new(5, args.payload);
        s.fill(&mut tasks, &q, args.max_depth).await?;
        let ready = Browse::new(q.clone(), TaskState::Ready);
        let nothing = TaskKind::new("no-such-kind").map_err(err)?;
        let walks = [
            Walk {
                name: "50 a page from the head",
                query: ready.clone(),
                pages: 200,
            },
            Walk {
                name: "256 a page, the whole queue",
                query: ready.clone().limit(256),
                pages: usize::MAX,
            },
            Walk {
                name: "50 a page, newest first",
                query: ready.clone().order(BrowseOrder::Newest),
                pages: 200,
            },
            Walk {
                name: "a kind no task has (256 examined a page)",
                query: ready.clone().kind(Some(nothing)),
                pages: 200,
            },
        ];
        for walk in walks {
            start_timing(probe).await?;
            let pages = walk_pages(&s, walk.query, walk.pages).await?;
            let (slowest, mean) = finish_timing(probe, b"_browse").await?;
            row(&policy.name(), walk.name, pages, slowest, mean);
        }
        // The floor: the reads any page needs, and nothing else (one script: the index range,
        // the records behind it, returned), over the same queue.
        let zset = policy != Policy::Fcfs;
        let keys = (
            format!("sy:{{{}}}:q:deep:ready", s.namespace),
            format!("sy:{{{}}}:tasks", s.namespace),
        );
        for n in [50usize, 256] {
            start_timing(probe).await?;
            for page in 0..200 {
                FLOOR
                    .key(&keys.0)
                    .key(&keys.1)
                    .arg(page * n)
                    .arg(n)
                    .arg(if zset { "z" } else { "l" })
                    .invoke_async::<redis::Value>(&mut probe.conn)
                    .await
                    .map_err(err)?;
            }
            let (slowest, mean) = finish_timing(probe, b"EVALSHA").await?;
            let name = format!("floor: {n} ids and records read and returned");
            row(&policy.name(), &name, 200, slowest, mean);
        }
        s.cleanup(probe).await?;
    }
    let mut restore = redis::cmd("CONFIG");
    restore.arg("SET").arg(&saved);
    restore
        .query_async::<()>(&mut probe.conn)
        .await
        .map_err(err)?;
    println!();
    Ok(())
}

/// Calls at least this long (µs) are logged while a walk runs: the slowest is found in
/// SLOWLOG (which also logs the commands a script runs, so a threshold of 0 would slow the
/// calls it measures); the mean comes from `INFO commandstats`.
const LOGGED_US: &str = "250";

static FLOOR: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "local from, n = tonumber(ARGV[1]), tonumber(ARGV[2])
         local ms
         if ARGV[3] == 'z' then ms = redis.call('ZRANGE', KEYS[1], from, from + n - 1)
         else ms = redis.call('LRANGE', KEYS[1], from, from + n - 1) end
         local ids = {}
         for i, m in ipairs(ms) do ids[i] = string.sub(m, 13) end
         return redis.call('HMGET', KEYS[2], unpack(ids))",
    )
});

fn row(policy: &str, walk: &str, pages: usize, slowest: u64, mean: f64) {
    let slowest = if slowest == 0 {
        format!("< {LOGGED_US} µs")
    } else {
        format!("{slowest} µs")
    };
    println!("| {policy} | {walk} | {pages} | {slowest} | {mean:.0} µs |");
}

/// Logs calls of `LOGGED_US` or more from now on, with the log and the counters emptied.
async fn start_timing(probe: &mut Probe) -> Res<()> {
    let mut setup = redis::pipe();
    setup
        .cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-max-len")
        .arg("10000")
        .cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(LOGGED_US)
        .cmd("SLOWLOG")
        .arg("RESET")
        .cmd("CONFIG")
        .arg("RESETSTAT");
    setup.query_async::<()>(&mut probe.conn).await.map_err(err)
}

/// Reads up to `pages` pages from `query` on; answers how many it read.
async fn walk_pages(s: &Space, mut query: Browse, pages: usize) -> Res<usize> {
    let mut read = 0;
    while read < pages {
        let page = s.backend.browse(&query).await.map_err(err)?;
        read += 1;
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    Ok(read)
}

/// The slowest logged call whose command or function name ends with `name` (0: none was
/// logged), and the mean script call since `start_timing`, in µs.
async fn finish_timing(probe: &mut Probe, name: &[u8]) -> Res<(u64, f64)> {
    let (calls, usec) = probe.script_calls().await?;
    let log: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async(&mut probe.conn)
        .await
        .map_err(err)?;
    let mut slowest = 0u64;
    for entry in log {
        let redis::Value::Array(fields) = entry else {
            continue;
        };
        let (Some(redis::Value::Int(us)), Some(redis::Value::Array(argv))) =
            (fields.get(2), fields.get(3))
        else {
            continue;
        };
        let named = argv
            .iter()
            .take(2)
            .any(|a| matches!(a, redis::Value::BulkString(b) if b.ends_with(name)));
        if named {
            slowest = slowest.max(u64::try_from(*us).unwrap_or(0));
        }
    }
    Ok((slowest, usec as f64 / calls.max(1) as f64))
}
