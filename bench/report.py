"""A run's results as the Markdown tables docs/performance.md quotes (ratios within this one run)."""

from __future__ import annotations

from typing import Any


def _n(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def _ms(phase: dict[str, Any] | None) -> str:
    lat = phase["wrk"]["latency_us"] if phase else None
    return " / ".join(f"{lat[p] / 1000:.2f}" for p in ("50", "95", "99")) if lat else "-"


def _per_hit(probe: dict[str, Any] | None) -> str:
    if not probe or probe["redis_commands_per_hit"] is None:
        return "-"
    parts = ", ".join(f"{k} {v:.2f}" for k, v in probe["redis_commands_per_hit_by_command"].items())
    return f"{probe['redis_round_trips_per_hit']:.2f} / {probe['redis_commands_per_hit']:.2f} ({parts})"


def markdown(results: dict[str, Any]) -> str:
    """The report: machine, settings, and one table per question."""
    s, m, modes = results["settings"], results["machine"], results["modes"]
    c, mix = s["connections"], s["mix"]
    reads = {name: mode["phases"].get("reads_c") for name, mode in modes.items()}

    def ratio(name: str, other: str) -> str:
        mine, theirs = (reads.get(n) and reads[n]["wrk"]["requests_per_s"] for n in (name, other))
        return f"{mine / theirs:.2f}x" if mine and theirs else "-"

    lines = [
        f"Run of {results['started_at']} ({results['elapsed_s']:.0f} s). Machine: {m['nproc']} CPUs "
        f"({m['cpu_model']}), Linux {m['kernel']}, Python {m['python']}; load average at start "
        f"{m['load_average_at_start']}, at end {m['load_average_at_end']}.",
        f"Settings: {s['products']:,} products, gunicorn {s['workers']} workers x {s['threads']} threads "
        f"(the service's access line on), wrk {c} connections, MongoDB: {s['mongodb']}, Zipf s={mix['zipf_s']}, "
        f"seed {s['seed']}.",
        "",
        f"**Product reads** (Zipf ids, warm cache; {s['reads_seconds']:.0f} s at {c} connections, "
        f"{s['latency_seconds']:.0f} s at 1, in {s['rounds']} interleaved rounds). Latencies in ms, p50 / p95 / p99.",
        "",
        f"| mode | req/s | x naive | x floor | latency at 1 conn | latency at {c} conns | hit ratio "
        "| Redis round trips / read |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, mode in modes.items():
        app: dict[str, Any] = reads[name]["app"] if reads[name] else {"hit_ratio": None, "requests": 0}
        trips = app["redis_round_trips"] / app["requests"] if app["requests"] else None
        lines.append(
            f"| {name}: {mode['title']} | {_n(reads[name] and reads[name]['wrk']['requests_per_s'])} "
            f"| {ratio(name, 'naive')} | {ratio(name, 'floor')} | {_ms(mode['phases'].get('reads_1'))} "
            f"| {_ms(reads[name])} | {_n(app['hit_ratio'] and 100 * app['hit_ratio'], 1, '%')} | {_n(trips, 2)} |"
        )
    lines += [
        "",
        f"**Mixed load** ({s['mixed_seconds']:.0f} s at {c} connections: {100 * mix['p_list']:.0f}% lists, "
        f"{100 * mix['p_count']:.0f}% counts, {100 * (mix['p_update'] + mix['p_create'] + mix['p_delete']):.0f}% "
        "writes, the rest product reads; the stale checker's requests included). MongoDB queries are the app's "
        "own count, background polls included. Stale answers: judged whole by the tests' judge.",
        "",
        "| mode | req/s | hit ratio | MongoDB queries / 1k req | fewer than no cache | Redis cmds / req "
        "| stale answers / judged |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    nocache = modes.get("nocache", {}).get("phases", {}).get("mixed")
    base = nocache["app"]["db_queries_per_1k_requests"] if nocache else None
    for name, mode in modes.items():
        if mixed := mode["phases"].get("mixed"):
            app, checker = mixed["app"], mode["checker"]
            lines.append(
                f"| {name} | {_n(mixed['wrk']['requests_per_s'])} "
                f"| {_n(app['hit_ratio'] and 100 * app['hit_ratio'], 1, '%')} | "
                f"{_n(db := app['db_queries_per_1k_requests'], 1)} | {_n(base and 100 - 100 * db / base, 1, '%')} | "
                f"{_n(app['redis_commands_per_request'], 2)} | {checker['stale_reads']} / {checker['reads_checked']} |"
            )
    lines += [
        "",
        "**Redis per cache hit**, warm keys read one at a time: round trips (the service's count of its Redis "
        "calls; for the naive and floor apps, commands) / commands (INFO commandstats, which also counts the "
        "commands a Lua script runs), mean per hit, by command. Memory: used_memory's growth over the warming "
        "sweep of every product, and of the popular lists and counts.",
        "",
        "| mode | product | list | count | Redis bytes per cached product | per list or count result |",
        "|---|---|---|---|---:|---:|",
    ]
    for name, mode in modes.items():
        if probes := mode.get("probes"):
            memory = mode.get("redis_memory", {})
            lines.append(
                f"| {name} | "
                + " | ".join(_per_hit(probes.get(k)) for k in ("product", "list", "count"))
                + f" | {_n(memory.get('bytes_per_product'))} | {_n(memory.get('bytes_per_query_result'))} |"
            )
    errors = {n: sum(sum(p["wrk"]["errors"].values()) for p in mode["phases"].values()) for n, mode in modes.items()}
    lines += ["", f"wrk errors (socket errors, timeouts, non-2xx/3xx answers) per mode: {errors}."]
    return "\n".join(lines) + "\n"
