-- lib/dispatch.lua: parking, events, starting a task, dispatching it to a worker, hand-offs.
-- Rust twin: crates/switchyard-memory/src/state/dispatch.rs.

-- Marks an idle worker waiting: the next dispatch to it publishes on its wake channel, and it
-- is parked on its pull queues (the next task there wakes it).
local function park(wr)
  if wr.wait % 2 ~= W_WAITING then
    wr.wait = wr.wait + W_WAITING
    wr.dirty = true
  end
  for _, qname in ipairs(wr.queues) do
    if wr.strs[qname] == T_PULL then
      call('ZADD', K_FREE, '0', qname .. '|' .. wr.id)
      local q = QUEUES[qname]
      if q then q.none_parked = false end
    end
  end
end

-- Pull queues: take a worker off every parked list (it is awake, or gone).
local function unpark(wr)
  for _, qname in ipairs(wr.queues) do
    if wr.strs[qname] == T_PULL then call('ZREM', K_FREE, qname .. '|' .. wr.id) end
  end
end

-- Dispatch decisions made by this call, reported as {id, queue, worker, ...}.
local ASSIGN

-- Counts an event of queue `q` (EventCounts: every kind, recorded or not, but progress; written
-- by `flush` as the queue state's fields 'n:<kind>') and appends it to the log if the queue
-- records its kind (EventKind::recorded_at; EventLevel: 0 off, 1 failures — failed, retried,
-- dead, cancelled, expired —, 2 all).
local function emit(q, kind, id, w, detail)
  if kind ~= 'progress' then
    local counts = q.counts
    if not counts then counts = {}; q.counts = counts end
    counts[kind] = (counts[kind] or 0) + 1
  end
  if q.ev == 0 or (q.ev == 1 and (kind == 'submitted' or kind == 'dispatched'
      or kind == 'succeeded' or kind == 'progress')) then
    return
  end
  call('XADD', K_EVENTS, 'MAXLEN', '~', EVENT_CAP, '*', 'k', kind, 't', id, 'q', q.name,
    'w', w or '', 'a', NOW, 'd', detail or '')
end

-- Starts task `r` on worker `wr` (its slot already held), appending its delivery {id, queue,
-- token, attempt, max attempts, deadline, timeout, ready since, body} to `out`
-- (State::start).
local function start(wr, r, out)
  local since = r.tm
  r.st = S_RUNNING
  r.at = r.at + 1
  r.tm = NOW + r.to
  r.w = wr.id
  rec_put(r)
  if r.tok > wr.rc then wr.rc = r.tok end
  wr.dirty = true
  out[#out + 1] = r.id; out[#out + 1] = r.q; out[#out + 1] = r.tok; out[#out + 1] = r.at
  out[#out + 1] = r.ma; out[#out + 1] = r.tm; out[#out + 1] = r.to; out[#out + 1] = since
  out[#out + 1] = r.body
end

-- Takes a ready task of a pull queue (already out of its ready set) into a free slot of `wr`
-- under token `tok`, and starts it (State::start_pulled).
local function start_pulled(wr, r, tok, out)
  r.tok = tok
  local q = queue_of(r.q)
  count_active(q, 1, r)
  spend_token(q)
  zadd(K_WTASKS, '0', format('%s|%012x|%s', wr.id, tok, r.id))
  unsettle(wr)
  wr.inf = wr.inf + 1
  wr.dn = wr.dn + 1
  start(wr, r, out)
end

-- The hand-off: starts task `r` on the parked or waiting worker `wr` under token `tok` and
-- publishes the delivery on its wake channel; the worker stays parked and waiting while it has
-- a free slot (State::hand_to).
local function hand_to(wr, r, tok)
  local d = {}
  start_pulled(wr, r, tok, d)
  local parked = 1
  if not has_free_slot(wr) then
    unpark(wr)
    if wr.wait % 2 == W_WAITING then wr.wait = wr.wait - W_WAITING end
    parked = 0
  end
  local pubs = PENDING.pubs
  pubs[#pubs + 1] = wake_channel(wr)
  pubs[#pubs + 1] = HAND_TAG .. spack(HAND, parked, wr.inst, r.tok, r.at, r.ma, r.tm, r.to,
    d[8], #r.q) .. r.id .. r.q .. r.body
end

-- Hands task `r` of queue `q` to a worker's inbox under lease token `tok`, or, if the worker
-- waits with an empty inbox and listens, starts it there at once (State::dispatch_to). The
-- task keeps `pos`, its place in the ready order, for a return to the queue (`place`).
local function dispatch_to(wr, r, q, tok)
  if not tok then tok = next_seq() end
  -- A least-loaded pick's stamp is the token: picks take increasing tokens, so ordering by it
  -- is ordering by recency, as with the reference's per-queue pick counter.
  if wr.picked and wr.picked[q.name] == true then wr.picked[q.name] = tok end
  if wr.wait % 2 == W_WAITING and wr.ib == 0 and listening(wr) then
    hand_to(wr, r, tok)
  else
    r.st = S_DISPATCHED; r.w = wr.id; r.tok = tok
    rec_put(r)
    count_active(q, 1, r)
    spend_token(q)
    zadd(K_WTASKS, '0', format('%s|%012x|%s', wr.id, tok, r.id))
    unsettle(wr)
    wr.inf = wr.inf + 1
    wr.dn = wr.dn + 1
    wr.ib = wr.ib + 1
    -- Tasks dispatched in this call, in token order (see `receive_tasks`).
    local fresh = wr.fresh
    if not fresh then fresh = {}; wr.fresh = fresh end
    fresh[#fresh + 1] = r
    -- A waiting worker with tasks still to receive is woken to receive them.
    if wr.wait % 2 == W_WAITING then
      wr.wait = wr.wait - W_WAITING
      call('PUBLISH', wake_channel(wr), '1')
    end
  end
  emit(q, 'dispatched', r.id, wr.id)
  ASSIGN[#ASSIGN + 1] = r.id
  ASSIGN[#ASSIGN + 1] = r.q
  ASSIGN[#ASSIGN + 1] = wr.id
end
