-- throttle: a handler asked to hold its queue (State::throttle, lib/rate.lua): the running task
-- goes back to its place in the ready order with its attempt not counted (a pending cancel ends
-- it cancelled instead), its queue — in a queue shared between groups, its group
-- (lib/group_limits.lua) — is held until now + hold (or later, if it was held longer) and marked, and
-- the worker's freed slot is refilled. A stale lease is refused and changes
-- nothing.
-- KEYS: the fixed keys, then one group per queue of the worker, in its order.
-- ARGV: now, worker, 0 (any instance: the lease token decides), N, N queue names, id, queue,
--       token, hold (ms, 0..86400000).
-- Reply: {code (A_THROTTLED, A_CANCELLED; refused: A_NOT_FOUND, A_NOT_RUNNING, A_STALE),
--         held until or state (-1 without a record), assignments...}.
-- The code of a throttled run (AckCode::Throttled, beside lib/protocol.lua's A_ codes).
local A_THROTTLED = 7

local wr, w, a = worker_of_call(true)
local id, qname, tok = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
local hold = int_arg(a + 3, 'hold', 0, 86400000)
local r = rec_get(id)
local refused, value = lease_refusal(r, w, wr, qname, tok)
if refused then return {refused, value} end
local q = queue_of(r.q)
release(wr, r)
local reply
if r.fl % 2 == F_CANCEL then
  emit(q, 'cancelled', r.id)
  finish(r, S_CANCELLED, q)
  reply = {A_CANCELLED, S_CANCELLED}
else
  r.at = r.at - 1
  call('HDEL', K_TASKS, progress_field(r.id)) -- the run did not count, nor does its progress
  local until_
  if q.grp then
    until_ = GROUP.hold(q, GROUP.of(r), hold)
  else
    if NOW + hold > q.hold then
      q.hold = NOW + hold
      call('HSET', q.k_state, 'u', q.hold)
    end
    mark_wake(q)
    until_ = q.hold
  end
  place(r, q, nil, false, NOW, true)
  reply = {A_THROTTLED, until_}
end
fill_worker(wr)
resume(q)
flush()
for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
return reply
