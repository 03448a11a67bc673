"""The one place cached values are turned into bytes and back.

orjson was measured against msgpack on a typical product document
(`bench/serialization.py`, results in docs/cache.md): both are a few
microseconds per round trip; orjson keeps the bytes human-readable in
`redis-cli`, which is worth more to an operator than msgpack's ~20% smaller size.
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
