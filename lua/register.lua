-- register: registers a worker (handing back the tasks of an earlier registration with the same
-- id) and fills its free slots (State::register_worker).
-- KEYS: the fixed keys, then one group per queue: first the worker's new queues in its order,
--       then any queue only the earlier registration served.
-- ARGV: now, worker, capacity, weight, heartbeat ttl ms, N new queues, M all queues, M names.
-- Reply: {replaced 0|1, assignments...}.
-- Errors: SY_UNKNOWN_QUEUE, SY_STALE (the earlier registration serves queues not passed:
--         read it again and retry), SY_INVALID.
local w = name_arg(2, 'worker id')
local cap = int_arg(3, 'capacity', 1, 65535)
local weight = int_arg(4, 'weight', 1, 1000)
local ttl = int_arg(5, 'heartbeat ttl', 1, 2^32 - 1)
local nnew = int_arg(6, 'queue count', 1, 64)
local nall = int_arg(7, 'group count', nnew, 1024)
local groups = queues_open(8, nall)
local old = worker_get(w)
if old then
  for _, qname in ipairs(old.queues) do queue_of(qname) end
end
local replaced = 0
if old then
  hand_back(old)
  replaced = 1
end
local names = {}
for i = 1, nnew do names[i] = groups[i].name end
local wr = {id = w, cap = cap, weight = weight, inf = 0, asg = 0, exp = NOW + ttl, ttl = ttl,
            wait = 0, qs = table.concat(names, ','), queues = names}
worker_put(wr)
redis.call('ZADD', K_HB, wr.exp, w)
for i = 1, nnew do
  local q = groups[i]
  bal_put(w, q.name, {str = q.str, weight = weight, n = 1, ep = queue_dyn(q, 'ep'), stamp = 0, m = ''})
  if q.str == T_AFFINITY then
    local args = {}
    for v = 0, q.vn - 1 do
      local label = w .. '#' .. v
      args[#args + 1] = tonumber(string.sub(redis.sha1hex(label), 1, 13), 16)
      args[#args + 1] = label
    end
    redis.call('ZADD', q.k_ring, unpack(args))
  end
end
refresh_load(wr)
fill_worker(wr)
worker_put(wr)
local reply = {replaced}
for _, v in ipairs(ASSIGN) do reply[#reply + 1] = v end
return reply
