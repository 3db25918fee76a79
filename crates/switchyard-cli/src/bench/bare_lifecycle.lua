-- bare_lifecycle: the least a task lifecycle can cost in Lua on Redis, measured by
-- `switchyard bench` as a second floor next to `return 1`. Not a Switchyard transition: no
-- validation, no scheduling policy, no strategy decision, no fencing, no accounting — only the
-- eight commands any queue needs per task (an id, a record, a ready list, a running list, a
-- result). Phases `hand` and `ack` are the floor of `switchyard bench --compare`'s awaited
-- single submits: a task stored and published whole to the one waiting worker's channel (no
-- ready list, no receive call), then acknowledged with its result.
-- KEYS: records HASH, ready LIST, id counter STRING, running LIST, results HASH.
-- ARGV: phase ('submit' | 'receive' | 'complete' | 'hand' | 'ack'), task count (1 for hand and
--       ack), then for submit the payload, for hand the payload and the worker's channel, for
--       ack the task id.
-- Reply: the number of tasks handled.
local phase, n = ARGV[1], tonumber(ARGV[2])
if not n or n < 1 then return redis.error_reply('ERR task count: expected a positive integer') end
local done = 0
if phase == 'submit' then
  for _ = 1, n do
    local id = redis.call('INCR', KEYS[3])
    redis.call('HSET', KEYS[1], id, ARGV[3])
    redis.call('RPUSH', KEYS[2], id)
    done = done + 1
  end
elseif phase == 'receive' then
  for _ = 1, n do
    local id = redis.call('LPOP', KEYS[2])
    if not id then break end
    local rec = redis.call('HGET', KEYS[1], id)
    redis.call('HSET', KEYS[1], id, 'R' .. rec)
    redis.call('RPUSH', KEYS[4], id)
    done = done + 1
  end
elseif phase == 'complete' then
  for _ = 1, n do
    local id = redis.call('LPOP', KEYS[4])
    if not id then break end
    redis.call('HDEL', KEYS[1], id)
    redis.call('HSET', KEYS[5], id, 'ok')
    done = done + 1
  end
elseif phase == 'hand' then
  local id = redis.call('INCR', KEYS[3])
  redis.call('HSET', KEYS[1], id, ARGV[3])
  redis.call('PUBLISH', ARGV[4], id .. '|' .. ARGV[3])
  done = 1
elseif phase == 'ack' then
  if redis.call('HDEL', KEYS[1], ARGV[3]) == 1 then
    redis.call('HSET', KEYS[5], ARGV[3], 'ok')
    done = 1
  end
else
  return redis.error_reply('ERR phase: expected submit, receive, complete, hand or ack, got ' .. tostring(phase))
end
return done
