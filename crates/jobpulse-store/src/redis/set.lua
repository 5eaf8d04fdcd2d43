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
  -- Within a generation no reader sees the percent go back, across attempts too, except that
  -- initial states are stored as sent (decide, rule 6). A tombstone has no percent (and
  -- same-generation ones refuse).
  if g == cur.g and ARGV[12] ~= '1' and cur.p and cur.p > percent then
    percent = cur.p
  end
  floor = cur.r
end
-- The previous attempt of the generation (decide: previous_attempt): taken from the record by
-- the write that moves to a later attempt (attempt 0 is the record before a claim), kept by
-- the writes of the same attempt, dropped with a new generation.
local q = nil
if cur and g == cur.g then
  if a > cur.a then
    if cur.a >= 1 and cur.p then
      q = { a = cur.a, p = cur.p, j = redis.call('HGET', KEYS[1], 'j') }
    end
  else
    local k = redis.call('HMGET', KEYS[1], 'qa', 'qp', 'qj')
    if k[1] and k[2] and k[3] then
      q = { a = tonumber(k[1]), p = tonumber(k[2]), j = k[3] }
    end
  end
end
local flag = '0'
if ARGV[11] == '1' then
  flag = '1'
end
return commit(floor, flag, percent, ARGV[14], ARGV[15], found ~= nil and cur == nil, q)
