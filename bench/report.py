"""A run's results as the Markdown tables docs/performance.md quotes (ratios within this one run)."""

from __future__ import annotations

from typing import Any


def _n(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


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
