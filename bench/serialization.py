"""Compare orjson and msgpack on a typical product and a 20-item page (size and round-trip time).

Run: .venv/bin/python bench/serialization.py
"""

from __future__ import annotations

import timeit
from datetime import UTC, datetime
from typing import Any

import msgpack
import orjson


def product(n: int) -> dict[str, Any]:
    now = datetime(2026, 11, 25, 12, 0, 0, 123000, tzinfo=UTC)
    return {
        "id": f"{n:024x}",
        "sku": f"SKU-{n:06d}",
        "name": f"Trail running shoe {n}",
        "description": "Lightweight trail shoe with a grippy outsole and a breathable mesh upper. " * 2,
        "price_cents": 12999,
        "currency": "USD",
        "category": "footwear",
        "tags": ["running", "trail", "outdoor"],
        "stock": 42,
        "is_active": True,
        "version": 7,
        "created_at": now.isoformat(),
        "updated_at": now.isoformat(),
    }


def measure(name: str, value: Any, dumps: Any, loads: Any, number: int = 20000) -> None:
    data = dumps(value)
    assert loads(data) == value
    seconds = timeit.timeit(lambda: loads(dumps(value)), number=number)
    print(f"{name:<22} {len(data):>6} bytes  {seconds / number * 1e6:8.2f} µs per round trip")


def main() -> None:
    one = product(1)
    page = {"items": [product(i) for i in range(20)], "total": 1000}
    for label, value in (("product", one), ("page of 20", page)):
        measure(f"orjson  {label}", value, orjson.dumps, orjson.loads)
        measure(f"msgpack {label}", value, msgpack.packb, msgpack.unpackb, number=20000 if label == "product" else 2000)


if __name__ == "__main__":
    main()
