"""The one place cached values are turned into bytes and back.

orjson was measured against msgpack (`bench/serialization.py`, numbers in
docs/cache.md): orjson round-trips a product about 1.8x faster and a 20-item
page about 2.2x faster; msgpack is ~12% smaller. Speed on the hot path and bytes
an operator can read in `redis-cli` outweigh the size difference.
The format's version lives in the key (keys.SCHEMA_VERSION), not in the bytes.
"""

from __future__ import annotations

from typing import Any

import orjson


class SerializationError(ValueError):
    """Cached bytes could not be decoded; the entry is treated as a miss."""


def dumps(value: Any) -> bytes:
    """Serialize plain data (dicts, lists, str, int, bool, None, datetimes as ISO)."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def loads(data: bytes) -> Any:
    """Deserialize bytes written by dumps()."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise SerializationError(str(error)) from None
