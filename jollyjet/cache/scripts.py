"""Lua scripts run atomically inside Redis: the version guard, leases, writes in flight, generations.

Every key a script touches is in its KEYS and shares one hash tag (Redis Cluster). A
versioned entry is a hash: `v` version, `d` payload (absent: tombstone or cached absence),
`s` settled (MARK_SETTLED), `p` in doubt (a write of it began after it was stored; never
served). Writes in flight and why a lapsed one moves the list generation: docs/cache.md.
"""

_NOW_MS = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# The catalog's writes in flight: token -> deadline in ms, plus '~' that never lapses, so a set
# deleted by eviction or a purge is told apart from an empty one. A lapsed write (or a vanished
# set) may have changed any list without invalidating it: move the global generation forward.
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

# Is a write of the product (sorted set: token -> deadline in ms) still live?
_PENDING = """
local function pending(key, now_ms)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  return redis.call('ZCARD', key) > 0
end
"""

# The version guard (KEYS[1]: the entry): 0 when a newer version is cached, else replace (payload nil: tombstone).
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

# KEYS: entry, lease, pending writes. ARGV: token, version, payload, ttl_s, '1' if settled.
# Refused while a write of the product is in flight: what the fill read may be older than it.
FILL_VERSIONED = f"""{_WRITE_UNLESS_NEWER}{_NOW_MS}{_PENDING}
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if pending(KEYS[3], now_ms) then return 0 end
redis.call('DEL', KEYS[2])
local landed = write_unless_newer(ARGV[2], ARGV[3], ARGV[4])
if landed == 1 and ARGV[5] == '1' then redis.call('HSET', KEYS[1], 's', '1') end
return landed
"""

# KEYS: entry, lease, pending writes. ARGV: version, ttl_s, the write's token ('' for none).
# Lands even when the write's mark lapsed: a tombstone only hides, it never resurrects.
TOMBSTONE = f"""{_WRITE_UNLESS_NEWER}
redis.call('DEL', KEYS[2])
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[3], ARGV[3]) end
return write_unless_newer(ARGV[1], nil, ARGV[2])
"""

# KEYS: entry, lease, pending writes. ARGV: token, ttl_s. A fill of "MongoDB has no such product":
# version 0 over nothing (a create's 1 replaces it); over an entry in doubt (its write went
# unanswered and the product is gone) a tombstone one version past it; a live entry stays.
FILL_ABSENT = f"""{_NOW_MS}{_PENDING}
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

# KEYS: entry, lease, pending writes. ARGV: token, ttl_ms. Before a write goes to MongoDB: revoke
# fill leases (a fill that read before the write must not land after it), register the write, and
# put the entry in doubt. `p` names that write, so one that changed nothing takes its doubt back
# (DROP_PRODUCT_MARK); a lapsed write found here leaves a doubt ('!') only a fill removes.
MARK_PRODUCT_WRITE = f"""{_NOW_MS}
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

# KEYS: writes in flight, the global generation. ARGV: token, ttl_ms.
MARK_CATALOG_WRITE = f"""{_NOW_MS}{_LAPSE_WRITES}
lapse_writes(KEYS[1], KEYS[2], now_ms)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
return 1
"""

# KEYS: writes in flight, the global generation, filter generations. ARGV: token, '1' to bump the
# global generation too. The end of a write's list invalidation: bump what exists, drop the mark.
FINISH_CATALOG_WRITE = f"""{_NOW_MS}{_LAPSE_WRITES}
lapse_writes(KEYS[1], KEYS[2], now_ms)
local n = 0
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCR', KEYS[2]); n = 1 end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCR', KEYS[i]); n = n + 1 end
end
redis.call('ZREM', KEYS[1], ARGV[1])
return n
"""

# KEYS: entry, pending writes. ARGV: token. A write that certainly changed nothing: drop its mark,
# and its doubt on the entry unless another write of the product is in flight.
DROP_PRODUCT_MARK = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'p') == ARGV[1] and redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('HDEL', KEYS[1], 'p')
end
return 1
"""

# KEYS: entry, lease. ARGV: version. For repairs that must not touch an entry rewritten since they looked.
EVICT_VERSIONED = """
redis.call('DEL', KEYS[2])
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: generation. A missing one restarts from the server clock in microseconds, above any used
# before, so result keys of an earlier generation never become reachable again.
GET_GENERATION = """
local g = redis.call('GET', KEYS[1])
if not g then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])), 'NX')
  g = redis.call('GET', KEYS[1])
end
return g
"""

# KEYS: lock. ARGV: token.
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: entry, lease, pending writes. ARGV: version, payload, ttl_s, the write's token ('' for a
# create). Returns {landed, before-image or false}. Revokes fill leases first, whatever happens.
# The before-image is the replaced payload only if it was version - 1 *and settled*: an unsettled
# one's write may still have lists to invalidate, so the caller must invalidate everything. A write
# whose mark lapsed lands nothing and drops what is cached at its version or older (a fill may have
# read MongoDB before its commit). Another write still in flight keeps the new entry in doubt.
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

# KEYS: entry. ARGV: version. Its write finished invalidating: the entry may be a before-image.
MARK_SETTLED = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 's', '1')
return 1
"""

# KEYS: the global generation, the filter registry, the writes in flight, the filter generations.
# ARGV: registry member, horizon ms, result key prefix, query hash. Registers the filters, reads
# every generation (a missing one starts from the clock; filter ones live two horizons) and returns
# {cached result or false, generations...}. The result key is built from the generations just read
# (as keys.query_result does), so it is not in KEYS; it shares the {products} slot. A missing
# registry moves the global generation forward: a write made while it was gone compared itself
# against nothing, so no result or fill from before may be used.
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

# KEYS: the global generation, the filter registry, the result, the filter generations. ARGV:
# member, horizon ms, payload, ttl_s, expected generations. Lands only while every generation is
# unchanged and the registration never lapsed (a write in the gap compared itself against nothing).
FILL_FILTERED = f"""
if redis.call('GET', KEYS[1]) ~= ARGV[5] then return 0 end
for i = 4, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[i + 2] then return 0 end
end
{_NOW_MS}
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) < now_ms then return 0 end
redis.call('ZADD', KEYS[2], 'GT', now_ms + tonumber(ARGV[2]), ARGV[1])
local ttl_s = math.ceil(2 * tonumber(ARGV[2]) / 1000)
for i = 4, #KEYS do redis.call('EXPIRE', KEYS[i], ttl_s) end
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
return 1
"""

# KEYS: the filter registry. Drops lapsed registrations, returns the live ones.
LIVE_FILTERS = f"""{_NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now_ms)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
