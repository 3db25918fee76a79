-- lib/leases.lua: finishing, receiving, failing and handing back leased tasks.
-- Rust twin: crates/switchyard-memory/src/state/leases.rs; `learn_cost` in state/costs.rs.

-- The kind of task `r` (from its body).
local function kind_of(r)
  local ql, kl = byte(r.body, 1, 2)
  -- Bit 128 of the kind's length says a group key follows (lib/groups.lua).
  return sub(r.body, 7 + ql, 6 + ql + kl % 128)
end

-- Shortest-job-first queues learn the run time of each kind: the moving average
-- floor((7 * average + s) / 8) of measured run times, each sample s at most SAMPLE_CAP times
-- the average (the first, times the default cost) (backend::next_average).
local function learn_cost(q, r)
  if q.pol ~= P_SJF and q.pol ~= P_SJF_AGING then return end
  local field = 'k:' .. kind_of(r)
  local sample = NOW - (r.tm - r.to)
  local avg = tonumber(call('HGET', q.k_state, field))
  -- The sample counts as at most SAMPLE_CAP times the average (the default cost for the
  -- first), each taken as at least 1.
  local base = avg or q.dcost
  if base < 1 then base = 1 end
  sample = min(sample, base * SAMPLE_CAP)
  if avg then avg = floor((7 * avg + sample) / 8) else avg = sample end
  call('HSET', q.k_state, field, avg)
end

-- Frees the slot a leased task held on its worker (State::release_slot).
local function release(wr, r)
  count_active(queue_of(r.q), -1, r)
  zrem(K_WTASKS, format('%s|%012x|%s', wr.id, r.tok, r.id))
  unsettle(wr)
  wr.inf = wr.inf - 1
  if r.st == S_DISPATCHED then wr.ib = wr.ib - 1 end
end

-- Starts up to `max` tasks on the worker, appending deliveries {id, queue, token, attempt,
-- max attempts, deadline, timeout, ready since, body} to `out` (State::receive): its inbox in dispatch order, then
-- its pull queues in its order. Advances the receive cursor; returns how many.
local function receive_tasks(wr, max, out)
  local got = 0
  local fresh_only = max > 0 and wr.ib > 0 and wr.ib0 == 0 and wr.fresh ~= nil
  if fresh_only then
    for _, r in ipairs(wr.fresh) do
      if r.st ~= S_DISPATCHED or r.w ~= wr.id then fresh_only = false end
    end
  end
  if fresh_only then
    -- The inbox holds only what this call dispatched, in token order: start it from here.
    local fresh = wr.fresh
    local n = min(max, #fresh)
    wr.ib = wr.ib - n
    for i = 1, n do start(wr, fresh[i], out) end
    got = got + n
    local rest = {}
    for i = n + 1, #fresh do rest[#rest + 1] = fresh[i] end
    wr.fresh = rest
    wr.ib0 = wr.ib
  elseif max > 0 and wr.ib > 0 then
    -- The inbox is read from Redis: apply what this call deferred first.
    flush()
    local inbox = call('ZRANGEBYLEX', K_WTASKS, format('[%s|%012x', wr.id, wr.rc + 1),
      '(' .. wr.id .. '}', 'LIMIT', '0', int_text(max))
    if #inbox > 0 then
      local ids = {}
      for i, m in ipairs(inbox) do ids[i] = sub(m, #wr.id + 15) end
      local vs = call('HMGET', K_TASKS, unpack(ids))
      wr.ib = wr.ib - #ids
      for i, id in ipairs(ids) do start(wr, rec_get(id, vs[i]), out) end
      got = got + #ids
    end
  end
  -- Then the pull queues in the worker's order, each popped once for as many tasks as it can
  -- give (a queue that gives fewer is empty).
  for _, qname in ipairs(wr.queues) do
    if got >= max or not has_free_slot(wr) then break end
    if wr.strs[qname] == T_PULL then
      local q = queue_of(qname)
      if dispatches(q) then
        -- flow::deadline, rule 2.
        expire_heads(q, 2^53)
        for _, r in ipairs(pop_ready(q, room(q, min(max - got, wr.cap - wr.inf)))) do
          start_pulled(wr, r, next_seq(), out)
          got = got + 1
        end
      end
    end
  end
  return got
end

-- Why the lease (worker `w`, queue `qname`, token `tok`) on record `r` is refused, with the
-- second value of the answer (the state, or -1 without a record); nil when it is current.
local function lease_refusal(r, w, wr, qname, tok)
  if not r then return A_NOT_FOUND, -1 end
  if r.st ~= S_RUNNING then return A_NOT_RUNNING, r.st end
  if r.tok ~= tok or r.w ~= w or r.q ~= qname or not wr then return A_STALE, r.st end
  return nil
end

-- A running attempt ended in failure (State::end_attempt_failed): the slot is released, then
-- the task is cancelled (a cancel was pending), retried after the queue's backoff (allowed and
-- attempts left), or dead; then the worker refills. Returns {1, run_at} | {2} dead | {3}.
local function end_attempt_failed(wr, r, err, retry)
  local q = queue_of(r.q)
  r.e = err
  emit(q, 'failed', r.id, wr.id, err)
  release(wr, r)
  local res
  if r.fl % 2 == F_CANCEL then
    emit(q, 'cancelled', r.id)
    finish(r, S_CANCELLED, q)
    res = {3}
  elseif retry and r.at < r.ma then
    local d
    if r.at - 1 >= 32 then d = q.bm else d = min(q.bb * 2 ^ (r.at - 1), q.bm) end
    set_state(q, 'jit', (q.jit * MINSTD_A) % MINSTD_M)
    local at = NOW + d - q.jit % (floor(d * q.bj / 100) + 1)
    emit(q, 'retried', r.id, nil, format('%.0f', at))
    place(r, q, at, true, NOW)
    res = {1, at}
  else
    emit(q, 'dead', r.id, nil, err)
    finish(r, S_DEAD, q)
    res = {2}
  end
  fill_worker(wr)
  resume(q)
  return res
end

-- Removes a worker and sends its tasks back (State::hand_back): its inbox in dispatch order
-- with attempts unchanged, then its running tasks in id order with the attempt counted —
-- cancelled if a cancel was pending, dead if it was the last attempt. Every queue of the
-- worker must be open. Returns the ids handed back.
local function hand_back(wr)
  flush()
  unpark(wr)
  WORKERS[wr.id] = nil
  wr.gone = true
  call('HDEL', K_WORKERS, wr.id)
  call('ZREM', K_HB, wr.id)
  local free = has_free_slot(wr)
  for _, qname in ipairs(wr.queues) do
    local str = wr.strs[qname]
    if str == T_WEIGHTED then
      local field = wr.id .. '|' .. qname
      local m = sub(call('HGET', K_WORKERS, field), BAL_LEN + 1)
      if m ~= '' then call('ZREM', K_FREE, m) end
      call('HDEL', K_WORKERS, field)
    elseif str == T_LL then
      if free then call('ZREM', K_FREE, ll_entry(qname, wr, wr.inf, stamps_of(wr)[qname])) end
    elseif str ~= T_PULL and free then
      call('ZREM', K_FREE, qname .. '|' .. wr.id)
    end
    if str == T_AFFINITY then
      local q = queue_of(qname)
      local pts = {}
      for i = 0, q.vn - 1 do pts[#pts + 1] = wr.id .. '#' .. i end
      call('ZREM', q.k_ring, unpack(pts))
    end
  end
  local entries = call('ZRANGEBYLEX', K_WTASKS, '[' .. wr.id .. '|', '(' .. wr.id .. '}')
  call('ZREMRANGEBYLEX', K_WTASKS, '[' .. wr.id .. '|', '(' .. wr.id .. '}')
  local inbox, running = {}, {}
  for _, m in ipairs(entries) do
    local r = rec_get(sub(m, #wr.id + 15))
    if r.st == S_RUNNING then running[#running + 1] = r else inbox[#inbox + 1] = r end
  end
  sort(running, function(a, b) return a.id < b.id end)
  local returned = {}
  for _, r in ipairs(inbox) do
    returned[#returned + 1] = r.id
    count_active(queue_of(r.q), -1, r)
    place(r, queue_of(r.q), nil, false, NOW, true)
  end
  for _, r in ipairs(running) do
    returned[#returned + 1] = r.id
    local q = queue_of(r.q)
    count_active(q, -1, r)
    r.e = 'worker ' .. wr.id .. ' was lost during attempt ' .. r.at
    emit(q, 'failed', r.id, wr.id, r.e)
    if r.fl % 2 == F_CANCEL then
      emit(q, 'cancelled', r.id)
      finish(r, S_CANCELLED, q)
    elseif r.at >= r.ma then
      emit(q, 'dead', r.id, nil, r.e)
      finish(r, S_DEAD, q)
    else
      emit(q, 'retried', r.id, nil, format('%.0f', NOW))
      place(r, q, nil, false, NOW, true)
    end
  end
  resume_each(inbox, running)
  return returned
end
