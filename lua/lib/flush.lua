-- lib/flush.lua: applying the deferred writes.
-- Rust twin: none: the reference writes at once.

-- `send` is flush's alone: held in a block, so that it takes none of the main chunk's 200
-- local slots (lib/prelude.lua).
local flush
do
  -- One command `cmd key args...`, split into commands of at most 4,000 arguments.
  local function send(cmd, key, args)
    local n = #args
    if n <= 4000 then
      call(cmd, key, unpack(args))
      return
    end
    for i = 1, n, 4000 do
      call(cmd, key, unpack(args, i, min(i + 3999, n)))
    end
  end

  -- Applies the deferred writes (see PENDING) and settles the workers' balancer entries.
  function flush()
    flushes = flushes + 1
    settle()
    local order = PENDING.order
    if #order > 0 then
      local recs, args = PENDING.recs, {}
      for i, id in ipairs(order) do
        args[2 * i - 1] = id
        args[2 * i] = recs[id]
      end
      send('HSET', K_TASKS, args)
      PENDING.recs, PENDING.order = {}, {}
    end
    if next(PENDING.rems) then
      for key, members in pairs(PENDING.rems) do send('ZREM', key, members) end
      PENDING.rems = {}
    end
    if next(PENDING.adds) then
      for key, list in pairs(PENDING.adds) do send('ZADD', key, list) end
      PENDING.adds = {}
    end
    if PENDING.seq_extra > 0 then
      call('HINCRBY', K_META, '~seq', int_text(PENDING.seq_extra))
      PENDING.seq_extra = 0
    end
    for _, wr in pairs(WORKERS) do
      if wr.dirty then worker_put(wr) end
    end
    -- Hand-offs go out once the state they describe is written.
    local pubs = PENDING.pubs
    if #pubs > 0 then
      PENDING.pubs = {}
      for i = 1, #pubs, 2 do call('PUBLISH', pubs[i], pubs[i + 1]) end
    end
    for _, q in pairs(QUEUES) do
      flush_ready(q)
      if q.dirty then
        call('HSET', q.k_state, 'd', spack(QDYN, q.tomb, q.rng, q.jit, q.vt, q.ep) .. (q.cur or ''))
        q.dirty = nil
      end
      flush_rate(q)
      flush_expiry(q)
      if q.act_dirty then
        call('HSET', q.k_state, 'a', q.act)
        q.act_dirty = nil
      end
      if q.gdirty then GROUP.flush(q) end
      if q.counts then
        for kind, n in pairs(q.counts) do call('HINCRBY', q.k_state, 'n:' .. kind, int_text(n)) end
        q.counts = nil
      end
    end
  end
end
