"""The unit tests' cache: CacheBackend on fakeredis, running the real Lua scripts of jollyjet/cache/scripts.py.

fakeredis runs each script through lupa, so a script is written once and the unit tests
exercise it; every backend gets a private FakeServer, so tests never share keys.
"""

from __future__ import annotations

import fakeredis

from jollyjet.cache.fence import CircuitBreaker
from jollyjet.cache.keys import ProductKeys
from jollyjet.cache.store import CacheBackend

# fakeredis does not fail by itself: a test that wants cache errors raises them (OutageBackend,
# FailingBackend) before the breaker is asked. This breaker never opens during a unit test.
_NEVER_OPENS = 1_000_000


class FakeCacheBackend(CacheBackend):
    """CacheBackend on its own, empty fakeredis server; `client` is the raw fakeredis client."""

    def __init__(self) -> None:
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        super().__init__(client, CircuitBreaker(failure_threshold=_NEVER_OPENS, cooldown_s=1))


def write_entry(backend: CacheBackend, product: ProductKeys, payload: bytes, version: int, ttl_s: int) -> bool:
    """Cache payload at version as a create's write-through does (SWAP_VERSIONED, no write mark): fill
    leases revoked, refused when a newer version is cached. True when it landed."""
    landed, _before = backend.swap_versioned(product.entry, product.lease, product.pending, payload, version, ttl_s, "")
    return landed


def cache_contents(backend: CacheBackend, pattern: str = "*") -> dict[str, object]:
    """Every key matching pattern with its whole value, whatever its type, read with raw commands.

    Hashes (versioned entries: version, payload and the settled mark) come back as dicts of
    fields, sorted sets (popularity, filter registries) as (member, score) lists.
    """
    client = backend.client
    contents: dict[str, object] = {}
    for raw in client.scan_iter(match=pattern, count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        kind = client.type(key)
        value: object
        if kind == b"string":
            value = client.get(key)
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"none":  # expired between SCAN and TYPE
            continue
        else:
            raise TypeError(f"{key} holds a {kind!r}, which the cache never writes")
        contents[key] = value
    return contents
