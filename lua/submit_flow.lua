-- submit_flow: stores a flow — a tree of tasks — whole, in pre-order (State::submit_flow; the
-- rules: switchyard_core::tree, rule 1). A task with children waits for them (lib/flows.lua);
-- a leaf enters its queue as a submitted task, dispatched at once when its queue's ready set is
-- empty and a worker is eligible.
-- KEYS: the fixed keys, then one group per queue named below.
-- ARGV: now, G, G queue names, N, N task arguments as submit's (`TASK_ARG`, lib/submit.lua),
--       then per task its parent's place among the N (0: the root, which comes first) and its
--       policy digit (tree::OnFailure code).
-- Reply: per task the 4 fields of accept_tasks (code, id, state, worker); a flow whose root
--        exists: the root's alone, as a duplicate, and nothing is stored.
-- Errors: SY_UNKNOWN_QUEUE, SY_NOT_SHARED, SY_FLOW_TAKEN <id> (a task other than the root
--         exists), SY_FULL, SY_GROUP_FULL (nothing stored), SY_INVALID.
local ng = int_arg(2, 'queue count', 1, 1024)
local groups = queues_open(3, ng)
local base = 3 + ng
local n = int_arg(base, 'task count', 2, 10000)
local tasks = task_args(base, n, groups)
local links = base + n
local parents, policies = {}, {}
for i = 1, n do
  local p = int_arg(links + 2 * i - 1, 'parent', 0, i - 1)
  if (p == 0) ~= (i == 1) then fail('SY_INVALID', 'parent: only the first task is the root') end
  parents[i] = p
  policies[i] = tostring(int_arg(links + 2 * i, 'policy', 0, 2))
  if tasks[i].dedup then fail('SY_INVALID', 'task ' .. tasks[i].id .. ': a flow task has no dedup key') end
end
-- No later steps: the room check counts this call's leaves only (lib/bounded.lua).
local none, gnone = {}, {}
for g = 1, ng do none[g] = 0; gnone[g] = {} end
local ids = {}
for i, t in ipairs(tasks) do ids[i] = t.id end
local known = FLOWS.hmget(ids)
if known[1] then return accept_tasks(groups, none, gnone, {tasks[1]}) end
for i = 2, n do
  if known[i] then fail('SY_FLOW_TAKEN', tasks[i].id) end
end
-- Each task's children ('fc:' text, lib/flows.lua), then the room check of the leaves.
local kids = {}
for i = 2, n do
  local p = parents[i]
  kids[p] = kids[p] or {}
  kids[p][#kids[p] + 1] = tasks[i].id .. policies[i]
end
-- The leaves' queues in the order the leaves first name them (as the reference checks them).
local leaves, leaf_queues, seen = {}, {}, {}
for i, t in ipairs(tasks) do
  if not kids[i] then
    leaves[#leaves + 1] = t
    if not seen[t.q.name] then
      seen[t.q.name] = true
      leaf_queues[#leaf_queues + 1] = t.q
    end
  end
end
check_room(leaf_queues, none, gnone, leaves, {})
local reply = {}
for i, t in ipairs(tasks) do
  local q = t.q
  local r = FLOWS.new_record(t)
  local parent = nil
  if i > 1 then parent = tasks[parents[i]].id end
  FLOWS.link(r, parent, policies[i], concat(kids[i] or {}))
  emit(q, 'submitted', r.id)
  if r.st == S_WAITING then
    rec_put(r)
  else
    local run_at = nil
    if t.at > 0 then run_at = t.at end
    if t.delay > 0 then run_at = min(NOW + t.delay, MAX_MS) end
    if place(r, q, run_at, false, NOW) then r = rec_get(r.id) end
  end
  reply[#reply + 1] = 0
  reply[#reply + 1] = t.id
  reply[#reply + 1] = r.st
  reply[#reply + 1] = r.w
end
flush()
return reply
