-- submit: accepts tasks (one or a batch) into their queues, each dispatched at once when its
-- queue's ready set is empty and a worker is eligible (State::submit, in order).
-- KEYS: the fixed keys, then one group per queue named below.
-- ARGV: now, G, G queue names, G counts (per queue: the batch's tasks to it from this call on
--       when the batch takes several calls, else 0; lib/bounded.lua), M, then M triples (a
--       queue's place among the G, a group key, the batch's tasks to that group from this call
--       on, for the groups flow::bounded::Remaining::groups_to_check names when the batch takes
--       several calls), N, then N task arguments, each `TASK_ARG` (lib/protocol.lua: group,
--       cost given 0|1, priority, cost, run-at (0: none), delay ms (0: none), max attempts (0:
--       queue default), timeout ms (0: queue default), deadline (0: none)), the 26-character
--       id, then the body.
-- How: lib/submit.lua (a dedup key that is held throttles or debounces).
-- Reply: per task 4 fields (accept_tasks): the answer code, id, state (-1: unknown), worker or ''.
-- Errors: SY_UNKNOWN_QUEUE <name>, SY_FULL <waiting> <bound> <adding> <name>,
--         SY_GROUP_FULL <waiting> <bound> <adding> <name> <group key in hex>, SY_INVALID.
local ng = int_arg(2, 'group count', 1, 1024)
local groups = queues_open(3, ng)
local rest, grest, base = ROOM.counts(3 + ng, ng, 0)
local n = int_arg(base, 'task count', 0, 100000)
local reply = accept_tasks(groups, rest, grest, task_args(base, n, groups))
flush()
return reply
