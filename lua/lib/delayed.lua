-- lib/delayed.lua: a queue's scheduled and retry-scheduled tasks enter and leave its delayed
-- set (ZSET: '<sequence number: 12 hex digits><id>' scored by run-at) by the helpers here,
-- which keep the queue's retry-scheduled count and, in a queue shared between groups, each
-- group's count of them ('d:<group>': GROUP.count_delayed; with the group's ready tasks, what a
-- bound per group counts: lib/bounded.lua).
-- Rust twin: crates/switchyard-memory/src/state/groups/waiting.rs.
local DELAYED = {}

-- Puts task `r` into q's delayed set for `at` with sequence number `seq`, retry-scheduled when
-- `retry`. Whether it is now the first of its queue.
function DELAYED.add(q, r, at, seq, retry)
  local member = format('%012x%s', seq, r.id)
  call('ZADD', q.k_delayed, at, member)
  if retry then call('HINCRBY', K_META, '~n:' .. q.name .. ':' .. S_RETRY, '1') end
  if q.grp then GROUP.count_delayed(q, GROUP.of(r), 1) end
  return call('ZRANK', q.k_delayed, member) == 0
end

-- Takes task `r` (a scheduled or retry-scheduled record: its state and position) out of q's
-- delayed set.
function DELAYED.remove(q, r)
  if call('ZREM', q.k_delayed, format('%012x%s', r.pos, r.id)) == 0 then return end
  if r.st == S_RETRY then call('HINCRBY', K_META, '~n:' .. q.name .. ':' .. S_RETRY, -1) end
  if q.grp then GROUP.count_delayed(q, GROUP.of(r), -1) end
end
