//! Where a task goes and which partitions a worker serves: pure functions, the same in every
//! process (so that producers, workers and tools agree without talking to each other).

use std::collections::BTreeSet;

use switchyard_core::rng::SplitMix64;
use switchyard_core::tree::Flow;
use switchyard_core::{Error, TaskId, TaskSpec, WorkerId};

/// Most partitions a namespace may have.
pub const MAX_PARTITIONS: u16 = 256;

/// The bits of a task id that name its partition: the low 16 (random bits of the id).
const PARTITION_BITS: u128 = 0xffff;

/// The partition of task `id` among `count`: its low 16 bits modulo `count`. Every call that
/// names a task by id (status, cancel, complete, await) finds its partition this way.
pub fn partition_of(id: TaskId, count: u16) -> u16 {
    let low = u16::try_from(id.as_u128() & PARTITION_BITS).unwrap_or(0);
    low % count.max(1)
}

/// FNV-1a, 64 bits: a fixed hash (the standard library's may change between releases).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The partition a task belongs in: the hash of its affinity key, else of its dedup key, else
/// of its group key (so that tasks with the same key meet in one partition, where affinity,
/// deduplication and a group's share and limit work), else the one its id names (ids are
/// random: tasks spread evenly).
pub fn partition_for(spec: &TaskSpec, count: u16) -> u16 {
    let count = count.max(1);
    match spec
        .affinity_key()
        .or(spec.dedup_key())
        .or(spec.group_key())
    {
        Some(key) => u16::try_from(fnv1a(key) % u64::from(count)).unwrap_or(0),
        None => partition_of(spec.id(), count),
    }
}

/// `spec`, with a new id if needed so that [`partition_of`] names `partition`; and that
/// partition. The new id keeps the millisecond of the old one; its random part is a hash of
/// the whole old id (so two ids never meet by sharing their high bits), with the low bits set
/// to name the partition. Deterministic: routing the same spec again gives the same id, so a
/// repeated submit is still recognised as a duplicate; an id that already names its partition
/// is kept.
pub fn route(spec: TaskSpec, count: u16) -> (u16, TaskSpec) {
    let count = count.max(1);
    let p = partition_for(&spec, count);
    (p, into_partition(spec, p, count))
}

/// A flow's tasks in one partition (`switchyard_core::tree`): the root's, by
/// [`partition_for`]; every task gets an id there as [`route`] gives one. A task whose key
/// names another partition is refused: its key's tasks meet in that one.
pub fn route_flow(flow: Flow, count: u16) -> Result<(u16, Flow), Error> {
    let count = count.max(1);
    let p = partition_for(flow.root(), count);
    let flow = flow.map_specs(|spec| {
        let keyed = spec.affinity_key().or(spec.group_key()).is_some();
        if keyed && partition_for(&spec, count) != p {
            return Err(Error::invalid(
                "flow",
                format!(
                    "task {} has a key of partition {}, and the flow lives in its root's partition {p}",
                    spec.id(),
                    partition_for(&spec, count)
                ),
            ));
        }
        Ok(into_partition(spec, p, count))
    })?;
    Ok((p, flow))
}

/// `spec` with an id in partition `p`: kept if it names `p` already, else a new one (see
/// [`route`]).
fn into_partition(spec: TaskSpec, p: u16, count: u16) -> TaskSpec {
    if partition_of(spec.id(), count) == p {
        return spec;
    }
    let raw = spec.id().as_u128();
    let mut mix = SplitMix64::new((raw as u64) ^ ((raw >> 64) as u64).rotate_left(29));
    let random = (u128::from(mix.next_u64()) << 64) | u128::from(mix.next_u64());
    let low = random & PARTITION_BITS;
    // The largest value <= low, or failing that the smallest, that is `p` modulo `count`.
    let mut v = low - low % u128::from(count) + u128::from(p);
    if v > PARTITION_BITS {
        v -= u128::from(count);
    }
    let id = TaskId::from_parts(spec.id().millis(), (random & !PARTITION_BITS) | v);
    spec.with_id(id)
}

/// The partitions `me` serves when `roster` (every live worker, `me` included) shares
/// `count` partitions: with at least as many workers as partitions, the worker at position
/// `i` of the sorted roster serves partition `i mod count` (each partition gets
/// `⌊n/count⌋` or `⌈n/count⌉` workers); with fewer, it serves every partition `p` with
/// `p mod n = i` (each worker gets `⌊count/n⌋` or `⌈count/n⌉` partitions). So every partition
/// has a worker and every worker a partition, whatever the roster.
pub fn assignment(roster: &BTreeSet<WorkerId>, me: &WorkerId, count: u16) -> BTreeSet<u16> {
    let count = count.max(1);
    let mut all: BTreeSet<&WorkerId> = roster.iter().collect();
    all.insert(me);
    let n = all.len();
    let i = all.iter().position(|w| *w == me).unwrap_or(0);
    if n >= usize::from(count) {
        [u16::try_from(i % usize::from(count)).unwrap_or(0)].into()
    } else {
        (0..count).filter(|p| usize::from(*p) % n == i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(affinity: Option<&str>, dedup: Option<&str>, id: u128) -> TaskSpec {
        let mut b = TaskSpec::builder("q", "k").id(TaskId::from_u128(id));
        if let Some(a) = affinity {
            b = b.affinity_key(a);
        }
        if let Some(d) = dedup {
            b = b.dedup_key(d);
        }
        b.build().unwrap()
    }

    proptest! {
        #[test]
        fn a_routed_id_names_its_partition(
            id in any::<u128>(), count in 1u16..=MAX_PARTITIONS, key in proptest::option::of("[a-z]{1,8}"),
        ) {
            let original = spec(key.as_deref(), None, id);
            let (p, routed) = route(original.clone(), count);
            prop_assert!(p < count);
            prop_assert_eq!(partition_of(routed.id(), count), p);
            // The millisecond is kept; routing again changes nothing.
            prop_assert_eq!(routed.id().millis(), TaskId::from_u128(id).millis());
            prop_assert_eq!(route(original, count).1.id(), routed.id());
            prop_assert_eq!(route(routed.clone(), count).1.id(), routed.id());
        }

        #[test]
        fn every_partition_is_served_and_every_worker_serves(
            workers in proptest::collection::btree_set("[a-z]{1,6}", 1..40), count in 1u16..40,
        ) {
            let roster: BTreeSet<WorkerId> =
                workers.iter().map(|w| WorkerId::new(w.as_str()).unwrap()).collect();
            let mut served = vec![0usize; usize::from(count)];
            for w in &roster {
                let mine = assignment(&roster, w, count);
                prop_assert!(!mine.is_empty());
                for p in mine {
                    served[usize::from(p)] += 1;
                }
            }
            let (lo, hi) = (served.iter().min().copied(), served.iter().max().copied());
            prop_assert!(lo >= Some(1), "{served:?}");
            prop_assert!(hi.unwrap_or(0) - lo.unwrap_or(0) <= 1, "{served:?}");
        }
    }

    #[test]
    fn tasks_with_one_key_meet_in_one_partition() {
        let a = route(spec(Some("customer-7"), None, 1), 8).0;
        let b = route(spec(Some("customer-7"), None, 999_999), 8).0;
        let c = route(spec(None, Some("customer-7"), 5), 8).0;
        let grouped = TaskSpec::builder("q", "k")
            .id(TaskId::from_u128(77))
            .group_key("customer-7")
            .build()
            .unwrap();
        let d = route(grouped, 8).0;
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, d, "a group lives in one partition");
        // Ids without a key spread over every partition.
        let seen: BTreeSet<u16> = (0..200u128)
            .map(|i| route(spec(None, None, i * 7919), 8).0)
            .collect();
        assert_eq!(seen.len(), 8);
    }

    #[test]
    fn consecutive_ids_stay_distinct_when_rerouted() {
        // A generator gives consecutive ids within one millisecond: rerouting all of them to
        // one partition must keep them apart.
        let base = TaskId::from_parts(1_700_000_000_000, 12345).as_u128();
        let ids: BTreeSet<TaskId> = (0..10_000u128)
            .map(|i| route(spec(Some("one-key"), None, base + i), 16).1.id())
            .collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn a_joining_worker_takes_a_share() {
        let w = |s: &str| WorkerId::new(s).unwrap();
        let two: BTreeSet<WorkerId> = [w("a"), w("b")].into();
        assert_eq!(assignment(&two, &w("a"), 3), [0, 2].into());
        assert_eq!(assignment(&two, &w("b"), 3), [1].into());
        // `c` is not in the roster yet: it counts itself.
        assert_eq!(assignment(&two, &w("c"), 3), [2].into());
    }
}
