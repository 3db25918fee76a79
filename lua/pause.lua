-- pause: pauses or resumes one queue (State::set_paused). While paused nothing is dispatched
-- from it; resuming dispatches what waits to eligible workers (push queues) or hands it to
-- the parked workers that take it (pull queues). Setting the state it has changes nothing.
-- KEYS: the fixed keys, then the queue's group. ARGV: now, queue, paused 0|1.
-- Reply: assignments.
local q = queues_open(2, 1)[1]
local paused = int_arg(3, 'paused', 0, 1) == 1
if q.paused ~= paused then
  q.paused = paused
  if paused then
    call('HSET', q.k_state, 'p', '1')
  else
    call('HDEL', q.k_state, 'p')
    if q.str == T_PULL then
      hand_off_ready(q)
    else
      dispatch_ready(q, 1000000)
    end
  end
end
flush()
return ASSIGN
