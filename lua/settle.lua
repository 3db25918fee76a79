-- settle: carries out flow settle entries (switchyard_core::tree, rule 4; State::settle_due),
-- each only if it is still in the settle set (another maintainer may have taken it): a
-- released parent enters its queue (ready, or dispatched at once); a failed one ends dead and
-- writes a cancel entry for each child without an end; a cancel entry cancels a task that has
-- not started (one waiting for its own children, with them). Entries written here are due at
-- once and taken by the caller's next round. A materialize entry makes a committed wide flow's
-- next step seen; an expire entry deletes an uncommitted one's staged steps (lib/flows.lua).
-- KEYS: the fixed keys, then one group per queue named below (for a materialize entry, every
--       queue of its flow: the 'fq:<root>' field).
-- ARGV: now, G, G queue names, M, M settle entries (tree::settle_entry text).
-- Reply: {entries carried out, then the assignments made (worker, id, queue each)}.
local ng = int_arg(2, 'queue count', 0, 1024)
queues_named(3, ng)
local m = int_arg(3 + ng, 'entry count', 0, 100000)
local done = 0
for i = 1, m do
  local entry = ARGV[3 + ng + i]
  if call('ZREM', FLOWS.k_settle, entry) == 1 then
    done = done + 1
    local kind, qname, id, child = match(entry, '^(%a)|([^|]+)|([0-9A-Z]+)|?([0-9A-Z]*)$')
    if not kind then fail('SY_INVALID', 'settle entry: `' .. entry .. '`') end
    local r = nil
    if kind == 's' then
      FLOWS.materialize(id, qname)
    elseif kind == 'x' then
      FLOWS.expire(id)
    else
      r = rec_get(id)
      -- A staged task is seen by nothing (rule 6).
      if r and r.fl >= FLOWS.STAGED then r = nil end
    end
    if r then
      local q = queue_of(r.q)
      if r.st == S_WAITING and kind == 'r' then
        FLOWS.unindex(r)
        place(r, q, nil, false, NOW)
      elseif r.st == S_WAITING and kind == 'f' then
        r.e = 'child ' .. child .. ' failed'
        emit(q, 'dead', r.id, nil, r.e)
        finish(r, S_DEAD, q)
        FLOWS.cancel_children(r)
      elseif r.st == S_WAITING and kind == 'c' then
        FLOWS.cancel_parent(q, r)
      elseif kind == 'c' and (r.st == S_READY or r.st == S_SCHEDULED or r.st == S_RETRY) then
        ADMIN.cancel_waiting(q, r)
      end
    end
  end
end
flush()
local reply = {done}
for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
return reply
