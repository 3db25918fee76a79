-- declare: creates a queue, or checks that an existing one has the same configuration.
-- KEYS: the fixed keys, then the queue's group.
-- ARGV: now, name, config JSON, policy, aging, strategy, vnodes, default cost, max attempts,
--       timeout, backoff base, backoff max, jitter pct, result ttl, dead ttl, dedup window,
--       random generator state, jitter generator state, event level (0 off, 1 failures, 2 all),
--       max waiting (0: unbounded), concurrency (0: no limit), rate limit and its window in ms
--       (both 0: no limit), finished and dead tasks kept (-1: all; purge.lua), dedup mode (0
--       throttle, 1 debounce), groups (-1: not shared; else the per-group concurrency limit,
--       0 none: lib/groups.lua), the per-group rate limit and its window (both 0: none), the
--       bound per group (0: none; lib/bounded.lua).
-- Reply: 1 created, 0 already there with the same configuration.
-- Errors: SY_CONFLICT <existing JSON>, SY_INVALID.
local name = name_arg(2, 'queue name')
local json = ARGV[3]
if not json or json == '' then fail('SY_INVALID', 'config: empty') end
local existing = call('HGET', K_META, name)
if existing then
  if existing == json then return 0 end
  fail('SY_CONFLICT', existing)
end
local cfg, rng, jit, limits = ADMIN.config_arg(4)
call('HSET', K_META, name, json)
call('HSET', KEYS[NFIXED + 1], 'c', cfg, 'd', spack(QDYN, 0, rng, jit, 0, 0))
ADMIN.store_limits(KEYS[NFIXED + 1], limits)
return 1
