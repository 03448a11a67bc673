"""Lua scripts run atomically inside Redis: the version guard, leases, generations.

Every key a script touches is passed in KEYS and shares a hash tag, so the
scripts run unchanged on Redis Cluster. Versioned entries are hashes with fields
`v` (version) and `d` (payload; absent for a tombstone).
"""

# KEYS: entry, lease. ARGV: version, payload, ttl_s.
# Revokes fill leases first, whatever else happens: a fill that read the database
# before this write must not land afterwards.
SET_VERSIONED = """
redis.call('DEL', KEYS[2])
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: entry, lease. ARGV: token, version, payload, ttl_s.
FILL_VERSIONED = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) > tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: entry, lease. ARGV: version, ttl_s.
TOMBSTONE = """
redis.call('DEL', KEYS[2])
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
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
