-- lib/steps.lua: the arguments and reply of a worker's own calls.
-- Rust twin: crates/switchyard-memory/src/state/workers.rs (`check_instance`).

-- Checks that the worker's queue list equals the queues opened from ARGV[first ..].
local function check_worker_queues(wr, first, n)
  local same = #wr.queues == n
  for i = 1, n do
    if wr.queues[i] ~= ARGV[first + i - 1] then same = false end
  end
  if not same then fail('SY_STALE', 'worker ' .. wr.id .. ' serves other queues now') end
end

-- The registration a worker's own call names (ARGV[2] the id, ARGV[3] its instance token):
-- SY_UNKNOWN_WORKER if there is none, SY_REPLACED if another instance holds the id
-- (State::check_instance).
local function own_worker()
  local w = name_arg(2, 'worker id')
  local inst = int_arg(3, 'instance token', 1, 2^48 - 1)
  local wr = worker_get(w)
  if not wr then fail('SY_UNKNOWN_WORKER', w) end
  if wr.inst ~= inst then fail('SY_REPLACED', w) end
  return wr, w
end

-- The worker a worker step names (ARGV: now, worker, instance, N, N queue names), its queue
-- groups bound and checked. Maintenance passes instance 0 (it acts on the worker, not as it)
-- and gets nil (and the id) if it is not registered.
local function worker_of_call()
  local nq = int_arg(4, 'queue count', 1, 64)
  local wr, w
  if ARGV[3] == '0' then
    w = name_arg(2, 'worker id')
    wr = worker_get(w)
    if not wr then return nil, w end
  else
    wr, w = own_worker()
  end
  queues_named(5, nq)
  check_worker_queues(wr, 5, nq)
  return wr, w
end

-- Writes what is deferred and replies {count, returned ids..., assignments...}.
local function reply_returned(returned)
  flush()
  local reply = {#returned}
  for _, id in ipairs(returned) do reply[#reply + 1] = id end
  for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
  return reply
end
