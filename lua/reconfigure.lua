-- reconfigure: changes a declared queue's configuration (State::reconfigure_queue). Which parts
-- are replaced (switchyard_core::admin::Reshape) is computed by the caller from the
-- configuration it read, passed as flags, and that configuration is checked here.
-- KEYS: the fixed keys, then the queue's group.
-- ARGV: now, name, new config JSON, then as declare from the policy on (4..26), then the
--       configuration JSON the caller read (27), order changes 0|1 (28), balancer changes 0|1 (29).
-- A concurrency or rate limit raised or removed lets the queue take up what waits
-- (lib/concurrency.lua); a rate limit with a new window starts its log afresh, and one lowered
-- below the dispatches of its window marks the queue (lib/rate.lua).
-- Reply: 1 changed, 0 it already had this configuration.
-- Errors: SY_UNKNOWN_QUEUE, SY_STALE (reconfigured meanwhile: read again), SY_BUSY ready <n> |
--         served <worker,...>, SY_INVALID.
local q = queues_open(2, 1)[1]
local json = ARGV[3]
if not json or json == '' then fail('SY_INVALID', 'config: empty') end
local cfg, rng, jit, limits, after = config_arg(4)
local read = ARGV[after]
local order = int_arg(after + 1, 'order flag', 0, 1)
local balancer = int_arg(after + 2, 'balancer flag', 0, 1)
local existing = call('HGET', K_META, q.name)
if existing == json then return 0 end
if existing ~= read then fail('SY_STALE', 'queue ' .. q.name .. ' was reconfigured meanwhile') end
if order == 1 and ready_len(q) > 0 then fail('SY_BUSY', 'ready ' .. ready_len(q)) end
if balancer == 1 then
  local served = queue_members(q.name)
  if served ~= '' then fail('SY_BUSY', 'served ' .. served) end
  -- The balancer starts afresh, as on a new queue (no member has state to keep).
  q.rng, q.jit, q.vt, q.ep, q.cur = rng, jit, 0, 0, nil
  call('DEL', q.k_ring)
end
if order == 1 then
  -- Only entries of cancelled tasks can be left, and the new policy may use another type.
  call('DEL', q.k_ready)
  q.tomb = 0
end
call('HSET', K_META, q.name, json)
call('HSET', q.k_state, 'c', cfg, 'd', spack(QDYN, q.tomb, q.rng, q.jit, q.vt, q.ep) .. (q.cur or ''))
store_limits(q.k_state, limits)
count_for_limit(q, limits.cl)
if limits.rwin ~= q.rwin then call('DEL', q.k_rate) end
-- The queue as now configured (the handle holds the old configuration), marked if its rate
-- closes it, taking up what a raised or removed limit lets it.
flush()
QUEUES[q.name] = nil
q = queue_of(q.name)
mark_wake(q)
take_up(q)
reconfigure_expiry(q)
flush()
return 1
