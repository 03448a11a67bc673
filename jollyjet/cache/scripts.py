"""Lua scripts run atomically inside Redis: the version guard, leases, generations.

Every key a script touches is passed in KEYS and shares a hash tag, so the
scripts run unchanged on Redis Cluster. Versioned entries are hashes with fields
`v` (version) and `d` (payload; absent for a tombstone).
"""

# The version guard shared by every write of a versioned entry: refuse (0) when a
# newer version is cached, else replace the entry, payload nil meaning a tombstone (1).
# KEYS[1] is the entry.
_WRITE_UNLESS_NEWER = """
local function write_unless_newer(version, payload, ttl_s)
  local cur = redis.call('HGET', KEYS[1], 'v')
  if cur and tonumber(cur) > tonumber(version) then return 0 end
  redis.call('DEL', KEYS[1])
  if payload then
    redis.call('HSET', KEYS[1], 'v', version, 'd', payload)
  else
    redis.call('HSET', KEYS[1], 'v', version)
  end
  redis.call('EXPIRE', KEYS[1], ttl_s)
  return 1
end
"""


def with_version_guard(body: str) -> str:
    """A script whose body may call write_unless_newer(version, payload, ttl_s)."""
    return _WRITE_UNLESS_NEWER + body


# KEYS: entry, lease. ARGV: version, payload, ttl_s.
# Revokes fill leases first, whatever else happens: a fill that read the database
# before this write must not land afterwards.
SET_VERSIONED = with_version_guard("""
redis.call('DEL', KEYS[2])
return write_unless_newer(ARGV[1], ARGV[2], ARGV[3])
""")

# KEYS: entry, lease. ARGV: token, version, payload, ttl_s.
# ARGV[5] == '1': the filled version is settled (its write finished long ago, see writer.py).
FILL_VERSIONED = with_version_guard("""
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
local landed = write_unless_newer(ARGV[2], ARGV[3], ARGV[4])
if landed == 1 and ARGV[5] == '1' then redis.call('HSET', KEYS[1], 's', '1') end
return landed
""")

# KEYS: entry, lease. ARGV: version, ttl_s.
TOMBSTONE = with_version_guard("""
redis.call('DEL', KEYS[2])
return write_unless_newer(ARGV[1], nil, ARGV[2])
""")

# KEYS: entry, lease. ARGV: version.
# Used by repairs that must not touch an entry rewritten since they looked at it.
EVICT_VERSIONED = """
redis.call('DEL', KEYS[2])
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# A missing generation (evicted, flushed) restarts from the server clock in
# microseconds, far above any generation used before, so result keys of an
# earlier generation can never become reachable again.
_INIT_GENERATION = """
local g = redis.call('GET', KEYS[1])
if not g then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])), 'NX')
  g = redis.call('GET', KEYS[1])
end
"""

# KEYS: generation.
GET_GENERATION = _INIT_GENERATION + "return g\n"

# KEYS: generation.
BUMP_GENERATION = _INIT_GENERATION + "return redis.call('INCR', KEYS[1])\n"

# KEYS: generation, result. ARGV: expected generation, payload, ttl_s.
FILL_GENERATIONAL = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""

# KEYS: lock. ARGV: token.
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: entry, lease. ARGV: version, payload, ttl_s.
# SET_VERSIONED that also returns the payload it replaced when that was exactly the
# previous version (version - 1) *and settled* (field `s`, MARK_SETTLED): the write's
# before-image, which list invalidation compares field by field. An unsettled previous
# version is one whose own write has not finished invalidating yet (or a fill of it):
# comparing against it would skip what that write still has to invalidate, and this
# write may answer its client first, so the caller must invalidate everything.
# Returns {landed (0/1), before payload or false}.
SWAP_VERSIONED = """
redis.call('DEL', KEYS[2])
local cur = redis.call('HMGET', KEYS[1], 'v', 'd', 's')
if cur[1] and tonumber(cur[1]) > tonumber(ARGV[1]) then return {0, false} end
local before = false
if cur[1] and cur[2] and cur[3] == '1' and tonumber(cur[1]) == tonumber(ARGV[1]) - 1 then before = cur[2] end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, before}
"""

# KEYS: entry. ARGV: version. After a write's list invalidation is done: its entry (if it
# still holds that version) may serve the next write as a before-image (SWAP_VERSIONED).
MARK_SETTLED = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 's', '1')
return 1
"""

_NOW_MS = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: the global generation, the filter registry, then the query's filter generations.
# ARGV: registry member (the filters), registration horizon in ms, the result key's
# prefix (`…:{products}:<kind>:`), the query's hash.
# Registers the filters (so every later write compares itself against them), reads every
# generation, each initialized from the server clock when missing (the filter
# generations with a TTL of two horizons: an expired one restarts above every older value),
# and returns the cached result stored under them with them: {result or false, global,
# filter generations...}. A hit is this one round trip. The result key is built here from
# the generations just read (keys.query_result builds the same name); it is not in KEYS
# because its name depends on them, and it shares the {products} slot with every key
# that is, so the script stays on one cluster node.
# A registry that does not exist moves the global generation forward first: it was never
# created, every registration lapsed, or it was deleted (a new cache epoch racing live
# traffic, eviction), and a write made while it was gone compared itself against nothing,
# so no result or fill from before may be used. Deleting any key stays safe.
READ_FILTERED = (
    _NOW_MS
    + """
local clock = t[1] .. string.format('%06d', tonumber(t[2]))
local ttl_s = math.ceil(2 * tonumber(ARGV[2]) / 1000)
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCR', KEYS[1]) end
end
local out = {false}
for i = 1, #KEYS do
  if i ~= 2 then
    local g = redis.call('GET', KEYS[i])
    if not g then
      if i == 1 then redis.call('SET', KEYS[i], clock, 'NX')
      else redis.call('SET', KEYS[i], clock, 'NX', 'EX', ttl_s) end
      g = redis.call('GET', KEYS[i])
    end
    table.insert(out, g)
  end
end
redis.call('ZADD', KEYS[2], 'GT', now_ms + tonumber(ARGV[2]), ARGV[1])
local key = ARGV[3] .. out[2] .. ':' .. ARGV[4]
for i = 3, #out do key = key .. '.' .. out[i] end
out[1] = redis.call('GET', key)
return out
"""
)

# KEYS: the global generation, the filter registry, the result, then the filter generations.
# ARGV: registry member, horizon ms, payload, ttl_s, expected global generation, then the
# expected filter generations. Lands only while every generation is unchanged and the
# filters' registration never lapsed (a write in a lapse would not have compared itself
# against them); then the registration is extended past the result's expiry.
FILL_FILTERED = (
    """
if redis.call('GET', KEYS[1]) ~= ARGV[5] then return 0 end
for i = 4, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[i + 2] then return 0 end
end
"""
    + _NOW_MS
    + """
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) < now_ms then return 0 end
redis.call('ZADD', KEYS[2], 'GT', now_ms + tonumber(ARGV[2]), ARGV[1])
local ttl_s = math.ceil(2 * tonumber(ARGV[2]) / 1000)
for i = 4, #KEYS do redis.call('EXPIRE', KEYS[i], ttl_s) end
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
return 1
"""
)

# KEYS: the filter registry. Drops lapsed registrations, returns the live ones.
LIVE_FILTERS = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now_ms)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
)

# KEYS: filter generations. Increments those that exist; a missing one restarts from the
# clock at its next read anyway, above any value a result was stored under.
BUMP_EXISTING = """
local n = 0
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCR', KEYS[i]); n = n + 1 end
end
return n
"""
