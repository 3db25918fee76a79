-- lib/deferred.lua: writes deferred to the end of a call (`flush`, in lib/flush.lua, applies them).
-- Rust twin: none: the reference writes at once; `next_seq` is in crates/switchyard-memory/src/state/place.rs.

-- Deferred writes, applied by `flush` as one command per key, before any read of a deferred key
-- and at the end of a call: task records, members added to / removed from sorted sets, the
-- sequence counter (values handed out by `next_seq` beyond the first) and changed queue state.
local PENDING
local QUEUES   -- queue name -> its state, opened by `queue_of`
-- How many times the deferred writes were applied since the library loaded: what a call read
-- from Redis before a flush may be stale after it.
local flushes = 0

-- The next value of the namespace-wide sequence (ready/delayed order, lease tokens, inboxes):
-- one HINCRBY for the first value of a call, then counted locally and written by `flush`.
local function next_seq()
  if PENDING.seq then
    PENDING.seq = PENDING.seq + 1
    PENDING.seq_extra = PENDING.seq_extra + 1
  else
    PENDING.seq = call('HINCRBY', K_META, '~seq', '1')
  end
  return PENDING.seq
end

-- Changes a field of a queue's dynamic state (tomb rng jit vt ep cur), written by `flush`.
local function set_state(q, field, value)
  q[field] = value
  q.dirty = true
end

local function zadd(key, score, member)
  local list = PENDING.adds[key]
  if not list then list = {}; PENDING.adds[key] = list end
  list[#list + 1] = score
  list[#list + 1] = member
end

local function zrem(key, member)
  local list = PENDING.rems[key]
  if not list then list = {}; PENDING.rems[key] = list end
  list[#list + 1] = member
end
