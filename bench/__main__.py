"""The benchmark's command line: `bash bench/run [flags]` (or `.venv/bin/python -m bench`)."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.charts import charts
from bench.measure import derive
from bench.options import MODES, Options
from bench.report import markdown
from bench.runner import Run

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "performance"


def parse(argv: list[str]) -> tuple[Options, Path, bool, Path | None]:
    """Flags → Options, the output directory, whether to keep the work directory, a results file to re-render."""
    defaults = Options()
    p = argparse.ArgumentParser(
        prog="bash bench/run",
        description="Run the catalog service side by side with "
        "a trivial endpoint, no cache, a naive cache and a Redis floor.",
    )
    p.add_argument("--products", type=int, default=defaults.products, help="catalog size (default 10000)")
    p.add_argument("--connections", type=int, default=defaults.connections, help="wrk connections (1..64, default 16)")
    p.add_argument(
        "--workers", type=int, default=defaults.workers, help="gunicorn workers, WEB_CONCURRENCY (default 2)"
    )
    p.add_argument("--threads", type=int, default=defaults.threads, help="gunicorn threads, WEB_THREADS (default 4)")
    p.add_argument("--wrk-threads", type=int, default=defaults.wrk_threads, help="wrk threads (default 2)")
    p.add_argument("--modes", default=",".join(defaults.modes), help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument("--reads-seconds", type=float, default=defaults.reads_s, help="product reads per mode, all rounds")
    p.add_argument("--latency-seconds", type=float, default=defaults.latency_s, help="the same at one connection")
    p.add_argument("--rounds", type=int, default=defaults.rounds, help="interleaved rounds of the read runs")
    p.add_argument("--mixed-seconds", type=float, default=defaults.mixed_s)
    p.add_argument("--writes-seconds", type=float, default=defaults.writes_s)
    p.add_argument("--no-access-log", action="store_true", help="service access lines off (log level WARNING)")
    p.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for the service's own modes (ceiling, nocache, service); repeatable",
    )
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results.json, results.md and charts go")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, counters)")
    p.add_argument("--render", type=Path, help="only re-render the tables and charts of this results.json")
    a = p.parse_args(argv)
    modes = tuple(m.strip() for m in a.modes.split(",") if m.strip())
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        p.error(f"unknown modes {unknown}; choose from {', '.join(MODES)}")
    service_env = tuple(tuple(item.split("=", 1)) for item in a.service_env)
    if any(len(pair) != 2 or not pair[0] for pair in service_env):
        p.error("--service-env takes NAME=VALUE")
    if not 1 <= a.connections <= 1024 or a.products < 100 or a.workers < 1 or a.threads < 1:
        p.error("need connections in 1..1024, at least 100 products, 1 worker and 1 thread")
    options = Options(
        products=a.products,
        connections=a.connections,
        workers=a.workers,
        threads=a.threads,
        wrk_threads=a.wrk_threads,
        modes=modes,
        reads_s=a.reads_seconds,
        latency_s=a.latency_seconds,
        mixed_s=a.mixed_seconds,
        writes_s=a.writes_seconds,
        rounds=a.rounds,
        access_log=not a.no_access_log,
        service_env=service_env,
        seed=a.seed,
    )
    return options, a.out, a.keep, a.render


def write_report(results: dict[str, Any], out: Path) -> str:
    """results.md and the charts into out; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(results)
    (out / "results.md").write_text(text)
    charts(results, out)
    return text


def _stop(signum: int, _frame: object) -> None:
    # An exception, so that every `finally` stops what the run started.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run, write the report, print the Markdown table."""
    options, out, keep, render = parse(sys.argv[1:] if argv is None else argv)
    if render is not None:
        results = orjson.loads(render.read_bytes())
        for mode in results["modes"].values():  # the figures again from the raw counts
            for phase in mode["phases"].values():
                if "raw" in phase:
                    phase["app"] = derive(phase["raw"])
        print(write_report(results, out))
        return 0
    # Also when started in the background, where a shell leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    workdir = Path(tempfile.mkdtemp(prefix="jj-bench-"))
    try:
        results = Run(options, workdir, log=lambda line: print(line, flush=True)).execute()
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        print(write_report(results, out))
        print(f"results: {out / 'results.json'}, {out / 'results.md'} and charts in {out}")
    finally:
        if keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
