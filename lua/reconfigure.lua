-- reconfigure: changes a declared queue's configuration (State::reconfigure_queue). Which parts
-- are replaced (switchyard_core::admin::Reshape) is computed by the caller from the
-- configuration it read, passed as flags, and that configuration is checked here.
-- KEYS: the fixed keys, then the queue's group.
-- ARGV: now, name, new config JSON, then as declare from the policy on (4..30), then the
--       configuration JSON the caller read (31), order changes 0|1 (32), balancer changes 0|1
--       (33), sharing between groups turned on or off 0|1 (34).
-- Sharing turned on or off needs no waiting (ready, scheduled, retry-scheduled) and no active
-- task (each group counts its scheduled ones: lib/delayed.lua), and starts the groups afresh;
-- new per-group limits mark, close and open groups (lib/group_limits.lua: GROUP.relimit).
-- A concurrency or rate limit raised or removed lets the queue take up what waits
-- (lib/concurrency.lua); a rate limit with a new window starts its log afresh, and one lowered
-- below the dispatches of its window marks the queue (lib/rate.lua).
-- Reply: 1 changed, 0 it already had this configuration.
-- Errors: SY_UNKNOWN_QUEUE, SY_STALE (reconfigured meanwhile: read again), SY_BUSY ready <n> |
--         served <worker,...> | shared <n>, SY_INVALID.
local q = queues_open(2, 1)[1]
local json = ARGV[3]
if not json or json == '' then fail('SY_INVALID', 'config: empty') end
local cfg, rng, jit, limits, after = ADMIN.config_arg(4)
local read = ARGV[after]
local order = int_arg(after + 1, 'order flag', 0, 1)
local balancer = int_arg(after + 2, 'balancer flag', 0, 1)
local sharing = int_arg(after + 3, 'sharing flag', 0, 1)
local existing = call('HGET', K_META, q.name)
if existing == json then return 0 end
if existing ~= read then fail('SY_STALE', 'queue ' .. q.name .. ' was reconfigured meanwhile') end
if order == 1 and ready_len(q) > 0 then fail('SY_BUSY', 'ready ' .. ready_len(q)) end
-- The refusals first, in the reference's order (ready, served, shared), then the changes.
if balancer == 1 then
  local served = ADMIN.queue_members(q.name)
  if served ~= '' then fail('SY_BUSY', 'served ' .. served) end
end
if sharing == 1 then
  local busy = ready_len(q) + call('ZCARD', q.k_delayed)
  for _, m in ipairs(call('ZRANGEBYLEX', K_WTASKS, '-', '+')) do
    local r = rec_get(match(m, '|%x+|(.*)$'))
    if r and r.q == q.name then busy = busy + 1 end
  end
  if busy > 0 then fail('SY_BUSY', 'shared ' .. busy) end
  -- Only entries of cancelled tasks can be left in the ready set (a list or a set).
  call('DEL', q.k_ready, q.k_groups, q.k_gready, q.k_gring, q.k_glog, q.k_gwake)
  q.tomb = 0
end
if balancer == 1 then
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
ADMIN.store_limits(q.k_state, limits)
ADMIN.count_for_limit(q, limits.cl)
if limits.rwin ~= q.rwin then call('DEL', q.k_rate) end
-- The queue as now configured (the handle holds the old configuration), marked if its rate
-- closes it, taking up what a raised or removed limit lets it.
flush()
local old_grwin = q.grwin
QUEUES[q.name] = nil
q = queue_of(q.name)
mark_wake(q)
if q.grp and sharing == 0 then GROUP.relimit(q, old_grwin) end
take_up(q)
ADMIN.reconfigure_expiry(q)
flush()
return 1
