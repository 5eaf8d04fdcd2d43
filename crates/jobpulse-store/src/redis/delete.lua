-- A deletion (WriteKind::Delete): leaves a tombstone that keeps refusing older writes.
-- ARGV 1..10 as in common.lua.
local cur = load_record(KEYS[1])
local g, a, s = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if cur and refused(cur, g, a, s) then
  return stale(cur)
end
return commit(cur, '2', 0, nil)
