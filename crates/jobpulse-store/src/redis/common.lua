-- Prepended to set.lua, delete.lua and heartbeat.lua (see scripts.rs): the record, the revision
-- clock and the reply shapes. Together they are a transcription of jobpulse_domain::decide.
--
-- The record is a hash: g, a, s (the fence), r (revision), t ('0' in progress, '1' terminal,
-- '2' deletion tombstone), p (overall percent after the clamp), j (the State JSON as the writer
-- sent it; absent on a tombstone), o ('x' when an external system owns the record, see
-- `owned`; absent when our database does), qa / qp / qj (the previous attempt of the
-- generation: its fence attempt, its last shown percent and its last State JSON; see set.lua).
--
-- PUBLISH is defined before this file (scripts.rs): 'PUBLISH' on a single node, 'SPUBLISH' to
-- the tenant's shard channel on a cluster (shard_feed.rs).
--
-- Lua numbers are doubles: fences (seq < 2^53) and revisions (microseconds) stay exact, and
-- every number leaves the script through fmt() so it is never printed in exponent form.

local function fmt(n)
  return string.format('%.0f', n)
end

local function now_micros()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The stored record, or nil when there is none (never written or expired).
local function load_record(key)
  local f = redis.call('HMGET', key, 'g', 'a', 's', 'r', 't', 'p', 'o')
  if not f[1] then
    return nil
  end
  local cur = {
    g = tonumber(f[1]), a = tonumber(f[2]), s = tonumber(f[3]), r = tonumber(f[4]),
    t = f[5], p = tonumber(f[6]), o = f[7],
  }
  if not (cur.g and cur.a and cur.s and cur.r) or (cur.t ~= '0' and cur.t ~= '1' and cur.t ~= '2') then
    error({ err = 'ERR jobpulse: unreadable record at ' .. key })
  end
  return cur
end

local function stale(cur)
  return { 'stale', fmt(cur.g), fmt(cur.a), fmt(cur.s), fmt(cur.r) }
end

-- Rules 2, 4 and 5 of decide for a state write or a deletion: older generation; terminal or
-- deleted record of the same generation; not after (attempt, seq) within the generation.
local function refused(cur, g, a, s)
  if g < cur.g then
    return true
  end
  if g == cur.g then
    if cur.t ~= '0' then
      return true
    end
    if a < cur.a or (a == cur.a and s <= cur.s) then
      return true
    end
  end
  return false
end

-- Rule 0 of decide, ownership. `origin` is the writer's: 'x' (an external system, through the
-- ingest API) or 'd' (our database). Returns the record the fence rules compare with, or false
-- when the write is refused (external onto ours); when our database takes over an external
-- record it returns nil (as if there were none) and that record's revision, which the new one
-- must still exceed.
local function owned(found, origin)
  if not found then
    return nil, nil
  end
  local external = found.o == 'x'
  if origin == 'x' and not external then
    return false, nil
  end
  if origin ~= 'x' and external then
    return nil, found.r
  end
  return found, nil
end

-- Stores an applied set (json ~= nil) or deletion, sets its TTL, appends it to the tenant's
-- change log and announces it. `prev_r` is the revision to exceed (nil: none); `took_over` says
-- our database is taking an external record back. ARGV layout shared by set and delete:
--   1 generation, 2 attempt, 3 seq, 4 live TTL ms, 5 terminal TTL ms ('0' keeps it),
--   6 tombstone TTL ms, 7 task label (v:321 / j:ab), 8 tenant, 9 changes channel,
--   10 change log length.
-- KEYS: 1 the record, 2 the tenant's change log (same hash tag, so same slot).
-- `q` is the previous attempt to keep with a state ({a, p, j}) or nil.
local function commit(prev_r, flag, percent, json, origin, took_over, q)
  local rev = now_micros()
  if prev_r then
    rev = math.max(prev_r + 1, rev)
  else
    rev = math.max(rev, 1)
  end
  local revs = fmt(rev)
  if json then
    redis.call('HSET', KEYS[1], 'g', ARGV[1], 'a', ARGV[2], 's', ARGV[3], 'r', revs,
      't', flag, 'p', fmt(percent), 'j', json)
  else
    redis.call('HDEL', KEYS[1], 'p', 'j')
  end
  if q then
    redis.call('HSET', KEYS[1], 'qa', fmt(q.a), 'qp', fmt(q.p), 'qj', q.j)
  else
    redis.call('HDEL', KEYS[1], 'qa', 'qp', 'qj')
  end
  if not json then
    redis.call('HSET', KEYS[1], 'g', ARGV[1], 'a', ARGV[2], 's', ARGV[3], 'r', revs, 't', '2')
  end
  if origin == 'x' then
    redis.call('HSET', KEYS[1], 'o', 'x')
  elseif took_over then
    redis.call('HDEL', KEYS[1], 'o')
  end
  if flag == '0' then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  elseif flag == '1' then
    if ARGV[5] == '0' then
      redis.call('PERSIST', KEYS[1])
    else
      redis.call('PEXPIRE', KEYS[1], ARGV[5])
    end
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[6])
  end
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[10], '*', 'k', ARGV[7], 'r', revs)
  -- The change as a subscriber rebuilds it (record.rs, ChangeMessage). Every piece is either a
  -- number, a validated id, a stream id or serde_json output, so plain concatenation is valid JSON.
  local msg = '{"t":' .. ARGV[8] .. ',"k":"' .. ARGV[7] .. '","r":' .. revs .. ',"c":"' .. id
    .. '","g":' .. ARGV[1] .. ',"a":' .. ARGV[2] .. ',"s":' .. ARGV[3]
  if json then
    msg = msg .. ',"p":' .. fmt(percent) .. ',"st":' .. json
  end
  if q then
    msg = msg .. ',"q":{"a":' .. fmt(q.a) .. ',"p":' .. fmt(q.p) .. ',"st":' .. q.j .. '}'
  end
  redis.call(PUBLISH, ARGV[9], msg .. '}')
  return { 'applied', revs, id }
end
