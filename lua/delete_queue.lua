-- delete_queue: deletes a queue that holds no task and that no registered worker serves, with
-- its counters, pause flag and learned costs (State::delete_queue). Its dedup keys expire on
-- their own.
-- KEYS: the fixed keys, then the queue's group. ARGV: now, queue.
-- Reply: 1. Errors: SY_UNKNOWN_QUEUE, SY_BUSY served <worker,...> | tasks <n>.
local q = queues_open(2, 1)[1]
local served = ADMIN.queue_members(q.name)
if served ~= '' then fail('SY_BUSY', 'served ' .. served) end
local held = ready_len(q) + call('ZCARD', q.k_delayed) + call('ZCARD', q.k_done)
  + call('ZLEXCOUNT', FLOWS.k_parents, '[' .. q.name .. '|', '(' .. q.name .. '}')
for _, m in ipairs(call('ZRANGEBYLEX', K_WTASKS, '-', '+')) do
  local r = rec_get(match(m, '|%x+|(.*)$'))
  if r and r.q == q.name then held = held + 1 end
end
if held > 0 then fail('SY_BUSY', 'tasks ' .. held) end
call('DEL', q.k_state, q.k_ready, q.k_delayed, q.k_ring, q.k_done, q.k_rate, q.k_groups, q.k_gready,
  q.k_gring, q.k_glog, q.k_gwake)
call('HDEL', K_META, q.name, '~n:' .. q.name .. ':' .. S_RETRY, '~n:' .. q.name .. ':' .. S_CANCELLED,
  '~n:' .. q.name .. ':' .. S_EXPIRED)
return 1
