-- submit_flow: stores a flow — a tree of tasks — in pre-order (State::submit_flow, stage_flow,
-- commit_flow; the rules: switchyard_core::tree, rules 1 and 6). Mode 0, a whole flow: a task
-- with children waits for them (lib/flows.lua), a leaf enters its queue as a submitted task.
-- Mode 1, a later step of a wide flow: its tasks are stored staged (seen by nothing; deleted
-- by maintenance after tree::STAGE_TTL_MS unless committed). Mode 2, the first step of a wide
-- flow, with its root: the room check counts every leaf of the flow, the step is stored staged,
-- and a materialize entry commits the flow (settle.lua makes it seen, a step a round).
-- KEYS: the fixed keys, then one group per queue named below.
-- ARGV: now, mode (0 whole, 1 stage, 2 commit), root id, step (1..), steps, G, G queue names
--       (mode 1: the root's first, then the step's; mode 2: every queue of the flow, those its
--       leaves enter first, in the order they first name them), G counts (mode 2: every leaf of the flow per queue; else 0), L (mode 2: how
--       many of the G its leaves enter), M, then M triples (a queue's place among the G, a group
--       key, the flow's leaves in that group; mode 2 only), N, N task arguments as submit's
--       (`TASK_ARG`, lib/submit.lua), then per task: its parent's id ('' for the root), its
--       policy digit (tree::OnFailure code), its children ('fc:' text, lib/flows.lua).
-- Reply: per task the 4 fields of accept_tasks (code, id, state, worker); a flow whose root
--        exists: the root's alone, as a duplicate (state -1 while it is staged), nothing stored.
-- Errors: SY_UNKNOWN_QUEUE, SY_NOT_SHARED, SY_FLOW_TAKEN <id> (a task other than the root
--         exists, staged by no earlier attempt), SY_FULL, SY_GROUP_FULL (nothing stored),
--         SY_INVALID.
local mode = int_arg(2, 'mode', 0, 2)
local root = ARGV[3] or ''
local step = int_arg(4, 'step', 1, 10000)
local steps = int_arg(5, 'steps', 1, 10000)
local ng = int_arg(6, 'queue count', 1, 10000)
local groups = queues_open(7, ng)
local nl = int_arg(7 + 2 * ng, 'leaf queue count', 0, ng)
local rest, grest, base = ROOM.counts(7 + ng, ng, 1)
local n = int_arg(base, 'task count', 1, 10000)
local tasks = task_args(base, n, groups)
local links = base + n
for i = 1, n do
  if tasks[i].dedup then fail('SY_INVALID', 'task ' .. tasks[i].id .. ': a flow task has no dedup key') end
  local kids = ARGV[links + 3 * i] or ''
  if #kids % 27 ~= 0 then fail('SY_INVALID', 'children of ' .. tasks[i].id .. ': not 27 characters each') end
end
-- No later calls count for a whole flow's room check (lib/bounded.lua).
local none, gnone = {}, {}
for g = 1, ng do none[g] = 0; gnone[g] = {} end
local ids = {}
for i, t in ipairs(tasks) do ids[i] = t.id end
local known = FLOWS.hmget(ids)
if mode == 0 then
  if known[1] then return accept_tasks(groups, none, gnone, {tasks[1]}) end
else
  -- The root exists only once the flow was committed: its duplicate, seen or not yet.
  local r = rec_get(root)
  if r then
    if mode == 1 then return {1, root, r.fl >= FLOWS.STAGED and -1 or r.st, ''} end
    local reply = accept_tasks(groups, none, gnone, {tasks[1]})
    if r.fl >= FLOWS.STAGED then reply[3] = -1 end
    return reply
  end
end
for i = 1, n do
  local v = known[i]
  -- A task staged by an earlier attempt of a wide flow is stored again.
  if v and (mode == 0 or sunpack('>B', v, 2) < FLOWS.STAGED) then fail('SY_FLOW_TAKEN', tasks[i].id) end
end
local leaves = {}
for i, t in ipairs(tasks) do
  if (ARGV[links + 3 * i] or '') == '' then leaves[#leaves + 1] = t end
end
if mode == 0 then
  -- The leaves' queues in the order the leaves first name them (as the reference checks them).
  local leaf_queues, seen = {}, {}
  for _, t in ipairs(leaves) do
    if not seen[t.q.name] then
      seen[t.q.name] = true
      leaf_queues[#leaf_queues + 1] = t.q
    end
  end
  ROOM.check(leaf_queues, none, gnone, leaves, {})
elseif mode == 2 then
  local leaf_queues = {}
  for g = 1, nl do leaf_queues[g] = groups[g] end
  ROOM.check(leaf_queues, rest, grest, leaves, {})
end
local reply = {}
for i, t in ipairs(tasks) do
  local q = t.q
  local r = FLOWS.new_record(t)
  local parent = ARGV[links + 3 * i - 2] or ''
  if parent == '' then parent = nil end
  FLOWS.link(r, parent, ARGV[links + 3 * i - 1] or '0', ARGV[links + 3 * i] or '', mode ~= 0)
  local run_at = nil
  if t.at > 0 then run_at = t.at end
  if t.delay > 0 then run_at = min(NOW + t.delay, MAX_MS) end
  if mode ~= 0 then
    -- Staged: its run-at kept in the time field until it is made seen (settle.lua).
    r.tm = run_at or 0
    rec_put(r)
  else
    emit(q, 'submitted', r.id)
    if r.st == S_WAITING then
      rec_put(r)
    elseif place(r, q, run_at, false, NOW) then
      r = rec_get(r.id)
    end
  end
  reply[#reply + 1] = 0
  reply[#reply + 1] = t.id
  reply[#reply + 1] = mode == 0 and r.st or -1
  reply[#reply + 1] = r.w
end
if mode ~= 0 then
  call('HSET', K_TASKS, 'fs:' .. root .. '|' .. step, concat(ids), 'fk:' .. root, steps)
  if mode == 1 then
    -- The root's queue comes first among a staging step's queues.
    FLOWS.settle_at('x|' .. groups[1].name .. '|' .. root, NOW + FLOWS.STAGE_TTL)
  else
    local names = {}
    for g, q in ipairs(groups) do names[g] = q.name end
    call('HSET', K_TASKS, 'fz:' .. root, 1, 'fq:' .. root, concat(names, ','))
    FLOWS.settle_at('s|' .. tasks[1].q.name .. '|' .. root, NOW)
  end
end
flush()
return reply
