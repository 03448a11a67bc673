"""`python -m jollyjet`: serve the API on one process with threads (embedded defaults work)."""

from __future__ import annotations

import argparse
import os

from werkzeug.serving import run_simple

from jollyjet.app_factory import create_app
from jollyjet.embedded import start_embedded_jobs
from jollyjet.seed import seed_if_enabled
from jollyjet.settings import SettingsError, load_settings


def main() -> None:
    """Parse flags, validate settings, serve."""
    parser = argparse.ArgumentParser(description="Run the JollyJet catalog API")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--no-seed", action="store_true", help="do not insert the demo products")
    args = parser.parse_args()
    try:
        settings = load_settings(**({} if args.no_seed else {"seed_demo_data": True}))
    except SettingsError as error:
        raise SystemExit(str(error)) from None
    app = create_app(settings)
    seed_if_enabled(app)
    if settings.embedded_broker:
        # No broker a separate worker could reach: run the jobs in this process.
        start_embedded_jobs(app)
    print(f"JollyJet catalog API on http://{args.host}:{args.port}/api/v1/products", flush=True)
    print(f"OpenAPI document:       http://{args.host}:{args.port}/api/openapi.json", flush=True)
    # Embedded stores (mongomock, fakeredis) live in this process, so serve with
    # threads in one process; with real servers, use gunicorn (Procfile).
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
