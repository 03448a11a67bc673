"""Runs every mode on the same settings and collects the figures (report.py renders them).

Every mode gets its own seeded database and its own gunicorn (the Procfile's web line),
all on one redis-server and one MongoDB, started together. Then, each phase measured
between two snapshots of the app's counters, Redis's command counts and CPU times:

  warm     every catalog product and popular path read once (cached modes), else a short read run
  probe    warm keys read one at a time: Redis commands per hit, by kind (cached modes)
  reads    product reads (Zipf) at the chosen concurrency, then at one connection, in
           interleaved rounds (mode A, B, C, ... A, B, C, ...): other work on the machine
           then falls on every mode alike, which keeps the ratios between modes honest
  mixed    the 95/5 read/write mix at the chosen concurrency
  writes   writes only, at the chosen concurrency, then at one connection
           (the stale checker runs alongside mixed and the concurrent writes)
The ceiling reads /health/live; the floor has no writes (it serves pre-rendered bytes).
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from bench import catalog
from bench.machine import machine
from bench.measure import combine, derive, hit_path_probe, measured, send_concurrently
from bench.metrics import db_queries_between, scrape_db_queries
from bench.options import MODES, RESERVE_SLICES, Mode, Options
from bench.stack import REPO_ROOT, Stack, Web, WebSettings
from bench.workload import PythonWorkload, Request, sweep_requests
from bench.wrk import run_wrk
from tests.support.mongo_server import unique_database_name


class Run:
    """One invocation: the stack, the modes, the results."""

    def __init__(self, options: Options, workdir: Path, log: Callable[[str], None] = print) -> None:
        self.options = options
        self.workdir = workdir
        self.log = log
        self.token = secrets.token_hex(16)
        self.stack = Stack(workdir, self.token)
        self.paths_file = workdir / "paths.txt"
        self.plan = catalog.SeedPlan(options.products, reserve=RESERVE_SLICES["writes_1"][1])
        self.webs: dict[str, Web] = {}
        self.results: dict[str, Any] = {}

    def execute(self) -> dict[str, Any]:
        """Start the stack, run the phases, stop everything; returns the results."""
        started = time.time()
        self.paths_file.write_text(
            "".join(f"list {p}\n" for p in catalog.POPULAR_LISTS)
            + "".join(f"count {p}\n" for p in catalog.POPULAR_COUNTS)
        )
        modes = [MODES[name] for name in self.options.modes]
        self.results = {"machine": machine(), "settings": self.settings(), "modes": {}}
        self.stack.start()
        try:
            for mode in modes:
                self.start_mode(mode)
            # The naive cache forgets everything 60 s after its sweep: warm it last and read it
            # first in every round, so its read runs start from a warm cache like the others'.
            naive_first = sorted(modes, key=lambda m: m.name != "naive")
            for mode in reversed(naive_first):
                self.warm(mode)
            self.interleaved(naive_first, "reads_c", self.options.connections, self.options.reads_s)
            self.interleaved(naive_first, "reads_1", 1, self.options.latency_s)
            for mode in (m for m in modes if m.writes):
                self.log(f"== {mode.name}: mixed load and writes")
                self.mixed_and_writes(mode)
        finally:
            for web in self.webs.values():
                web.stop()
            self.stack.close()
        self.results["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
        self.results["elapsed_s"] = round(time.time() - started, 1)
        self.results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return self.results

    def settings(self) -> dict[str, Any]:
        """The run's settings as recorded in the results."""
        values = asdict(self.options)
        values["mongodb"] = "real MongoDB (MONGODB_URI)" if os.environ.get("MONGODB_URI") else "nx-27017"
        values["popular_lists"] = list(catalog.POPULAR_LISTS)
        values["popular_counts"] = list(catalog.POPULAR_COUNTS)
        return values

    def start_mode(self, mode: Mode) -> None:
        """The mode's database and gunicorn (the ceiling and the floor never query MongoDB: no data)."""
        if mode.writes:
            database, seed_s = self.stack.seed_database(self.plan, self.options.seed)
        else:
            database, seed_s = unique_database_name("jj_bench"), 0.0
        if mode.app == "floor":
            self.stack.store_floor_bodies(self.plan, self.options.seed)
        web_settings = WebSettings(self.options.workers, self.options.threads, self.options.access_log)
        env = {**mode.env, **dict(self.options.service_env)} if mode.app == "service" else mode.env
        self.webs[mode.name] = self.stack.start_web(mode.name, mode.app, database, web_settings, env)
        self.results["modes"][mode.name] = {"title": mode.title, "seed_s": round(seed_s, 2), "phases": {}}
        seeded = f"seeded {self.plan.catalog:,} products in {seed_s:.1f} s" if mode.writes else "no database"
        self.log(f"== {mode.name}: {mode.title} ({seeded})")

    def warm(self, mode: Mode) -> None:
        """Fill the caches (every product and popular path once), then probe the hit path."""
        web, result = self.webs[mode.name], self.results["modes"][mode.name]
        if mode.name == "ceiling":
            self.wrk(mode, "warm", {"mix": "path", "path": "/health/live"}, self.options.connections, 2)
            return
        if mode.app == "floor" or not mode.cached:
            self.wrk(mode, "warm", {"mix": "reads"}, self.options.connections, 3)
        else:
            client = self.stack.redis()
            try:
                statuses, raw = measured(
                    web,
                    client,
                    self.stack.server_pids(),
                    lambda: send_concurrently(web.url, sweep_requests(self.options.products), self.options.connections),
                )
            finally:
                client.close()
            result["phases"]["warm"] = {"statuses": statuses, "app": derive(raw)}
            self.log(f"   {mode.name:<8} warm      {sum(statuses.values())} reads, statuses {statuses}")
        if mode.cached:
            result["probes"] = self.probes(web, lists=mode.app != "floor")

    def interleaved(self, modes: list[Mode], phase: str, connections: int, seconds: float) -> None:
        """One phase for every mode, in rounds (A B C A B C ...); results merged per mode."""
        rounds: dict[str, list[dict[str, Any]]] = {mode.name: [] for mode in modes}
        for _ in range(self.options.rounds):
            for mode in modes:
                extra = {"mix": "path", "path": "/health/live"} if mode.name == "ceiling" else {"mix": "reads"}
                rounds[mode.name].append(self.wrk(mode, phase, extra, connections, seconds / self.options.rounds))
        for mode in modes:
            merged = merge_rounds(rounds[mode.name])
            self.results["modes"][mode.name]["phases"][phase] = merged
            self.log_phase(mode.name, phase, connections, merged)

    def mixed_and_writes(self, mode: Mode) -> None:
        """The mixed load, then writes only; the stale checker runs alongside the concurrent runs."""
        opts, phases = self.options, self.results["modes"][mode.name]["phases"]
        web = self.webs[mode.name]
        scraped = scrape_db_queries(web.url)
        checker = self.start_checker(web)
        try:
            phases["mixed"] = self.wrk(mode, "mixed", {"mix": "mixed"}, opts.connections, opts.mixed_s)
            # The service's own count, when it has /metrics (includes the checker's requests).
            phases["mixed"]["metrics_db_queries"] = db_queries_between(scraped, scrape_db_queries(web.url))
            phases["writes_c"] = self.wrk(mode, "writes_c", {"mix": "writes"}, opts.connections, opts.writes_s)
        finally:
            self.results["modes"][mode.name]["checker"] = self.finish_checker(checker)
        # Without the checker: the one-connection latencies are the load's alone.
        phases["writes_1"] = self.wrk(mode, "writes_1", {"mix": "writes"}, 1, opts.writes_s)
        for phase in ("mixed", "writes_c", "writes_1"):
            self.log_phase(mode.name, phase, 1 if phase.endswith("_1") else opts.connections, phases[phase])

    def lua_args(self, phase: str, extra: dict[str, Any]) -> dict[str, Any]:
        """The workload script's arguments for one phase."""
        mix = self.options.mix
        lo, hi = RESERVE_SLICES.get(phase, (0, 0))
        return {
            "n": self.options.products,
            "s": mix.zipf_s,
            "p_list": mix.p_list,
            "p_count": mix.p_count,
            "p_update": mix.p_update,
            "p_create": mix.p_create,
            "p_delete": mix.p_delete,
            "reserve_lo": lo,
            "reserve_hi": hi,
            "catalog_prefix": catalog.CATALOG_PREFIX,
            "reserve_prefix": catalog.RESERVE_PREFIX,
            "paths": self.paths_file,
            "token": self.token,
            "seed": self.options.seed,
            "nonce": uuid.uuid4().hex[:8],
            **extra,
        }

    def wrk(self, mode: Mode, phase: str, extra: dict[str, Any], connections: int, seconds: float) -> dict[str, Any]:
        """One wrk run against one mode, measured."""
        web = self.webs[mode.name]
        client = self.stack.redis()
        try:
            wrk_result, raw = measured(
                web,
                client,
                self.stack.server_pids(),
                lambda: run_wrk(
                    web.url,
                    connections,
                    self.options.wrk_threads,
                    seconds,
                    self.lua_args(phase, extra),
                    web.counters.parent / "wrk.log",
                ),
            )
        finally:
            client.close()
        return {"wrk": wrk_result, "raw": raw, "app": derive(raw)}

    def log_phase(self, mode: str, phase: str, connections: int, result: dict[str, Any]) -> None:
        """One line per measured phase."""
        lat, app = result["wrk"]["latency_us"], result["app"]
        self.log(
            f"   {mode:<8} {phase:<9} c={connections:<3} {result['wrk']['requests_per_s']:9.1f} req/s  "
            f"p50 {lat['50'] / 1000:.2f} ms  p99 {lat['99'] / 1000:.2f} ms  "
            f"hit ratio {_fmt(app['hit_ratio'])}  db/1k {_fmt(app['db_queries_per_1k_requests'])}"
        )

    def probes(self, web: Web, lists: bool) -> dict[str, Any]:
        """Warm keys read one at a time: Redis commands per hit for products, lists and counts."""
        workload = PythonWorkload(self.options.products, self.options.mix, self.options.seed, range(0), "probe")
        kinds = {"product": [workload.product_read() for _ in range(self.options.probe_reads)]}
        if lists:
            kinds["list"] = [Request("GET", p) for p in catalog.POPULAR_LISTS for _ in range(3)]
            kinds["count"] = [Request("GET", p) for p in catalog.POPULAR_COUNTS for _ in range(3)]
        client = self.stack.redis()
        try:
            pids = self.stack.server_pids()
            return {kind: hit_path_probe(web, client, requests, pids) for kind, requests in kinds.items()}
        finally:
            client.close()

    def start_checker(self, web: Web) -> tuple[subprocess.Popen[bytes], Path, Path]:
        """The stale checker as its own process; it runs until its stop file appears."""
        out, stop = web.counters.parent / "checker.json", web.counters.parent / "checker.stop"
        argv = [sys.executable, "-m", "bench.checker", "--url", web.url, "--token", self.token]
        argv += ["--products", str(self.plan.checker), "--stop-file", str(stop), "--out", str(out)]
        process = subprocess.Popen(argv, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        return process, out, stop

    def finish_checker(self, checker: tuple[subprocess.Popen[bytes], Path, Path]) -> dict[str, Any]:
        """Stop the checker, wait for it and read its verdict (with its own CPU time)."""
        process, out, stop = checker
        stop.touch()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0 or not out.exists():
            raise RuntimeError(f"the stale checker failed (exit code {process.returncode})")
        summary: dict[str, Any] = orjson.loads(out.read_bytes())
        summary["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
        self.log(f"   checker: {summary['reads_checked']} reads judged, {summary['stale_reads']} stale")
        return summary


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one phase as one: summed counts, requests/s over the summed time, median percentiles."""
    wrks = [r["wrk"] for r in rounds]
    duration = sum(w["duration_us"] for w in wrks)
    requests = sum(w["requests"] for w in wrks)
    latency = {k: statistics.median(w["latency_us"][k] for w in wrks) for k in wrks[0]["latency_us"]}
    latency["max"] = max(w["latency_us"]["max"] for w in wrks)
    merged_wrk = {
        "duration_us": duration,
        "requests": requests,
        "requests_per_s": requests / (duration / 1e6) if duration else 0.0,
        "requests_per_s_rounds": [round(w["requests_per_s"], 1) for w in wrks],
        "bytes": sum(w["bytes"] for w in wrks),
        "errors": {k: sum(w["errors"][k] for w in wrks) for k in wrks[0]["errors"]},
        "latency_us": latency,
        "generator_cpu_s": sum(w["generator_cpu_s"] for w in wrks),
        "connections": wrks[0]["connections"],
        "threads": wrks[0]["threads"],
    }
    raw = combine([r["raw"] for r in rounds])
    return {"wrk": merged_wrk, "raw": raw, "app": derive(raw), "rounds": len(rounds)}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
