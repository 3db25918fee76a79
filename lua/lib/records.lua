-- lib/records.lua: task records, unpacked and packed.
-- Rust twin: crates/switchyard-memory/src/state/records.rs.

-- Task records -------------------------------------------------------------------------------
-- header: state flags attempts max_attempts priority cost timeout pos token time created
--         worker_len error_len result_len; then the deadline ('>I6', with flag F_DEADLINE
--         only), worker, error, result, body. The body (built by
-- the client) is '>BBHH' lengths of queue, kind, affinity key, dedup key, those, the payload.
-- `pos` is the sequence number in a ready or delayed set, the token while leased; `time` is the
-- run-at while scheduled, when it became ready while ready or dispatched, the lease deadline
-- while running, the finish time when finished.
local function rec_get(id, raw)
  local v = raw or PENDING.recs[id] or call('HGET', K_TASKS, id)
  if not v then return nil end
  local st, fl, at, ma, pr, co, to, pos, tok, tm, cr, wl, el, rl = sunpack(HDR, v)
  local o = HDR_LEN + 1
  local dl = 0
  if fl % FLOWS.CHILD >= F_DEADLINE then
    dl = sunpack('>I6', v, o)
    o = o + 6
  end
  local w, e, res = '', '', ''
  if wl > 0 then w = sub(v, o, o + wl - 1) end
  if el > 0 then e = sub(v, o + wl, o + wl + el - 1) end
  if rl > 0 then res = sub(v, o + wl + el, o + wl + el + rl - 1) end
  local body = sub(v, o + wl + el + rl)
  return {id = id, st = st, fl = fl, at = at, ma = ma, pr = pr, co = co, to = to, pos = pos,
          tok = tok, tm = tm, cr = cr, dl = dl, w = w, e = e, res = res, body = body,
          q = sub(body, 7, 6 + byte(body, 1))}
end

local function rec_put(r)
  if not PENDING.recs[r.id] then PENDING.order[#PENDING.order + 1] = r.id end
  local dl = ''
  if r.dl > 0 then dl = spack('>I6', r.dl) end
  PENDING.recs[r.id] = spack(HDR, r.st, r.fl, r.at, r.ma, r.pr, r.co, r.to, r.pos, r.tok,
    r.tm, r.cr, #r.w, #r.e, #r.res) .. dl .. r.w .. r.e .. r.res .. r.body
end

-- The 'tasks' field holding task `id`'s progress (progress.lua); deleted with the record, and
-- when a run that does not count (throttle) or a re-drive reuses attempt numbers.
local function progress_field(id)
  return 'p:' .. id
end

-- Whether a task in state `st` has finished (succeeded, dead, cancelled or expired).
local function finished(st)
  return st >= S_SUCCEEDED and st <= S_EXPIRED
end

-- Ends a task in a terminal state (State::finish), and counts the end in its parent if it is a
-- flow's child (lib/flows.lua).
local function finish(r, st, q)
  if r.st == S_WAITING then FLOWS.unindex(r) end
  local ttl = q.rttl
  if st == S_DEAD then
    ttl = q.dttl
    zadd(K_DEAD, '0', format('%s|%012x|%s', q.name, NOW, r.id))
  elseif st == S_CANCELLED or st == S_EXPIRED then
    call('HINCRBY', K_META, '~n:' .. q.name .. ':' .. st, '1')
  end
  r.st = st; r.w = ''; r.tm = NOW
  -- The retention score as text, formatted once per queue and call (not once per task).
  local scores = q.done_at
  if not scores then scores = {}; q.done_at = scores end
  local score = scores[ttl]
  if not score then
    score = format('%.0f', NOW + ttl)
    scores[ttl] = score
  end
  zadd(q.k_done, score, r.id)
  rec_put(r)
  if r.fl % F_DEADLINE >= F_AWAITED then
    call('PUBLISH', channel(CH_DONE, r.id), int_text(st))
  end
  if r.fl >= FLOWS.CHILD then FLOWS.child_ended(r, st) end
end
