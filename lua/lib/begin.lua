-- lib/begin.lua: the start of every call.

-- Starts a call: its keys, arguments and time, and empty per-call state. Every transition
-- function calls it first.
local function begin(keys, args)
  if not call then
    call, sub, format, find, byte, match, gsub, gmatch, spack, sunpack, floor, min, ceil,
      concat, sort, tonumber, tostring, ipairs, pairs, unpack, next = builtins()
  end
  KEYS, ARGV = keys, args
  K_TASKS, K_META, K_WORKERS, K_HB, K_FREE = keys[1], keys[2], keys[3], keys[4], keys[5]
  K_WTASKS, K_DEAD, K_DEDUPX, K_EVENTS = keys[6], keys[7], keys[8], keys[9]
  FLOWS.k_settle, FLOWS.k_parents = keys[10], keys[11]
  PENDING = {recs = {}, order = {}, adds = {}, rems = {}, seq = nil, seq_extra = 0, pubs = {}}
  QUEUES, GROUPS, WORKERS, UNSETTLED, ASSIGN = {}, {}, {}, {}, {}
  POP_AHEAD = 0
  local a = args[1]
  if a == nil or a == '' then
    local t = call('TIME')
    NOW = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
  else
    NOW = tonumber(a)
    if not NOW or NOW < 0 or NOW > MAX_MS or NOW ~= floor(NOW) then
      fail('SY_INVALID', 'now: expected milliseconds in 0..2^48, got ' .. tostring(a))
    end
  end
end
