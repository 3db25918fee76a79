-- redrive: moves a dead task back to its queue with its attempts reset (State::redrive).
-- KEYS: the fixed keys, then the task's queue group. ARGV: now, id, queue.
-- Reply: {state, worker or ''}. Errors: SY_NOT_FOUND, SY_WRONG_STATE <state>, SY_STALE.
local id = ARGV[2]
local qname = name_arg(3, 'queue name')
local r = rec_get(id)
if not r then fail('SY_NOT_FOUND', id) end
if r.q ~= qname then fail('SY_STALE', 'task ' .. id .. ' is in queue ' .. r.q) end
if r.st ~= S_DEAD then fail('SY_WRONG_STATE', r.st) end
local q = queue_open(1, qname)
redis.call('ZREM', K_DEAD, q.name .. '|' .. hex12(r.tm) .. '|' .. id)
redis.call('ZREM', K_RETAIN, id)
count(q.name, S_DEAD, -1)
r.at = 0
r.res = ''
make_ready(r, q, NOW)
local worker = ''
if #ASSIGN > 0 then worker = ASSIGN[#ASSIGN] end
return {r.st, worker}
