-- register: registers a worker and fills its free slots (State::register_worker). An earlier
-- registration of the id is replaced (its tasks handed back) if it is the same instance or its
-- heartbeat expired (expiry < now); a live one of another instance is left alone.
-- KEYS: the fixed keys, then one group per queue: first the worker's new queues in its order,
--       then any queue only the earlier registration served.
-- ARGV: now, worker, capacity, weight, heartbeat ttl ms, instance token, N new queues,
--       M all queues, M names.
-- Reply: {replaced 0|1, assignments...}.
-- Errors: SY_UNKNOWN_QUEUE, SY_ID_IN_USE '<worker> <ms until its expiry>' (a live registration
--         of another instance), SY_STALE (the earlier registration serves queues not passed:
--         read it again and retry), SY_INVALID.
local w = name_arg(2, 'worker id')
local cap = int_arg(3, 'capacity', 1, 65535)
local weight = int_arg(4, 'weight', 1, 1000)
local ttl = int_arg(5, 'heartbeat ttl', 1, 2^32 - 1)
local inst = int_arg(6, 'instance token', 1, 2^48 - 1)
local nnew = int_arg(7, 'queue count', 1, 64)
local nall = int_arg(8, 'group count', nnew, 1024)
local groups = queues_open(9, nall)
local old = worker_get(w)
if old and old.inst ~= inst and old.exp >= NOW then
  fail('SY_ID_IN_USE', w .. ' ' .. (old.exp - NOW))
end
local replaced = 0
if old then
  for _, qname in ipairs(old.queues) do queue_of(qname) end
  hand_back(old)
  replaced = 1
end
local names, codes, stamps = {}, {}, {}
local wr = {id = w, cap = cap, weight = weight, inf = 0, exp = NOW + ttl, ttl = ttl, rc = 0, wait = 0,
            ib = 0, inst = inst, dn = 0, ok = 0, queues = {}, strs = {}, stamps = {}, dirty = true}
for i = 1, nnew do
  local q = groups[i]
  local fcfs = 0
  if q.list then fcfs = 1 end
  names[i] = q.name
  codes[i] = q.str .. fcfs
  wr.queues[i] = q.name
  wr.strs[q.name] = q.str
  wr.stamps[q.name] = '0000000000000'
  if q.str == T_WEIGHTED then
    call('HSET', K_WORKERS, w .. '|' .. q.name, spack(BAL, weight, 1, q.ep))
  end
  if q.str == T_AFFINITY then
    local args = {}
    for v = 0, q.vn - 1 do
      local label = w .. '#' .. v
      args[#args + 1] = tonumber(sub(redis.sha1hex(label), 1, 13), 16)
      args[#args + 1] = label
    end
    call('ZADD', q.k_ring, unpack(args))
  end
end
wr.names = concat(names, ',')
wr.codes = concat(codes)
WORKERS[w] = wr
call('ZADD', K_HB, wr.exp, w)
unsettle(wr, false)
fill_worker(wr)
flush()
local reply = {replaced}
for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
return reply
