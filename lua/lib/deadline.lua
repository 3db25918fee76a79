-- lib/deadline.lua: expiring the late tasks of a queue that expires them (`q.xp`: the EDF
-- policy with its parameter 1), the rule at its three places: switchyard_core::flow::deadline.
-- Such a queue's ready set is scored by deadline (MAX_MS without one), so its late tasks are
-- the ones scored at or below NOW. State field 'xm' (the expiry mark): the last deadline
-- announced (see `mark_expiry`, lib/queues.lua); its presence tells
-- `until_due` (Backend::until_due) to read the head of the ready set, the deadline maintenance
-- sleeps until.
-- Rust twin: crates/switchyard-memory/src/state/deadline.rs.

-- Ends task `r` (out of every set already) expired.
local function expire(r, q)
  emit(q, 'expired', r.id)
  finish(r, S_EXPIRED, q)
end

-- Rule 1: task `r` enters the ready set of `q`; true if it expires instead.
local function expires_on_entry(r, q)
  if q.xp and r.dl > 0 and r.dl <= NOW then
    expire(r, q)
    return true
  end
  return false
end

-- Rules 2 and 3: expires the heads of `q`'s ready set whose deadline has come, at most
-- `limit`; returns how many. Once it has found none left, the rest of the call finds none
-- either (NOW does not move, and rule 1 keeps late tasks out), so it does not look again.
local function expire_heads(q, limit)
  if not q.xp or q.x_clear then return 0 end
  flush_ready(q)
  local n = 0
  while n < limit do
    local step = min(limit - n, 256)
    local late = call('ZRANGEBYSCORE', q.k_ready, '-inf', NOW, 'LIMIT', '0', int_text(step))
    for _, m in ipairs(late) do
      local r = rec_get(sub(m, 13))
      if q.grp then GROUP.remove(q, r, m) else call('ZREM', q.k_ready, m) end
      expire(r, q)
    end
    n = n + #late
    if #late < step then
      q.x_clear = true
      break
    end
  end
  if q.rlen then q.rlen = q.rlen - n end
  return n
end

-- Maintenance: whether `q` still has a late head (more to do).
local function late_head(q)
  if not q.xp then return false end
  flush_ready(q)
  return #call('ZRANGEBYSCORE', q.k_ready, '-inf', NOW, 'LIMIT', '0', '1') > 0
end
