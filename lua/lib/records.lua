-- lib/records.lua: task records, unpacked and packed.
-- Rust twin: crates/switchyard-memory/src/state/records.rs.

-- Task records -------------------------------------------------------------------------------
-- header: state flags attempts max_attempts priority cost timeout pos token time created
--         worker_len error_len result_len; then worker, error, result, body. The body (built by
-- the client) is '>BBHH' lengths of queue, kind, affinity key, dedup key, those, the payload.
-- `pos` is the sequence number in a ready or delayed set, the token while leased; `time` is the
-- run-at while scheduled, when it became ready while ready or dispatched, the lease deadline
-- while running, the finish time when finished.
local function rec_get(id, raw)
  local v = raw or PENDING.recs[id] or call('HGET', K_TASKS, id)
  if not v then return nil end
  local st, fl, at, ma, pr, co, to, pos, tok, tm, cr, wl, el, rl = sunpack(HDR, v)
  local o = HDR_LEN + 1
  local w, e, res = '', '', ''
  if wl > 0 then w = sub(v, o, o + wl - 1) end
  if el > 0 then e = sub(v, o + wl, o + wl + el - 1) end
  if rl > 0 then res = sub(v, o + wl + el, o + wl + el + rl - 1) end
  local body = sub(v, o + wl + el + rl)
  return {id = id, st = st, fl = fl, at = at, ma = ma, pr = pr, co = co, to = to, pos = pos,
          tok = tok, tm = tm, cr = cr, w = w, e = e, res = res, body = body,
          q = sub(body, 7, 6 + byte(body, 1))}
end

local function rec_put(r)
  if not PENDING.recs[r.id] then PENDING.order[#PENDING.order + 1] = r.id end
  PENDING.recs[r.id] = spack(HDR, r.st, r.fl, r.at, r.ma, r.pr, r.co, r.to, r.pos, r.tok,
    r.tm, r.cr, #r.w, #r.e, #r.res) .. r.w .. r.e .. r.res .. r.body
end
