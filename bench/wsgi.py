"""gunicorn entry of the benchmark (`gunicorn bench.wsgi:app`), in place of the Procfile's `app:app`.

It installs the counting (bench/instrument.py) before the app under test exists, then
wraps that app in the counting middleware, so every mode is measured the same way.
BENCH_APP picks the app: `service` (the Procfile's own target, BENCH_TARGET, e.g.
`app:app`), `naive` (bench/naive_app.py) or `floor` (bench/floor_app.py).
BENCH_COUNTERS names the directory of the counter files.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable

from bench.instrument import CountingMiddleware, install


def _target_app() -> Callable[..., Iterable[bytes]]:
    which = os.environ.get("BENCH_APP", "service")
    if which == "naive":
        from bench.naive_app import create_naive_app

        return create_naive_app()
    if which == "floor":
        from bench.floor_app import create_floor_app

        return create_floor_app()
    module, _, attribute = os.environ.get("BENCH_TARGET", "app:app").partition(":")
    return getattr(importlib.import_module(module), attribute or "app")


install()
app = CountingMiddleware(_target_app())
