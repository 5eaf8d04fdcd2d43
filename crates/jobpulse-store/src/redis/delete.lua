-- A deletion (WriteKind::Delete): leaves a tombstone that keeps refusing older writes.
-- ARGV 1..10 as in common.lua, 11 the writer's origin ('x' or 'd', see `owned`).
local found = load_record(KEYS[1])
local cur, floor = owned(found, ARGV[11])
if cur == false then
  return { 'rejected', 'owned' }
end
local g, a, s = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if cur then
  if refused(cur, g, a, s) then
    return stale(cur)
  end
  floor = cur.r
end
return commit(floor, '2', 0, nil, ARGV[11], found ~= nil and cur == nil)
