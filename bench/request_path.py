"""Which package files a product read and write pass through (traced, not guessed).

Builds the app on the embedded stores (mongomock, fakeredis), then records, while
serving one request, every jollyjet/ file with a function called, and the longest
chain of distinct package files on the call stack at once (the hops a reader follows
from the route down; helpers that are called and return add files, not depth).
Run: .venv/bin/python bench/request_path.py
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jollyjet import create_app  # noqa: E402
from jollyjet.settings import load_settings  # noqa: E402

TOKEN = "trace-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PACKAGE = str(ROOT / "jollyjet") + "/"


def _relative(name: str) -> str:
    return name[len(str(ROOT)) + 1 :]


def traced(call: Callable[[], Any]) -> tuple[list[str], list[str]]:
    """Package files (in first-call order) with a function called during call(), and the longest chain."""
    seen: dict[str, None] = {}
    longest: list[str] = []

    def profile(frame: Any, event: str, _arg: Any) -> None:
        nonlocal longest
        if event != "call" or not frame.f_code.co_filename.startswith(PACKAGE):
            return
        seen.setdefault(_relative(frame.f_code.co_filename), None)
        chain: list[str] = []
        walk = frame
        while walk is not None:
            name = walk.f_code.co_filename
            if name.startswith(PACKAGE) and (not chain or chain[-1] != _relative(name)):
                chain.append(_relative(name))
            walk = walk.f_back
        if len(chain) > len(longest):
            longest = chain

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return list(seen), longest[::-1]


def main() -> None:
    """Print the files of a GET (miss, then hit) and a PUT."""
    settings = load_settings(env="testing", api_tokens_raw=TOKEN, log_level="WARNING")
    client = create_app(settings).test_client()
    body = {"sku": "TRACE-1", "name": "Trace", "price": "1.00", "currency": "USD", "category": "c", "stock": 1}
    created = client.post("/api/v1/products", json=body, headers=AUTH).get_json()
    url = f"/api/v1/products/{created['id']}"
    assert client.delete("/api/v1/cache", headers=AUTH).status_code == 200  # the next GET misses
    for label, call in (
        ("GET (miss)", lambda: client.get(url)),
        ("GET (hit)", lambda: client.get(url)),
        ("PUT", lambda: client.put(url, json={**body, "name": "Traced"}, headers=AUTH)),
    ):
        files, chain = traced(call)
        distinct = len(set(chain))
        print(f"{label}: {len(files)} files; longest call chain ({distinct} distinct files): {' → '.join(chain)}")
        for name in files:
            print(f"  {name}")


if __name__ == "__main__":
    main()
