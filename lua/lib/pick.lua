-- lib/pick.lua: the load-balancing strategies (Balancer::pick).
-- Rust twin: the strategies of crates/switchyard-core/src/strategy/ (`Balancer::pick`).

-- Chooses an eligible worker for task `r` of queue `q` and records the choice (Balancer::pick).
local function pick(q, r)
  settle()
  local lo, hi = '[' .. q.name .. '|', '(' .. q.name .. '}'
  local str = q.str
  if str == T_RR then
    local found = {}
    if q.cur then found = call('ZRANGEBYLEX', K_FREE, '(' .. q.name .. '|' .. q.cur, hi, 'LIMIT', '0', '1') end
    if #found == 0 then found = call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', '0', '1') end
    if #found == 0 then return nil end
    set_state(q, 'cur', sub(found[1], #q.name + 2))
    return q.cur
  elseif str == T_RANDOM then
    local n = call('ZLEXCOUNT', K_FREE, lo, hi)
    if n == 0 then return nil end
    set_state(q, 'rng', (q.rng * MINSTD_A) % MINSTD_M)
    local first = call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', '0', '1')[1]
    local i = q.rng % n
    if i > 0 then
      local rank = call('ZRANK', K_FREE, first) + i
      first = call('ZRANGE', K_FREE, rank, rank)[1]
    end
    return sub(first, #q.name + 2)
  elseif str == T_WEIGHTED or str == T_LL then
    -- Both take the first entry: weighted by (pass, id), least-loaded by (ratio, stamp, id).
    local found = call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', '0', '1')
    if #found == 0 then return nil end
    local m = found[1]
    if str == T_LL then
      -- The new stamp (the lease token, set by dispatch_to) goes into the entry with the new
      -- load, when the worker settles.
      local w = sub(m, #q.name + 29)
      local wr = worker_get(w)
      unsettle(wr, true)
      wr.picked = wr.picked or {}
      wr.picked[q.name] = true
      return w
    end
    local w = sub(m, #q.name + 16)
    local field = w .. '|' .. q.name
    local v = call('HGET', K_WORKERS, field)
    local weight, n, ep = sunpack(BAL, v)
    q.vt = tonumber(sub(m, #q.name + 2, #q.name + 14), 16)
    n = n + 1
    local nm = format('%s|%013x|%s', q.name, floor((2 * n - 1) * HALF_SCALE / weight), w)
    call('ZREM', K_FREE, m)
    call('ZADD', K_FREE, '0', nm)
    call('HSET', K_WORKERS, field, spack(BAL, weight, n, ep) .. nm)
    set_state(q, 'vt', q.vt)
    if q.vt >= RENORM_AT then
      -- Renormalise: every eligible worker's n drops by floor(vt * weight / 2^16).
      q.ep = q.ep + 1
      for _, em in ipairs(call('ZRANGEBYLEX', K_FREE, lo, hi)) do
        local ew = match(em, '[^|]+$')
        local ef = ew .. '|' .. q.name
        local ev = call('HGET', K_WORKERS, ef)
        local eweight, en = sunpack(BAL, ev)
        en = en - min(floor(q.vt * eweight / WEIGHT_SCALE), en - 1)
        local enm = format('%s|%013x|%s', q.name, floor((2 * en - 1) * HALF_SCALE / eweight), ew)
        call('ZREM', K_FREE, em)
        call('ZADD', K_FREE, '0', enm)
        call('HSET', K_WORKERS, ef, spack(BAL, eweight, en, q.ep) .. enm)
      end
      set_state(q, 'vt', 0)
      set_state(q, 'ep', q.ep)
    end
    return w
  elseif str == T_AFFINITY then
    if #call('ZRANGEBYLEX', K_FREE, lo, hi, 'LIMIT', '0', '1') == 0 then return nil end
    local key = r.id
    local ql, kl, al = sunpack('>BBH', r.body)
    -- Bit 128 of the kind's length says a group key follows (lib/groups.lua).
    kl = kl % 128
    if al > 0 then key = sub(r.body, 7 + ql + kl, 6 + ql + kl + al) end
    local h = tonumber(sub(redis.sha1hex(key), 1, 13), 16)
    for _, range in ipairs({{h, '+inf'}, {'-inf', '(' .. format('%.0f', h)}}) do
      local offset = 0
      while true do
        local pts = call('ZRANGEBYSCORE', q.k_ring, range[1], range[2], 'LIMIT', offset, 16)
        for _, p in ipairs(pts) do
          local w = match(p, '^(.*)#%d+$')
          if call('ZSCORE', K_FREE, q.name .. '|' .. w) then return w end
        end
        if #pts < 16 then break end
        offset = offset + 16
      end
    end
  end
  return nil
end
