-- lib/place.lua: putting a task into its queue, filling workers, dispatching ready tasks.
-- Rust twin: crates/switchyard-memory/src/state/place.rs.

-- `sleeper` is taker's alone: held in a block, so that it takes none of the main chunk's 200
-- local slots (lib/prelude.lua).
-- `dispatch_ready` (below) is declared here for `place`, which calls it for a shared queue.
local taker, hand_off_ready, dispatch_ready
do
  -- Pull queues: the first worker parked on `q` if it takes a task at once — a free slot, an
  -- empty inbox, and someone listening on its wake channel — or false after waking (and
  -- unparking) one that cannot; nil if none is parked (State::sleeper).
  local function sleeper(q)
    -- Only `park` adds parked workers: once none was found, none is until this call parks one.
    if q.none_parked then return nil end
    local m = call('ZRANGEBYLEX', K_FREE, '[' .. q.name .. '|', '(' .. q.name .. '}', 'LIMIT', '0', '1')[1]
    if not m then
      q.none_parked = true
      return nil
    end
    local wr = worker_get(sub(m, #q.name + 2))
    if has_free_slot(wr) and wr.ib == 0 and listening(wr) then return wr end
    unpark(wr)
    call('PUBLISH', wake_channel(wr), '1')
    return false
  end

  -- The first parked worker of `q` that takes a task, waking those before it that cannot; nil
  -- if there is none.
  function taker(q)
    while true do
      local wr = sleeper(q)
      if wr ~= false then return wr end
    end
  end

  -- Pull queues: hands the ready tasks of `q`, minimum first, to the parked workers that take
  -- them, each under a fresh token, until none is ready or none takes (State::hand_off_ready).
  -- Returns whether it handed off any.
  function hand_off_ready(q)
    local any = false
    -- flow::deadline, rule 2.
    if q.xp and dispatches(q) then expire_heads(q, 2^53) end
    -- A shared queue has a task to hand off while its ring holds a group.
    while dispatches(q) and (q.grp and GROUP.any(q) or not q.grp and ready_len(q) > 0) do
      local wr = taker(q)
      if not wr then return any end
      local r = pop_ready(q, 1)[1]
      if not r then return any end
      hand_to(wr, r, next_seq())
      any = true
    end
    return any
  end
end

-- Puts a task into its queue: scheduled for `at` if that is in the future, otherwise ready —
-- or dispatched at once when the ready set is empty and the strategy finds an eligible worker
-- (State::enter_queue, State::make_ready). `t` is the enqueue time for aging. With `keep`, the
-- task comes back from a worker that did not finish it (reaped, deregistered, drained): it
-- takes its old place in the ready order, `r.pos` (under aging, its key counts from its
-- creation), instead of a place behind every task there. Returns true when it left `r` ready
-- and then handed off or dispatched ready tasks (which may include `r`: its record, not `r`,
-- then says so).
local function place(r, q, at, retry, t, keep)
  -- flow::deadline, rule 1: entering the ready set late.
  if not (at and at > NOW) and expires_on_entry(r, q) then return end
  local seq = next_seq()
  r.w = ''
  if at and at > NOW then
    -- The first of its queue now: the earliest due time may have moved earlier, so wake the
    -- maintenance loops sleeping until then (Backend::sleep_until_due).
    if DELAYED.add(q, r, at, seq, retry) then
      call('PUBLISH', channel(CH_DUE), at)
    end
    if retry then r.st = S_RETRY else r.st = S_SCHEDULED end
    r.pos = seq; r.tm = at
    rec_put(r)
    return
  end
  -- Its place in the ready order, kept while it is dispatched and running.
  local order = seq
  if keep then order = r.pos end
  r.pos = order
  -- Ready (and then dispatched) since `t`: a delivery tells the worker how long it waited.
  r.tm = t
  -- flow::deadline, rule 2: an arrival may be dispatched from the head.
  if q.xp and dispatches(q) then expire_heads(q, 2^53) end
  -- A shared queue's ready tasks of groups at their limit may wait beside free slots: there the
  -- task goes at once only if no group is in the ring and its own is open (it would be next in
  -- line: GROUP.first_in_line); otherwise it joins its group and the queue dispatches by its
  -- ring (below).
  if q.str ~= T_PULL and dispatches(q) then
    if (q.grp and GROUP.first_in_line(q, r)) or (not q.grp and ready_len(q) == 0) then
      local w = pick(q, r)
      if w then
        -- Into its group's active tasks (a task taken from the ready set is counted by
        -- GROUP.take).
        if q.grp then GROUP.count(q, GROUP.of(r), 1) end
        -- The sequence number doubles as the lease token.
        dispatch_to(worker_get(w), r, q, seq)
        return
      end
    end
  end
  -- Pull queues: the task joins the ready set and its minimum goes to a parked worker that
  -- takes it (hand_off_ready). With the set empty, that minimum is this task: hand it over
  -- without writing it to the set first.
  local waiting = nil
  if q.str == T_PULL and dispatches(q) and not q.grp then
    waiting = ready_len(q)
    if waiting == 0 then
      local wr = taker(q)
      if wr then
        hand_to(wr, r, next_seq())
        return
      end
    end
  end
  r.st = S_READY
  rec_put(r)
  if q.rlen then q.rlen = q.rlen + 1 end
  local key = 0
  if q.pol ~= P_FCFS then
    if keep then t = r.cr end
    if t > MAX_MS then t = MAX_MS end
    if q.pol == P_PRIO then key = -r.pr
    elseif q.pol == P_PRIO_AGING then key = t - r.pr * q.age
    elseif q.pol == P_SJF then key = r.co
    elseif q.pol == P_EDF then
      key = MAX_MS
      if r.dl > 0 and r.dl < MAX_MS then key = r.dl end
      mark_expiry(q, r.dl)
    else key = t + r.co * q.age end
  end
  local m = format('%012x%s', order, r.id)
  if q.grp then
    GROUP.insert(q, r, key, m)
    if not dispatches(q) then return end
    if q.str == T_PULL then return hand_off_ready(q) end
    dispatch_ready(q, 1)
    -- It may have gone to a worker: its record says.
    return true
  end
  if keep and q.list then insert_ready(q, order, m) else push_ready(q, key, m) end
  if waiting and waiting > 0 then return hand_off_ready(q) end
end

-- Fills the worker's free slots from its push queues in its order (State::fill_worker).
local function fill_worker(wr)
  for _, qname in ipairs(wr.queues) do
    if not has_free_slot(wr) then return end
    if wr.strs[qname] ~= T_PULL then
      local q = queue_of(qname)
      if dispatches(q) then
        -- flow::deadline, rule 2.
        expire_heads(q, 2^53)
        for _, r in ipairs(pop_ready(q, room(q, wr.cap - wr.inf))) do dispatch_to(wr, r, q, nil) end
      end
    end
  end
end

-- Hands ready tasks of `q` to eligible workers, up to `limit` (State::dispatch): nothing for
-- a pull queue, a paused one or one held at its concurrency limit. Reads the ready set directly: call it before this call pushed
-- anything to it.
function dispatch_ready(q, limit)
  local n = 0
  unpop(q)
  -- flow::deadline, rule 2.
  if q.xp and q.str ~= T_PULL and dispatches(q) then expire_heads(q, 2^53) end
  while n < limit and q.str ~= T_PULL and dispatches(q) do
    -- The head of the ready set, dropping cancelled entries of an FCFS list.
    local r = nil
    if q.grp then
      r = GROUP.head(q)
    elseif q.list then
      while true do
        local m = call('LINDEX', q.k_ready, 0)
        if not m then break end
        local c = rec_get(sub(m, 13))
        if c and c.st == S_READY and c.q == q.name and c.pos == tonumber(sub(m, 1, 12), 16) then
          r = c
          break
        end
        call('LPOP', q.k_ready)
        set_state(q, 'tomb', q.tomb - 1)
      end
    else
      local top = call('ZRANGE', q.k_ready, 0, 0)
      if #top > 0 then r = rec_get(sub(top[1], 13)) end
    end
    if not r then break end
    local w = pick(q, r)
    if not w then break end
    pop_ready(q, 1)
    dispatch_to(worker_get(w), r, q, nil)
    n = n + 1
  end
end
