-- await: for a caller about to wait on the task's done channel: returns its state if it has
-- finished, otherwise flags it so that finishing publishes on the channel.
-- KEYS: the fixed keys. ARGV: now, id.
-- Reply: state if finished, -1 if the caller should wait. Errors: SY_NOT_FOUND.
local r = rec_get(ARGV[2])
if not r then fail('SY_NOT_FOUND', ARGV[2]) end
if finished(r.st) then return r.st end
if r.fl % F_DEADLINE < F_AWAITED then
  r.fl = r.fl + F_AWAITED
  rec_put(r)
  flush()
end
return -1
