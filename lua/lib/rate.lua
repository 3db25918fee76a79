-- lib/rate.lua: rate limits and holds (the rule: switchyard_core::flow::rate). A limited
-- queue's log is its `rate` list: the times of its dispatches, oldest first; those at or
-- before its time minus the window (see `rate_tokens`) no longer count and are trimmed when
-- the queue's tokens are first read in a call. State fields: 'r' max, 'rw' window (ms), 'u' held until, 't' the wake mark.
-- Rust twin: crates/switchyard-memory/src/state/rate.rs.

-- Reads `q`'s log without changing it: sets `q.rnow`, the time it counts at — NOW, but never
-- before its newest dispatch (Rate::at), so that a call carrying an older time cannot make room
-- the log's own times deny — and `q.oldest`, the oldest dispatch still counting; returns how
-- many entries at its head left the window, and how many count.
local function rate_window(q)
  q.rnow = NOW
  local newest = tonumber(call('LINDEX', q.k_rate, '-1'))
  if newest and newest > NOW then q.rnow = newest end
  local horizon = q.rnow - q.rwin
  local cut = 0
  while true do
    local head = call('LRANGE', q.k_rate, int_text(cut), int_text(cut + 63))
    local n = 0
    while n < #head and tonumber(head[n + 1]) <= horizon do n = n + 1 end
    cut = cut + n
    if n < 64 then
      if head[n + 1] then q.oldest = tonumber(head[n + 1]) end
      break
    end
  end
  return cut, call('LLEN', q.k_rate) - cut
end

-- Tokens left to queue `q` in this call (2^31 without a limit): read once (trimming what left
-- the window), then counted locally.
local function rate_tokens(q)
  if q.rmax == 0 then return 2^31 end
  if not q.tok then
    local cut, counting = rate_window(q)
    if cut > 0 then call('LTRIM', q.k_rate, int_text(cut), '-1') end
    q.tok = q.rmax - counting
  end
  return q.tok
end

-- Whether `q` may dispatch as far as its rate and hold go (Rate::open).
local function rate_open(q)
  return NOW >= q.hold and (q.rmax == 0 or rate_tokens(q) > 0)
end

-- When `q` opens again, seen at NOW (flow::rate::opens_at).
local function opens_at(q)
  local at = NOW
  if q.rmax > 0 and rate_tokens(q) <= 0 and q.oldest then at = q.oldest + q.rwin end
  if q.hold > at then at = q.hold end
  return at
end

-- Marks `q` with the time it opens again if that is after NOW (written by `flush`, which also
-- wakes the maintenance loops sleeping until an earlier time).
local function mark_wake(q)
  local at = opens_at(q)
  if at > NOW then
    q.wake = at
    q.wake_dirty = true
  end
end

-- A dispatch of `q`'s task now takes a token, if `q` is limited (State::spend_token): its
-- time joins the log (pushed by `flush`), and the last token marks the queue.
local function spend_token(q)
  if q.rmax == 0 then return end
  rate_tokens(q)
  q.tok = q.tok - 1
  if not q.oldest then q.oldest = q.rnow end
  local p = q.rpush
  if not p then p = {}; q.rpush = p end
  p[#p + 1] = q.rnow
  if q.tok <= 0 then mark_wake(q) end
end

-- Maintenance: whether `q`'s mark has come; the mark goes (the caller takes `q` up).
local function wake_has_come(q)
  if q.wake == 0 or q.wake > NOW then return false end
  q.wake = 0
  q.wake_dirty = true
  return true
end

-- Writes a due time of `q` kept in its state field `field` (the rate wake mark 't', the
-- expiry mark 'xm' of lib/deadline.lua) and wakes the maintenance loops sleeping until a later
-- time (Backend::sleep_until_due); 0 removes the field.
local function write_due(q, field, at)
  if at > 0 then
    call('HSET', q.k_state, field, at)
    call('PUBLISH', channel(CH_DUE), at)
  else
    call('HDEL', q.k_state, field)
  end
end

-- Writes what this call changed of `q`'s rate state (from `flush`).
local function flush_rate(q)
  local p = q.rpush
  if p then
    q.rpush = nil
    for i = 1, #p, 4000 do call('RPUSH', q.k_rate, unpack(p, i, min(i + 3999, #p))) end
  end
  if q.wake_dirty then
    q.wake_dirty = nil
    write_due(q, 't', q.wake)
  end
end
