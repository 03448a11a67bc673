"""Headless Chromium (Debian `chromium`) driven from the command line: rendered DOM and screenshots.

Each run gets a fresh profile directory and no background traffic, and is bounded in
time. `python -m tests.support.chromium docs/api-docs.png` serves the app on a free
loopback port and writes the screenshot of /api/docs shown in docs/api.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask
from werkzeug.serving import make_server

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
)
# Virtual time runs ahead while the page is idle and waits for its network requests:
# enough for Swagger UI to fetch the document and render, whatever the machine's load.
VIRTUAL_TIME_BUDGET_MS = 20000
RUN_TIMEOUT_S = 120


def chromium_binary() -> str:
    """The chromium executable (scripts/test installs it)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise RuntimeError("chromium is not installed (scripts/test installs it)")
    return binary


def run_chromium(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Load url in a fresh headless profile; the process is killed if it outlives RUN_TIMEOUT_S."""
    with tempfile.TemporaryDirectory(prefix="jj-chromium-") as profile:
        return subprocess.run(
            [
                chromium_binary(),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
                *extra,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )


def rendered_dom(url: str) -> str:
    """The page's DOM after its scripts ran."""
    result = run_chromium(url, "--dump-dom")
    if result.returncode != 0:
        raise RuntimeError(f"chromium exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


def screenshot(url: str, path: Path, width: int = 1280, height: int = 1800) -> None:
    """A PNG of the rendered page."""
    result = run_chromium(url, f"--screenshot={path}", f"--window-size={width},{height}")
    if not path.exists():
        raise RuntimeError(f"chromium wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}")


@contextmanager
def served(app: Flask) -> Iterator[str]:
    """The app behind werkzeug's threaded server on a free 127.0.0.1 port; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="served-app", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


if __name__ == "__main__":
    from jollyjet.commands import catalog_products, seed_products
    from jollyjet.extensions import services_of
    from tests.conftest import make_app, make_settings

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/api-docs.png")
    demo = make_app(make_settings())  # on mongomock, with its indexes
    with demo.app_context():
        seed_products(services_of(demo).products, catalog_products())
    with served(demo) as base_url:
        screenshot(f"{base_url}/api/docs", target)
    print(f"wrote {target}")
