"""Runs wrk with bench/workload.lua and reads back its result and its own CPU time."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson

SCRIPT = Path(__file__).with_name("workload.lua")
MARKER = "BENCH_JSON "


def wrk_binary() -> str:
    """The wrk executable (Debian's package `wrk`)."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk; scripts/test installs it)")
    return binary


def run_wrk(
    url: str, connections: int, threads: int, seconds: float, lua_args: dict[str, Any], log: Path
) -> dict[str, Any]:
    """One wrk run; returns its counts, latency percentiles (µs) and the generator's CPU seconds."""
    threads = max(1, min(threads, connections))
    args = {**lua_args, "threads": threads}
    argv = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        url,
        "--",
        *(f"{k}={v}" for k, v in args.items()),
    ]
    with log.open("ab") as out:
        out.write(("$ " + " ".join(argv) + "\n").encode())
        out.flush()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=out)
        assert process.stdout is not None
        try:
            stdout = process.stdout.read()
            # wait4 rather than wait: the child's own rusage, i.e. what the generator used.
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
        out.write(stdout)
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}: {stdout.decode(errors='replace')[-2000:]}")
    line = next((ln for ln in stdout.decode().splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(f"no result line from wrk: {stdout.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = orjson.loads(line[len(MARKER) :])
    result["generator_cpu_s"] = usage.ru_utime + usage.ru_stime
    result["connections"] = connections
    result["threads"] = threads
    seconds_run = result["duration_us"] / 1e6
    result["requests_per_s"] = result["requests"] / seconds_run if seconds_run else 0.0
    return result
