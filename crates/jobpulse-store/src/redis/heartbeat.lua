-- A heartbeat (WriteKind::Heartbeat): slides the TTL of the attempt's in-progress record and
-- changes nothing else (no new revision, no change log entry, no announcement).
-- KEYS: 1 the record. ARGV: 1 generation, 2 attempt, 3 seq (unused), 4 live TTL ms, 5 the
-- writer's origin ('x' or 'd', see `owned`).
local cur = owned(load_record(KEYS[1]), ARGV[5])
if cur == false then
  return { 'rejected', 'owned' }
end
if not cur then
  return { 'rejected', 'missing' }
end
local g, a = tonumber(ARGV[1]), tonumber(ARGV[2])
if g < cur.g then
  return stale(cur)
end
local same = g == cur.g
if same and cur.t ~= '0' then
  return stale(cur)
end
if not same or a > cur.a then
  return { 'rejected', 'unknown_attempt' }
end
if a < cur.a then
  return stale(cur)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return { 'applied', fmt(cur.r) }
