-- A state write (WriteKind::Set). ARGV 1..10 as in common.lua, then:
--   11 '1' when the new status is terminal, 12 '1' when it is initial (UPLOADED/PENDING),
--   13 its overall percent, 14 the State JSON, 15 the writer's origin ('x' or 'd', see `owned`).
local found = load_record(KEYS[1])
local cur, floor = owned(found, ARGV[15])
if cur == false then
  return { 'rejected', 'owned' }
end
local g, a, s = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local percent = tonumber(ARGV[13])
if cur then
  if refused(cur, g, a, s) then
    return stale(cur)
  end
  -- Within one attempt no reader sees the percent go back, except that initial states are
  -- stored as sent (decide, rule 6). A tombstone has no percent (and same-generation ones refuse).
  if g == cur.g and a == cur.a and ARGV[12] ~= '1' and cur.p and cur.p > percent then
    percent = cur.p
  end
  floor = cur.r
end
local flag = '0'
if ARGV[11] == '1' then
  flag = '1'
end
return commit(floor, flag, percent, ARGV[14], ARGV[15], found ~= nil and cur == nil)
