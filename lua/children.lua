-- children: a flow task's children with their ends as counted and their states now (read-only;
-- State::children; lib/flows.lua).
-- KEYS: the fixed keys. ARGV: now, id.
-- Reply: {0} no such task; else {1, then per child: id, policy digit, end ('' none: the state
--        code '>B' then the result or error), state now (-1: its record is gone)}.
local id = ARGV[2] or ''
local r = rec_get(id)
-- A staged task is seen by nothing (lib/flows.lua).
if not r or r.fl >= FLOWS.STAGED then return {0} end
local reply = {1}
if r.fl < FLOWS.PARENT then return reply end
local ids, policies = FLOWS.children(id)
local ends = {}
for i, c in ipairs(ids) do ends[i] = 'fe:' .. id .. '|' .. c end
ends = FLOWS.hmget(ends)
local recs = FLOWS.hmget(ids)
for i, c in ipairs(ids) do
  reply[#reply + 1] = c
  reply[#reply + 1] = policies[i]
  reply[#reply + 1] = ends[i] or ''
  if recs[i] and sunpack('>B', recs[i], 2) < FLOWS.STAGED then
    reply[#reply + 1] = sunpack('>B', recs[i])
  else
    reply[#reply + 1] = -1
  end
end
return reply
