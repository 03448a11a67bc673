"""Lua scripts run atomically inside Redis: the version guard, leases, generations.

Every key a script touches is passed in KEYS and shares a hash tag, so the
scripts run unchanged on Redis Cluster. Versioned entries are hashes with fields
`v` (version), `d` (payload; absent for a tombstone or a cached absence), `s` (settled,
see MARK_SETTLED) and `p` (in doubt: a write of the product began after this was stored,
see MARK_WRITE; never served).

Writes in flight: a write marks itself before it sends anything to MongoDB, with a token
that lapses after the write's deadline, in the product's pending set and in the catalog's
set of writes in flight. While a product has a live mark no fill lands for it and its
entry is not served; a mark that lapses instead of being finished (the MongoDB reply was
lost, the process died between the commit and the cache write) moves the global list
generation forward. So an outcome nobody heard of never leaves an older state served.
"""

_NOW_MS = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# The catalog's writes in flight (a sorted set: token -> deadline in ms, plus a member
# '~' that never lapses, so that a set deleted by eviction or a purge is told apart from
# an empty one). A lapsed write, or a set that vanished with its writes, may have changed
# any list or count without invalidating it: move the global generation forward (a missing
# generation restarts from the clock at its next read, above every older one).
_LAPSE_WRITES = """
local function lapse_writes(writes, generation, now_ms)
  local moved = false
  if redis.call('EXISTS', writes) == 0 then
    redis.call('ZADD', writes, 'inf', '~')
    moved = true
  elseif redis.call('ZREMRANGEBYSCORE', writes, '-inf', now_ms) > 0 then
    moved = true
  end
  if moved and redis.call('EXISTS', generation) == 1 then redis.call('INCR', generation) end
end
"""

# A product's pending writes (sorted set: token -> deadline in ms): are any still live?
_PENDING = """
local function pending(key, now_ms)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  return redis.call('ZCARD', key) > 0
end
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


# KEYS: entry, lease, pending writes. ARGV: token, version, payload, ttl_s.
# ARGV[5] == '1': the filled version is settled (its write finished long ago, see writer.py).
# Refused while a write of the product is in flight: what the fill read may be older than it.
FILL_VERSIONED = with_version_guard(
    _NOW_MS
    + _PENDING
    + """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if pending(KEYS[3], now_ms) then return 0 end
redis.call('DEL', KEYS[2])
local landed = write_unless_newer(ARGV[2], ARGV[3], ARGV[4])
if landed == 1 and ARGV[5] == '1' then redis.call('HSET', KEYS[1], 's', '1') end
return landed
"""
)

# KEYS: entry, lease, pending writes. ARGV: version, ttl_s, the write's token ('' for none).
# Lands even when the write's mark lapsed: a tombstone only hides, it never resurrects.
TOMBSTONE = with_version_guard("""
redis.call('DEL', KEYS[2])
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[3], ARGV[3]) end
return write_unless_newer(ARGV[1], nil, ARGV[2])
""")

# KEYS: entry, lease, pending writes. ARGV: token, ttl_s.
# A fill of "MongoDB has no such product", under the fill lease like any fill. Nothing
# cached: version 0, below the 1 of a create, which always replaces it. An entry in doubt
# (a write of it went unanswered, and MongoDB no longer has it: it was deleted): a
# tombstone one version past it. A live entry is left alone.
FILL_ABSENT = (
    _NOW_MS
    + _PENDING
    + """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if pending(KEYS[3], now_ms) then return 0 end
redis.call('DEL', KEYS[2])
local cur = redis.call('HMGET', KEYS[1], 'v', 'p')
local version = 0
if cur[1] then
  if not cur[2] then return 0 end
  version = tonumber(cur[1]) + 1
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', version)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
)

# KEYS: entry, lease, pending writes. ARGV: token, ttl_ms.
# Before a write is sent to MongoDB: revoke fill leases (a fill that read before the write
# must not land after it), register the write, and put the cached entry in doubt so that it
# is not served until the write's own cache update (or, should that never come, a fill
# after the mark lapsed) replaces it. `p` names the write that put it in doubt, so that a
# write which certainly changed nothing can take its doubt back (DROP_PRODUCT_MARK); a
# lapsed write found here leaves a doubt only a fill removes ('!').
MARK_PRODUCT_WRITE = (
    _NOW_MS
    + """
local lapsed = redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms)
redis.call('ZADD', KEYS[3], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  if lapsed > 0 then redis.call('HSET', KEYS[1], 'p', '!')
  elseif not redis.call('HGET', KEYS[1], 'p') then redis.call('HSET', KEYS[1], 'p', ARGV[1]) end
end
return 1
"""
)

# KEYS: writes in flight, the global generation. ARGV: token, ttl_ms.
# The catalog's side of a write's mark (lists and counts).
MARK_CATALOG_WRITE = (
    _NOW_MS
    + _LAPSE_WRITES
    + """
lapse_writes(KEYS[1], KEYS[2], now_ms)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

# KEYS: writes in flight, the global generation, then filter generations to bump.
# ARGV: the write's token, '1' to bump the global generation too.
# The end of a write's list invalidation: bump what it changed, then drop its mark.
FINISH_CATALOG_WRITE = (
    _NOW_MS
    + _LAPSE_WRITES
    + """
lapse_writes(KEYS[1], KEYS[2], now_ms)
local n = 0
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCR', KEYS[2]); n = 1 end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCR', KEYS[i]); n = n + 1 end
end
redis.call('ZREM', KEYS[1], ARGV[1])
return n
"""
)

# KEYS: entry, pending writes. ARGV: token. A write that certainly changed nothing (a
# version conflict, a duplicate sku): its product mark goes, and so does the doubt it put
# on the entry when no other write of the product is in flight.
DROP_PRODUCT_MARK = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'p') == ARGV[1] and redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('HDEL', KEYS[1], 'p')
end
return 1
"""

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

# KEYS: lock. ARGV: token.
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: entry, lease, pending writes. ARGV: version, payload, ttl_s, the write's token
# ('' for a create, which marks no product: nothing can be cached for an id not yet made).
# The write-through. Revokes fill leases first, whatever else happens: a fill that read the
# database before this write must not land afterwards. Stores unless a newer version is
# cached, and returns the payload it replaced when that was exactly the previous version
# (version - 1) *and settled* (field `s`, MARK_SETTLED): the write's before-image, which
# list invalidation compares field by field. An unsettled previous version is one whose
# own write has not finished invalidating yet (or a fill of it): comparing against it
# would skip what that write still has to invalidate, and this write may answer its
# client first, so the caller must invalidate everything.
# A write whose mark lapsed (slower than its deadline) lands nothing: a fill may have read
# MongoDB before its commit and landed since the mark lapsed, so whatever is cached at this
# version or older is dropped instead. Another write of the product still in flight keeps
# the new entry in doubt.
# Returns {landed (0/1), before payload or false}.
SWAP_VERSIONED = (
    _NOW_MS
    + _PENDING
    + """
redis.call('DEL', KEYS[2])
local cur = redis.call('HMGET', KEYS[1], 'v', 'd', 's')
local newer = cur[1] and tonumber(cur[1]) > tonumber(ARGV[1])
if ARGV[4] ~= '' and redis.call('ZREM', KEYS[3], ARGV[4]) == 0 then
  if not newer then redis.call('DEL', KEYS[1]) end
  return {0, false}
end
local others = pending(KEYS[3], now_ms)
if newer then
  if others then redis.call('HSET', KEYS[1], 'p', '1') end
  return {0, false}
end
local before = false
if cur[1] and cur[2] and cur[3] == '1' and tonumber(cur[1]) == tonumber(ARGV[1]) - 1 then before = cur[2] end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
if others then redis.call('HSET', KEYS[1], 'p', '1') end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, before}
"""
)

# KEYS: entry. ARGV: version. After a write's list invalidation is done: its entry (if it
# still holds that version) may serve the next write as a before-image (SWAP_VERSIONED).
MARK_SETTLED = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 's', '1')
return 1
"""

# KEYS: the global generation, the filter registry, the writes in flight, then the query's filter generations.
# A write that lapsed (or a set of writes in flight that vanished) moves it forward too.
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
    + _LAPSE_WRITES
    + """
local clock = t[1] .. string.format('%06d', tonumber(t[2]))
local ttl_s = math.ceil(2 * tonumber(ARGV[2]) / 1000)
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCR', KEYS[1]) end
end
lapse_writes(KEYS[3], KEYS[1], now_ms)
local out = {false}
for i = 1, #KEYS do
  if i ~= 2 and i ~= 3 then
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
