"""Which project files a cached product GET, a cached list GET and a PATCH run (traced, not guessed).

`.venv/bin/python -m bench.request_path`: the service on the embedded stores (mongomock, fakeredis);
while it serves one request, every jollyjet/ file with a function called, and the longest chain of
distinct files on the call stack at once (the hops a reader follows from the route down).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from jollyjet.app_factory import build_services, create_app
from jollyjet.settings import load_settings
from tests.support.procfile import REPO_ROOT

PACKAGE = str(REPO_ROOT / "jollyjet") + "/"
TOKEN = "bench-trace-token"


def traced(call: Callable[[], Any]) -> tuple[list[str], list[str]]:
    """Project files (in first-call order) with a function called during call(), and the longest chain."""
    seen: dict[str, None] = {}
    longest: list[str] = []

    def profile(frame: Any, event: str, _arg: Any) -> None:
        nonlocal longest
        if event != "call" or not frame.f_code.co_filename.startswith(PACKAGE):
            return
        seen.setdefault(frame.f_code.co_filename.removeprefix(str(REPO_ROOT) + "/"), None)
        chain: list[str] = []
        while frame is not None:
            name = frame.f_code.co_filename.removeprefix(str(REPO_ROOT) + "/")
            if frame.f_code.co_filename.startswith(PACKAGE) and (not chain or chain[-1] != name):
                chain.append(name)
            frame = frame.f_back
        longest = max(longest, chain, key=len)

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return list(seen), longest[::-1]


def main() -> None:
    """Print the files of a cached product GET, a cached list GET and a PATCH."""
    settings = load_settings(env="testing", api_tokens_raw=TOKEN, log_level="WARNING")
    app = create_app(settings, build_services(settings))
    client, auth = app.test_client(), {"Authorization": f"Bearer {TOKEN}"}
    body = {"sku": "TRACE-1", "name": "Trace", "price": "1.00", "currency": "USD", "category": "c", "stock": 1}
    url = f"/api/v1/products/{client.post('/api/v1/products', json=body, headers=auth).get_json()['id']}"
    for path in (url, "/api/v1/products?category=c"):  # cached: the traced reads are hits
        assert client.get(path).status_code == 200 and client.get(path).headers["X-Cache"] == "HIT"
    for label, call in (
        ("cached product GET", lambda: client.get(url)),
        ("cached list GET", lambda: client.get("/api/v1/products?category=c")),
        ("PATCH", lambda: client.patch(url, json={"stock": 2}, headers=auth)),
    ):
        files, chain = traced(call)
        print(f"{label}: {len(files)} files; longest call chain ({len(set(chain))} distinct): {' → '.join(chain)}")
        for name in files:
            print(f"  {name}")


if __name__ == "__main__":
    main()
