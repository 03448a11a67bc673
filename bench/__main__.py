"""The benchmark: `bash bench/run [flags]` runs the service side by side with what it is compared with.

Modes: the naive Flask-Caching app, the service, the floor (one Redis GET of pre-rendered
bytes), and the service with its cache off (the mixed load only). Each has its own seeded
database, redis-server and gunicorn (the Procfile's web line), all started together. Then,
each phase measured between two snapshots of the apps' own counters (bench/measure.py):
  warm     every catalog product, then every popular path, read once (Redis memory after each)
  reads    product reads (Zipf) at the chosen concurrency, then at one connection, in
           interleaved rounds (A B C A B C ...): other work on the machine falls on every
           mode alike, which keeps the ratios between modes honest
  mixed    the 95/5 read/write mix, the stale checker alongside (its requests counted too)
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from threading import Event, Thread
from typing import Any

import orjson

from bench import workload
from bench.checker import Checker
from bench.measure import HttpClient, combine, figures, measured, send_concurrently
from bench.report import markdown
from bench.stack import REPO_ROOT, Stack, Web
from bench.workload import Mix, Workload, write_requests

DEFAULT_OUT = REPO_ROOT / "docs" / "performance"
LOAD_SCRIPT = Path(__file__).with_name("load.lua")
# name: (title, app, environment, seeded: has a database, so it runs the mixed load); the naive
# cache forgets everything 60 s after its sweep: it is warmed last and read first in each round.
MODES: dict[str, tuple[str, str, dict[str, str], bool]] = {
    "naive": ("naive Flask-Caching @cache.cached(timeout=60)", "naive", {}, True),
    "service": ("this service, cache on", "service", {}, True),
    "floor": ("the floor: one Redis GET of pre-rendered bytes", "floor", {}, False),
    "nocache": ("this service, cache off", "service", {"JOLLYJET_CACHE_ENABLED": "false"}, True),
}
READ_MODES = ["naive", "service", "floor"]
RESERVE = 300  # products the mixed load may delete (then its deletes become updates)
MIX = Mix()


def run_wrk(url: str, file: Path, token: str, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run replaying file; its counts and latency percentiles (µs)."""
    if shutil.which("wrk") is None:  # scripts/test installs it
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    threads = min(2, connections)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    argv += ["-s", str(LOAD_SCRIPT), url, "--", str(file), token, str(threads)]
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    stdout = done.stdout.decode(errors="replace")
    line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {stdout[-2000:]}")
    result: dict[str, Any] = orjson.loads(line.removeprefix("BENCH_JSON "))
    seconds_run = result["duration_us"] / 1e6
    result["requests_per_s"] = result["requests"] / seconds_run if seconds_run else 0.0
    return result | {"connections": connections}


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one phase as one: summed counts, requests/s over the summed time, median percentiles."""
    wrks = [r["wrk"] for r in rounds]
    duration, requests = sum(w["duration_us"] for w in wrks), sum(w["requests"] for w in wrks)
    latency = {k: statistics.median(w["latency_us"][k] for w in wrks) for k in wrks[0]["latency_us"]}
    merged = {
        "duration_us": duration,
        "requests": requests,
        "requests_per_s": requests / (duration / 1e6) if duration else 0.0,
        "requests_per_s_rounds": [round(w["requests_per_s"], 1) for w in wrks],
        "errors": {k: sum(w["errors"][k] for w in wrks) for k in wrks[0]["errors"]},
        "latency_us": latency | {"max": max(w["latency_us"]["max"] for w in wrks)},
        "connections": wrks[0]["connections"],
    }
    raw = combine(r["raw"] for r in rounds)
    return {"wrk": merged, "raw": raw, "app": figures(raw, requests), "rounds": len(rounds)}


class Run:
    """One invocation: the stack, the modes, the results."""

    def __init__(self, options: argparse.Namespace, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.token = secrets.token_hex(16)
        self.stack = Stack(workdir, self.token)
        self.plan = workload.SeedPlan(options.products, reserve=RESERVE)
        self.webs: dict[str, Web] = {}
        self.modes: dict[str, Any] = {}

    def execute(self) -> dict[str, Any]:
        """Start the stack, run the phases, stop everything; returns the results."""
        started, o = time.time(), self.options
        reads, mixed = (Workload(o.products, MIX, o.seed, range(RESERVE), secrets.token_hex(4)) for _ in range(2))
        self.files = {
            "reads": write_requests(self.workdir / "reads.txt", (reads.product_read() for _ in range(100_000))),
            "mixed": write_requests(self.workdir / "mixed.txt", mixed.mixed(200_000)),
        }
        settings = {k: v for k, v in vars(o).items() if k not in ("out", "keep")} | {"mix": asdict(MIX)}
        settings["mongodb"] = "real MongoDB (MONGODB_URI)" if os.environ.get("MONGODB_URI") else "nx-27017"
        results: dict[str, Any] = {"machine": machine(), "settings": settings, "modes": self.modes}
        self.stack.mongo.start()
        try:
            for name in MODES:
                self.start_mode(name)
            for name in reversed(READ_MODES):
                self.warm(name)
            self.interleaved(READ_MODES, "reads_c", o.connections, o.reads_seconds)
            self.interleaved(READ_MODES, "reads_1", 1, o.latency_seconds)
            for name in (m for m in MODES if MODES[m][3]):
                self.mixed(name)
        finally:
            for web in self.webs.values():
                web.stop()
            self.stack.mongo.close()
        results["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
        results["elapsed_s"] = round(time.time() - started, 1)
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return results

    def start_mode(self, name: str) -> None:
        """The mode's database (the floor has none), redis-server and gunicorn."""
        title, app, env, seeded = MODES[name]
        database, seed_s = self.stack.seed_database(self.plan if seeded else None, self.options.seed)
        o = self.options
        self.webs[name] = self.stack.start_web(name, app, database, o.workers, o.threads, env, o.products)
        self.modes[name] = {"title": title, "seed_s": round(seed_s, 2), "phases": {}}
        print(f"== {name}: {title} ({f'seeded in {seed_s:.1f} s' if seeded else 'no database'})")

    def wrk(self, name: str, file: str, connections: int, seconds: float) -> dict[str, Any]:
        """One wrk run against one mode, measured."""
        web = self.webs[name]
        result, raw = measured(web, lambda: run_wrk(web.url, self.files[file], self.token, connections, seconds))
        return {"wrk": result, "raw": raw, "app": figures(raw, result["requests"])}

    def warm(self, name: str) -> None:
        """Fill the cache: every product, then every popular path, once; used_memory's growth over each."""
        web, products = self.webs[name], self.options.products
        client, sweep = web.redis(), list(workload.sweep_requests(products))  # every product, then popular paths
        memory = [client.info("memory")["used_memory"]]
        for requests in (sweep[:products], sweep[products:]):
            send_concurrently(web.url, requests, self.options.connections)
            memory.append(client.info("memory")["used_memory"])
        client.close()
        self.modes[name]["redis_memory"] = (
            {}
            if name == "floor"
            else {
                "bytes_per_product": round((memory[1] - memory[0]) / products, 1),
                "bytes_per_query_result": round((memory[2] - memory[1]) / (len(sweep) - products), 1),
            }
        )

    def interleaved(self, names: list[str], phase: str, connections: int, seconds: float) -> None:
        """One phase for every mode, in rounds (A B C A B C ...); results merged per mode."""
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for _ in range(self.options.rounds):
            for name in names:
                rounds[name].append(self.wrk(name, "reads", connections, seconds / self.options.rounds))
        for name in names:
            self.modes[name]["phases"][phase] = merge_rounds(rounds[name])
            self.log(name, phase)

    def mixed(self, name: str) -> None:
        """The mixed load with the stale checker alongside."""
        web, phases = self.webs[name], self.modes[name]["phases"]
        checker, stop = Checker(HttpClient(web.url, self.token), workload.checker_ids(self.plan.checker)), Event()

        def cycles() -> None:  # in a thread of this process, which only waits for wrk meanwhile
            while not stop.wait(0.05):  # a pause between cycles: a light load
                checker.cycle()

        thread = Thread(target=cycles)
        thread.start()
        try:
            phases["mixed"] = mixed = self.wrk(name, "mixed", self.options.connections, self.options.mixed_seconds)
        finally:
            stop.set()
            thread.join()
            checker.client.close()
        self.modes[name]["checker"] = summary = checker.summary()
        # The checker's requests were served in the same window.
        mixed["app"] = figures(mixed["raw"], mixed["wrk"]["requests"] + summary["requests"])
        self.log(name, "mixed")
        print(f"   checker: {summary['reads_checked']} answers judged, {summary['stale_reads']} stale")

    def log(self, name: str, phase: str) -> None:
        """One line per measured phase."""
        wrk, db = self.modes[name]["phases"][phase]["wrk"], self.modes[name]["phases"][phase]["app"]["db_queries"]
        lat = f"p50 {wrk['latency_us']['50'] / 1000:.2f} ms  p99 {wrk['latency_us']['99'] / 1000:.2f} ms"
        print(f"   {name:<8} {phase:<8} c={wrk['connections']:<3} {wrk['requests_per_s']:9.1f} req/s  {lat}  db {db}")


def machine() -> dict[str, Any]:
    """The machine the run came from: CPUs, Python, load."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": next((ln.split(":", 1)[1].strip() for ln in cpuinfo if "model name" in ln), "?"),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line: what a run depends on."""
    p = argparse.ArgumentParser(prog="bash bench/run", description=__doc__.splitlines()[0])
    for flag, default, text in (
        ("--products", 10_000, "catalog size"),
        ("--connections", 16, "wrk connections"),
        ("--workers", 2, "gunicorn workers (WEB_CONCURRENCY)"),
        ("--threads", 4, "gunicorn threads (WEB_THREADS)"),
        ("--rounds", 6, "interleaved rounds of the read runs"),
        ("--seed", 1, "the workload's random seed"),
    ):
        p.add_argument(flag, type=int, default=default, help=f"{text} (default {default})")
    for flag, seconds, text in (
        ("--reads-seconds", 12, "product reads per mode, all rounds"),
        ("--latency-seconds", 6, "the same at one connection"),
        ("--mixed-seconds", 30, "the mixed load"),
    ):
        p.add_argument(flag, type=float, default=seconds, help=f"{text} (default {seconds})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results.json and results.md go")
    p.add_argument("--keep", action="store_true", help="keep the work directory (gunicorn logs, request files)")
    a = p.parse_args(argv)
    if not 1 <= a.connections <= 1024 or a.products < 100 or a.workers < 1 or a.threads < 1:
        p.error("need connections in 1..1024, at least 100 products, 1 worker and 1 thread")
    return a


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # an exception, so that every `finally` stops what the run started


def main(argv: list[str] | None = None) -> int:
    """Run, write results.json and results.md, print the Markdown."""
    options = parse(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, _stop)  # also when started in the background, where SIGINT is ignored
    signal.signal(signal.SIGTERM, _stop)
    workdir = Path(tempfile.mkdtemp(prefix="jj-bench-"))
    try:
        results = Run(options, workdir).execute()
        out = options.out
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        (out / "results.md").write_text(text := markdown(results))
        print(text + f"\nresults: {out / 'results.json'}, {out / 'results.md'}")
    finally:
        if options.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
