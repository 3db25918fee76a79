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

-- The worker a worker's call names, with the queues it serves bound as the call's groups. Every
-- such call (the worker-call prologue, one layout for all; RedisBackend::worker_call builds it)
-- starts its ARGV with: now, worker id, instance token, N, N queue names (the worker's queues,
-- in its order); the call's own arguments follow from the index returned third. Instance 0,
-- allowed only with `any_instance`, acts on the worker whichever instance holds it
-- (maintenance; a lease call, whose lease tokens the script checks): the record is then nil if
-- the worker is not registered. Any other instance must hold the registration (own_worker).
local function worker_of_call(any_instance)
  local nq = int_arg(4, 'queue count', 0, 64)
  local wr, w
  if any_instance and ARGV[3] == '0' then
    w = name_arg(2, 'worker id')
    wr = worker_get(w)
  else
    wr, w = own_worker()
  end
  queues_named(5, nq)
  if wr then check_worker_queues(wr, 5, nq) end
  return wr, w, 5 + nq
end

-- Writes what is deferred and replies {count, returned ids..., assignments...}.
local function reply_returned(returned)
  flush()
  local reply = {#returned}
  for _, id in ipairs(returned) do reply[#reply + 1] = id end
  for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
  return reply
end
