-- reconfigure: changes a declared queue's configuration (State::reconfigure_queue). Which parts
-- are replaced (switchyard_core::admin::Reshape) is computed by the caller from the
-- configuration it read, passed as flags, and that configuration is checked here.
-- KEYS: the fixed keys, then the queue's group.
-- ARGV: now, name, new config JSON, then as declare from the policy on (4..20), then the
--       configuration JSON the caller read (21), order changes 0|1 (22), balancer changes 0|1 (23).
-- Reply: 1 changed, 0 it already had this configuration.
-- Errors: SY_UNKNOWN_QUEUE, SY_STALE (reconfigured meanwhile: read again), SY_BUSY ready <n> |
--         served <worker,...>, SY_INVALID.
local q = queues_open(2, 1)[1]
local json = ARGV[3]
if not json or json == '' then fail('SY_INVALID', 'config: empty') end
local cfg, rng, jit, mw = config_arg(4)
local order = int_arg(22, 'order flag', 0, 1)
local balancer = int_arg(23, 'balancer flag', 0, 1)
local existing = call('HGET', K_META, q.name)
if existing == json then return 0 end
if existing ~= ARGV[21] then fail('SY_STALE', 'queue ' .. q.name .. ' was reconfigured meanwhile') end
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
store_bound(q.k_state, mw)
return 1
