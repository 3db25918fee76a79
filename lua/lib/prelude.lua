-- lib/prelude.lua: the call's keys, arguments and time, the builtins, and argument checks.
--
-- The files of lua/lib/ are the helpers the transitions share, in sections. The Rust loader
-- (crates/switchyard-redis/src/library.rs) joins them, in the order it lists them (a helper is
-- defined before any file that uses it), and every transition file into one Redis Function
-- library, loaded once per server: each transition is a function whose body is its file,
-- called with FCALL. Every rule here mirrors crates/switchyard-memory/src/state.rs (the
-- reference) and docs/architecture.md; the layout is documented in docs/redis-layout.md.

-- The helpers below are created once, when the library loads, and live as long as it does; the
-- per-call state (keys, arguments, time, deferred writes, opened queues and workers) is set
-- afresh by `begin` at the start of every call, so nothing carries over between calls.
--
-- Cost model (Redis 7, measured): a write command ~1.2 us, a read ~0.4 us. Hence writes
-- collected into one multi-element command per key where the order allows (see `flush`), and
-- worker in-flight counts derived rather than stored.

-- This call's keys and arguments, and its time in ms (ARGV[1], or the server's clock).
local KEYS, ARGV, NOW

-- The builtins the helpers use, held as upvalues: in a function library a global is looked up
-- in the library's environment and then, through its metatable, in Redis' globals, on every
-- use (`string.sub`: twice). Bound by `begin` on the library's first call, since while a
-- library loads Redis exposes only `redis.register_function` and `redis.log`.
local function builtins()
  return redis.call, string.sub, string.format, string.find, string.byte, string.match,
    string.gsub, string.gmatch, struct.pack, struct.unpack, math.floor, math.min, math.ceil,
    table.concat, table.sort, tonumber, tostring, ipairs, pairs, unpack, next
end
local call, sub, format, find, byte, match, gsub, gmatch, spack, sunpack, floor, min, ceil,
  concat, sort, tonumber, tostring, ipairs, pairs, unpack, next

-- Keys (one hash-tag slot; all passed in KEYS; nothing here builds a key name).
local K_TASKS               -- HASH  id -> task record; 'd:<queue>|<key>' -> '<id>|<expires>'; 'p:<id>' -> progress
local K_META                -- HASH  '~seq' counter, '~n:<queue>:<state>' counts, queue -> config
local K_WORKERS             -- HASH  worker -> worker record; '<worker>|<queue>' -> balancer state
local K_HB                  -- ZSET  heartbeat expiry -> worker
local K_FREE                -- ZSET  lex: '<queue>|<strategy key>|<worker>' eligible / parked
local K_WTASKS              -- ZSET  lex: '<worker>|<token>|<id>' tasks dispatched to / running on a worker
local K_DEAD                -- ZSET  lex: '<queue>|<died at>|<id>'
local K_DEDUPX              -- ZSET  dedup expiry -> '<queue>|<key>'
local K_EVENTS              -- STREAM the event log, capped at about EVENT_CAP entries
-- Flags 8, 16 and 32 mark a flow's child, a task with children, and a staged task (a wide flow's,
-- not yet seen; tree::STAGE_TTL_MS). The flows' two fixed keys are FLOWS.k_settle (ZSET due time -> settle entry) and
-- FLOWS.k_parents (ZSET lex: '<queue>|<created at>|<id>' tasks waiting for their children),
-- with the flows' helpers (lib/flows.lua): a table, since the main chunk is at Lua's limit of
-- 200 locals.
local FLOWS = {CHILD = 8, PARENT = 16, STAGED = 32, STAGE_TTL = 3600000}
-- Then one group of GROUP_KEYS keys per queue a script may touch, named in ARGV by the script:
-- state HASH, ready LIST (fcfs) or ZSET, delayed ZSET, ring ZSET, done ZSET, rate LIST, and
-- for a queue shared between groups (lib/groups.lua) groups HASH, gready ZSET, gring LIST,
-- glog ZSET, gwake ZSET.

-- The name of a channel: the namespace's key prefix (K_TASKS without 'tasks'), then `kind`
-- (CH_WAKE, CH_DONE, CH_DUE of lib/protocol.lua) and `name` if any. Channels are not keys: the
-- one place their names are built.
local function channel(kind, name)
  return sub(K_TASKS, 1, -6) .. kind .. (name or '')
end


local function fail(code, msg)
  error({err = code .. ' ' .. msg})
end

-- An integer argument in lo..hi.
local function int_arg(i, name, lo, hi)
  local v = tonumber(ARGV[i])
  if not v or v ~= floor(v) or v < lo or v > hi then
    fail('SY_INVALID', name .. ': expected an integer in ' .. lo .. '..' .. hi .. ', got ' .. tostring(ARGV[i]))
  end
  return v
end

-- An integer as a command argument. A number argument costs Redis a `%.17g` format on every
-- call; the small ones are formatted once per library load.
local INT_TEXT = {}
local function int_text(n)
  local s = INT_TEXT[n]
  if not s then
    s = format('%d', n)
    if n >= 0 and n < 1024 then INT_TEXT[n] = s end
  end
  return s
end

local function name_arg(i, what)
  local v = ARGV[i]
  if not v or v == '' or #v > 128 or find(v, '[^%w_%-%.:]') then
    fail('SY_INVALID', what .. ': `' .. tostring(v) .. '` is not a valid name')
  end
  return v
end
