-- progress: a running task's handler reports how far it has come (State::progress; the rule:
-- switchyard_core::progress). Accepted only under the task's current lease (running, on that
-- worker, under that token, in that queue); stored in the 'tasks' field `p:<id>` (PROGRESS,
-- below) for the attempt that made it; announced — a `progress` event if the queue
-- records every event, and a message on the task's done channel if someone awaits it — when it
-- is the attempt's first report or PROGRESS_GAP ms after the attempt's last announced one.
-- KEYS: the fixed keys, then the task's queue group.
-- ARGV: now, queue, id, worker, token, ppm (0..PPM_WHOLE), message (at most
--       PROGRESS_MESSAGE_MAX bytes).
-- Reply: {A_SUCCEEDED, announced 0|1}, or a refusal {A_NOT_FOUND, -1 | A_NOT_RUNNING, state |
--        A_STALE, state}, which changes nothing.
-- The rule's numbers (switchyard_core::progress; src/protocol.rs checks them): the least time
-- between two announced reports of an attempt (ms), a whole task in parts per million, the
-- longest message (bytes); and the stored value: attempt, ppm, reported at, last announced at,
-- reports (24 bytes, PROGRESS_LEN), then the message. Kept here, their one user: the library's
-- main chunk is near Lua's limit of 200 locals.
local PROGRESS_GAP, PPM_WHOLE, PROGRESS_MESSAGE_MAX = 1000, 1000000, 1024
local PROGRESS = '>HI4I6I6I6'

local q = queues_open(2, 1)[1]
local id, w = ARGV[3], ARGV[4]
local tok = int_arg(5, 'token', 0, MAX_MS)
local ppm = int_arg(6, 'progress', 0, PPM_WHOLE)
local msg = ARGV[7] or ''
if #msg > PROGRESS_MESSAGE_MAX then
  fail('SY_INVALID', 'progress message: ' .. #msg .. ' bytes; at most ' .. PROGRESS_MESSAGE_MAX)
end
local r = rec_get(id)
if not r then return {A_NOT_FOUND, -1} end
if r.st ~= S_RUNNING then return {A_NOT_RUNNING, r.st} end
if r.tok ~= tok or r.w ~= w or r.q ~= q.name then return {A_STALE, r.st} end
local field = progress_field(id)
local reports, last = 1, nil
local old = call('HGET', K_TASKS, field)
if old then
  local attempt, _, _, announced_at, n = sunpack(PROGRESS, old)
  if attempt == r.at then reports, last = n + 1, announced_at end
end
local announce = last == nil or NOW - last >= PROGRESS_GAP
if announce then last = NOW end
call('HSET', K_TASKS, field, spack(PROGRESS, r.at, ppm, NOW, last, reports) .. msg)
if not announce then return {A_SUCCEEDED, 0} end
local pm = floor(ppm / 1000)
local detail = format('%d.%d%%', floor(pm / 10), pm % 10)
if msg ~= '' then detail = detail .. ' ' .. msg end
emit(q, 'progress', id, w, detail) -- logged, not counted
if r.fl % F_DEADLINE >= F_AWAITED then
  call('PUBLISH', channel(CH_DONE, id), int_text(r.st))
end
return {A_SUCCEEDED, 1}
