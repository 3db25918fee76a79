-- cancel: cancels a task that has not started (one waiting for its children, with them:
-- lib/flows.lua); asks for a running task to be stopped
-- (State::cancel). The client reads the task first and passes what it saw: the call is
-- refused with SY_STALE if the task moved in between (read again and retry).
-- KEYS: the fixed keys, then the task's queue group, then (for a dispatched task) one group per
--       queue of its worker, in the worker's order.
-- ARGV: now, id, expected state, expected worker ('' for none), N, N queue names.
-- Reply: {0 cancelled, assignments...} | {1} requested | {2, state} already finished.
-- Errors: SY_NOT_FOUND, SY_STALE.
local id = ARGV[2]
local expected = int_arg(3, 'expected state', 0, S_WAITING)
local expected_worker = ARGV[4] or ''
local nq = int_arg(5, 'queue count', 1, 65)
local r = rec_get(id)
if not r then fail('SY_NOT_FOUND', id) end
if r.st ~= expected or r.w ~= expected_worker then fail('SY_STALE', 'task ' .. id .. ' moved') end
if finished(r.st) then return {2, r.st} end
if r.st == S_RUNNING then
  if r.fl % 2 ~= F_CANCEL then r.fl = r.fl + F_CANCEL end
  rec_put(r)
  flush()
  return {1}
end
queues_named(6, 1)
local q = queue_of(r.q)
if r.st == S_SCHEDULED or r.st == S_RETRY or r.st == S_READY then
  ADMIN.cancel_waiting(q, r)
elseif r.st == S_WAITING then
  FLOWS.cancel_parent(q, r)
else
  local wr = worker_get(r.w)
  if not wr then fail('SY_STALE', 'worker ' .. r.w .. ' is gone') end
  queues_named(7, nq - 1, 1)
  check_worker_queues(wr, 7, nq - 1)
  release(wr, r)
  emit(q, 'cancelled', r.id)
  finish(r, S_CANCELLED, q)
  fill_worker(wr)
  resume(q)
end
flush()
local reply = {0}
for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
return reply
