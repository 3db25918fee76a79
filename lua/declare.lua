-- declare: creates a queue, or checks that an existing one has the same configuration.
-- KEYS: the fixed keys, then the queue's group.
-- ARGV: now, name, config JSON, policy, aging, strategy, vnodes, default cost, max attempts,
--       timeout, backoff base, backoff max, jitter pct, result ttl, dead ttl, dedup window,
--       random generator state, jitter generator state, event level (0 off, 1 failures, 2 all).
-- Reply: 1 created, 0 already there with the same configuration.
-- Errors: SY_CONFLICT <existing JSON>, SY_INVALID.
local name = name_arg(2, 'queue name')
local json = ARGV[3]
if not json or json == '' then fail('SY_INVALID', 'config: empty') end
local existing = redis.call('HGET', K_META, name)
if existing then
  if existing == json then return 0 end
  fail('SY_CONFLICT', existing)
end
local pol = int_arg(4, 'policy', 0, 4)
local age = int_arg(5, 'aging', 0, 2^24)
local str = int_arg(6, 'strategy', 0, 5)
local vn = int_arg(7, 'vnodes', 0, 256)
local dcost = int_arg(8, 'default cost', 0, 2^32 - 1)
local matt = int_arg(9, 'max attempts', 1, 1000)
local tmo = int_arg(10, 'timeout', 1, 2^32 - 1)
local bb = int_arg(11, 'backoff base', 0, 2^32 - 1)
local bm = int_arg(12, 'backoff max', 0, 2^32 - 1)
local bj = int_arg(13, 'jitter pct', 0, 100)
local rttl = int_arg(14, 'result ttl', 0, MAX_MS)
local dttl = int_arg(15, 'dead ttl', 0, MAX_MS)
local dwin = int_arg(16, 'dedup window', 0, MAX_MS)
local rng = int_arg(17, 'random state', 1, MINSTD_M - 1)
local jit = int_arg(18, 'jitter state', 1, MINSTD_M - 1)
local ev = int_arg(19, 'event level', 0, 2)
if (pol == P_PRIO_AGING or pol == 4) and age < 1 then fail('SY_INVALID', 'aging: must be at least 1') end
if str == T_AFFINITY and vn < 1 then fail('SY_INVALID', 'vnodes: must be at least 1') end
redis.call('HSET', K_META, name, json)
redis.call('HSET', KEYS[NFIXED + 1],
  'c', struct.pack(CFG, pol, age, str, vn, dcost, matt, tmo, bb, bm, bj, rttl, dttl, dwin, ev),
  'd', struct.pack(QDYN, 0, rng, jit, 0, 0, 0))
return 1
