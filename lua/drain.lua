-- drain: starts a graceful stop (State::drain_worker): the worker takes no new tasks — it
-- leaves every eligibility set, gets no refills and pulls nothing — and the tasks in its inbox
-- (dispatched, not started) go back to their queues in dispatch order, attempts unchanged.
-- Its running tasks stay until it completes or fails them. Draining twice changes nothing.
-- KEYS: the fixed keys, then one group per queue of the worker, in its order.
-- ARGV: now, worker, instance token, N, N queue names.
-- Reply: {count, returned ids..., assignments...}.
-- Errors: SY_UNKNOWN_WORKER, SY_REPLACED (another instance holds the id), SY_STALE.
local wr, w = worker_of_call()
if wr.wait >= W_DRAINING then return {0} end
unsettle(wr)
wr.wait = W_DRAINING
unpark(wr)
local inbox = call('ZRANGEBYLEX', K_WTASKS, format('[%s|%012x', w, wr.rc + 1), '(' .. w .. '}')
wr.inf = wr.inf - #inbox
wr.ib = 0
local returned, records = {}, {}
for _, m in ipairs(inbox) do
  call('ZREM', K_WTASKS, m)
  local r = rec_get(sub(m, #w + 15))
  returned[#returned + 1] = r.id
  records[#records + 1] = r
  count_active(queue_of(r.q), -1, r)
  place(r, queue_of(r.q), nil, false, NOW, true)
end
resume_each(records, {})
return reply_returned(returned)
