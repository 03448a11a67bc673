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
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from threading import Event, Thread
from typing import Any

import orjson

from bench import workload
from bench.checker import Checker
from bench.measure import HttpClient, combine, figures, measured, send_concurrently
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
        settings = {k: v for k, v in vars(o).items() if k != "out"} | {"mix": asdict(MIX)}
        settings["mongodb"] = "real MongoDB (MONGODB_URI)" if os.environ.get("MONGODB_URI") else "nx-27017"
        cpu = [
            ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln
        ]
        machine = {"cpu_model": (cpu or ["?"])[0], "nproc": len(os.sched_getaffinity(0))}
        results: dict[str, Any] = {"settings": settings, "modes": self.modes, "machine": machine}
        results["machine"]["python"] = platform.python_version()
        results["machine"]["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
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
        # wrk's connections land on the workers at random, and the spread set the rate more than the app did
        # ([8, 8] 5,143 req/s, [16, 0] 1,971): each worker takes its share, and one more (the stale checker's).
        env = {**env, "GUNICORN_CMD_ARGS": f"--worker-connections {max(-(-o.connections // o.workers), o.threads) + 1}"}
        self.webs[name] = self.stack.start_web(name, app, database, o.workers, o.threads, env, o.products)
        self.modes[name] = {"title": title, "seed_s": round(seed_s, 2), "phases": {}}
        print(f"== {name}: {title} ({f'seeded in {seed_s:.1f} s' if seeded else 'no database'})")

    def warm(self, name: str) -> None:
        """Fill the cache: every product, then every popular path, once; used_memory's growth over each."""
        web, products = self.webs[name], self.options.products
        sweep = list(workload.sweep_requests(products))  # every product, then the popular paths
        client = web.redis_server.client()
        memory = [client.info("memory")["used_memory"]]
        for requests in (sweep[:products], sweep[products:]):
            send_concurrently(web.url, requests, self.options.connections)
            memory.append(client.info("memory")["used_memory"])
        client.close()
        if name != "floor":  # its bodies were stored before it started
            self.modes[name]["redis_memory"] = {
                "bytes_per_product": round((memory[1] - memory[0]) / products, 1),
                "bytes_per_query_result": round((memory[2] - memory[1]) / (len(sweep) - products), 1),
            }

    def interleaved(self, names: list[str], phase: str, connections: int, seconds: float) -> None:
        """One phase for every mode, in rounds (A B C A B C ...); results merged per mode."""
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        each, file = seconds / self.options.rounds, self.files["reads"]
        for _ in range(self.options.rounds):
            for name, web in ((name, self.webs[name]) for name in names):
                result, raw = measured(web, partial(run_wrk, web.url, file, self.token, connections, each))
                rounds[name].append({"wrk": result, "raw": raw})
        for name in names:
            self.modes[name]["phases"][phase] = merge_rounds(rounds[name])
            self.log(name, phase)

    def mixed(self, name: str) -> None:
        """The mixed load with the stale checker alongside, both within the measured window."""
        web, o = self.webs[name], self.options
        checker, stop = Checker(HttpClient(web.url, self.token), self.plan.checker), Event()

        def cycles() -> None:  # in a thread of this process, which only waits for wrk meanwhile
            try:
                while not stop.wait(0.05):  # a pause between cycles: a light load
                    checker.cycle()
            except RuntimeError as error:  # TooManyStates: its writes' 503s left too many outcomes unknown to judge
                print(f"== {name}: the stale checker stopped after {checker.cycles} cycles: {error}")

        def run() -> dict[str, Any]:
            checker.start()  # the judge's first state: the checker's category, read before the load begins
            thread = Thread(target=cycles)
            thread.start()
            try:
                return run_wrk(web.url, self.files["mixed"], self.token, o.connections, o.mixed_seconds)
            finally:
                stop.set()
                thread.join()

        try:
            result, raw = measured(web, run)
        finally:
            checker.client.close()
        self.modes[name]["checker"] = summary = checker.summary()
        requests = result["requests"] + summary["requests"]  # the checker's were served in the same window
        self.modes[name]["phases"]["mixed"] = {"wrk": result, "raw": raw, "app": figures(raw, requests)}
        self.log(name, "mixed", f"  checker: {summary['reads_checked']} answers judged, {summary['stale_reads']} stale")

    def log(self, name: str, phase: str, more: str = "") -> None:
        """One line per measured phase."""
        result = self.modes[name]["phases"][phase]
        wrk, lat, db = result["wrk"], result["wrk"]["latency_us"], result["app"]["db_queries"]
        head = f"   {name:<8} {phase:<8} c={wrk['connections']:<3} {wrk['requests_per_s']:9.1f} req/s"
        print(f"{head}  p50 {lat['50'] / 1000:.2f} ms  p99 {lat['99'] / 1000:.2f} ms  db {db}{more}")


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
        ("--reads-seconds", 12.0, "product reads per mode, all rounds"),
        ("--latency-seconds", 6.0, "the same at one connection"),
        ("--mixed-seconds", 30.0, "the mixed load"),
    ):
        p.add_argument(flag, type=float, default=seconds, help=f"{text} (default {seconds:g})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results.json and results.md go")
    a = p.parse_args(argv)
    if not 1 <= a.connections <= 1024 or a.products < 100 or a.workers < 1 or a.threads < 1:
        p.error("need connections in 1..1024, at least 100 products, 1 worker and 1 thread")
    return a


def _n(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "-" if value is None else f"{value:z,.{digits}f}{unit}"  # z: no "-0.0"


def _ms(phase: dict[str, Any] | None) -> str:
    lat = phase["wrk"]["latency_us"] if phase else None
    return " / ".join(f"{lat[p] / 1000:.2f}" for p in ("50", "95", "99")) if lat else "-"


def markdown(results: dict[str, Any]) -> str:
    """The report: machine, settings, and one table per question."""
    s, m, modes, c = results["settings"], results["machine"], results["modes"], results["settings"]["connections"]
    reads = {name: mode["phases"].get("reads_c") for name, mode in modes.items()}
    rps = {name: phase["wrk"]["requests_per_s"] for name, phase in reads.items() if phase}
    lines = [
        f"Run of {results['started_at']} ({results['elapsed_s']:.0f} s). Machine: {m['nproc']} CPUs "
        f"({m['cpu_model']}), Python {m['python']}; load average at start {m['load_average_at_start']}, "
        f"at end {m['load_average_at_end']}. Settings: {s['products']:,} products, gunicorn {s['workers']} "
        f"workers x {s['threads']} threads (the service's access line on), wrk {c} connections, "
        f"MongoDB: {s['mongodb']}, Zipf s={s['mix']['zipf_s']}.",
        "",
        f"**Product reads** (Zipf ids, warm cache; {s['reads_seconds']:.0f} s at {c} connections, "
        f"{s['latency_seconds']:.0f} s at 1, in {s['rounds']} interleaved rounds). Latencies in ms, p50 / p95 / p99.",
        "",
        f"| mode | req/s | x naive | x floor | latency at 1 conn | latency at {c} conns | hit ratio "
        "| Redis round trips / read |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, phase in reads.items():
        if phase:
            app, (naive, floor) = phase["app"], [rps[name] / rps[o] if o in rps else None for o in ("naive", "floor")]
            lines.append(
                f"| {name}: {modes[name]['title']} | {_n(rps[name])} | {_n(naive, 2, 'x')} | {_n(floor, 2, 'x')} "
                f"| {_ms(modes[name]['phases']['reads_1'])} | {_ms(phase)} "
                f"| {_n(app['hit_ratio'] and 100 * app['hit_ratio'], 1, '%')} "
                f"| {_n(app['redis_round_trips'] / app['requests'] if app['requests'] else None, 2)} |"
            )
    lines += [
        "",
        f"**Mixed load** ({s['mixed_seconds']:.0f} s at {c} connections: 95% reads, 5% writes, the stale "
        "checker's requests included). MongoDB queries are the app's own count, background polls included; "
        "stale answers are judged whole by the tests' judge.",
        "",
        "| mode | req/s | hit ratio | MongoDB queries / 1k req | fewer than no cache | stale answers / judged |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    nocache = modes.get("nocache", {}).get("phases", {}).get("mixed")
    base = nocache["app"]["db_queries_per_1k_requests"] if nocache else None
    for name, mode in modes.items():
        if mixed := mode["phases"].get("mixed"):
            app, checker = mixed["app"], mode["checker"]
            lines.append(
                f"| {name} | {_n(mixed['wrk']['requests_per_s'])} "
                f"| {_n(app['hit_ratio'] and 100 * app['hit_ratio'], 1, '%')} "
                f"| {_n(db := app['db_queries_per_1k_requests'], 1)} | {_n(base and 100 - 100 * db / base, 1, '%')} "
                f"| {checker['stale_reads']} / {checker['reads_checked']} |"
            )
    memory = [(name, mode["redis_memory"]) for name, mode in modes.items() if mode.get("redis_memory")]
    sizes = "; ".join(f"{n} {m['bytes_per_product']:,.0f} / {m['bytes_per_query_result']:,.0f}" for n, m in memory)
    lines += ["", "**Redis memory** (used_memory's growth over the warming sweep), bytes per cached product / "]
    lines[-1] += f"per cached list or count result: {sizes}."
    errors = {n: sum(sum(p["wrk"]["errors"].values()) for p in mode["phases"].values()) for n, mode in modes.items()}
    lines += ["", f"wrk errors (socket errors, timeouts, non-2xx/3xx answers) per mode: {errors}."]
    return "\n".join(lines) + "\n"


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # an exception, so that every `finally` stops what the run started


def main(argv: list[str] | None = None) -> int:
    """Run, write results.json and results.md, print the Markdown."""
    options = parse(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, _stop)  # also when started in the background, where SIGINT is ignored
    signal.signal(signal.SIGTERM, _stop)
    with tempfile.TemporaryDirectory(prefix="jj-bench-") as workdir:  # request files, gunicorn logs
        results = Run(options, Path(workdir)).execute()
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    (out / "results.md").write_text(text := markdown(results))
    print(text + f"\nresults: {out / 'results.json'}, {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
