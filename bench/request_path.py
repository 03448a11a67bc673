"""Which package files a product read and write pass through (traced, not guessed).

Builds the app on the embedded stores (mongomock, fakeredis), then records every
jollyjet/ file with a function called while serving one request.
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


def traced(call: Callable[[], Any]) -> list[str]:
    """Package files (in first-call order) with a function called during call()."""
    seen: dict[str, None] = {}

    def profile(frame: Any, event: str, _arg: Any) -> None:
        name = frame.f_code.co_filename
        if event == "call" and name.startswith(PACKAGE):
            seen.setdefault(name[len(str(ROOT)) + 1 :], None)

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return list(seen)


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
        files = traced(call)
        print(f"{label}: {len(files)} files")
        for name in files:
            print(f"  {name}")


if __name__ == "__main__":
    main()
