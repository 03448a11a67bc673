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
FILL_VERSIONED = with_version_guard("""
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
return write_unless_newer(ARGV[2], ARGV[3], ARGV[4])
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
