"""A run's results as the Markdown tables docs/performance.md quotes (ratios within this one run)."""

from __future__ import annotations

from typing import Any


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _ms(phase: dict[str, Any] | None) -> str:
    if not phase:
        return "-"
    lat = phase["wrk"]["latency_us"]
    return " / ".join(f"{lat[p] / 1000:.2f}" for p in ("50", "95", "99"))


def _rps(phase: dict[str, Any] | None) -> float | None:
    return phase["wrk"]["requests_per_s"] if phase else None


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

    def ratio(name: str, other: str) -> float | None:
        mine, theirs = _rps(reads[name]), _rps(reads.get(other))
        return mine / theirs if mine and theirs else None

    lines = [
        f"Run of {results['started_at']} ({results['elapsed_s']:.0f} s). Machine: {m['nproc']} CPUs "
        f"({m['cpu_model']}), {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}; "
        f"load average at start {m['load_average_at_start']}, at end {m.get('load_average_at_end', '?')}.",
        f"Settings: {s['products']:,} products, gunicorn {s['workers']} workers x {s['threads']} threads "
        f"(service access log {'off' if s['no_access_log'] else 'on'}), wrk {s['wrk_threads']} threads, {c} "
        f"connections, MongoDB: {s['mongodb']}, Zipf s={mix['zipf_s']}, seed {s['seed']}"
        + "".join(f", service env {k}={v}" for k, v in s["service_env"])
        + ".",
        "",
        f"**Product reads** (Zipf ids, warm cache; {s['reads_seconds']:.0f} s at {c} connections, "
        f"{s['latency_seconds']:.0f} s at 1, in {s['rounds']} interleaved rounds). Latencies in ms, p50 / p95 / p99.",
        "",
        f"| mode | req/s | x ceiling | x naive | x floor | latency at 1 conn | latency at {c} conns | hit ratio "
        "| Redis round trips / read |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, mode in modes.items():
        app = reads[name]["app"] if reads[name] else {}
        trips = app["redis_round_trips"] / app["requests"] if app and app["requests"] else None
        lines.append(
            f"| {name}: {mode['title']} | {_n(_rps(reads[name]))} | {_x(ratio(name, 'ceiling'))} | "
            f"{_x(ratio(name, 'naive'))} | {_x(ratio(name, 'floor'))} | {_ms(mode['phases'].get('reads_1'))} | "
            f"{_ms(reads[name])} | {_pct(app.get('hit_ratio'))} | {_n(trips, 2)} |"
        )
    nocache = modes.get("nocache", {}).get("phases", {}).get("mixed")
    lines += [
        "",
        f"**Mixed load** ({s['mixed_seconds']:.0f} s at {c} connections: {100 * mix['p_list']:.0f}% lists, "
        f"{100 * mix['p_count']:.0f}% counts, {100 * (mix['p_update'] + mix['p_create'] + mix['p_delete']):.0f}% "
        "writes, the rest product reads; the stale checker's requests included). MongoDB queries are the app's "
        "own count (background polls included); Redis commands its redis-server's.",
        "",
        "| mode | req/s | hit ratio | MongoDB queries / 1k req | reduction vs no cache | Redis cmds / req "
        "| stale answers / judged (checker) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, mode in modes.items():
        mixed = mode["phases"].get("mixed")
        if mixed:
            db = mixed["app"]["db_queries_per_1k_requests"]
            base = nocache["app"]["db_queries_per_1k_requests"] if nocache else None
            checker = mode.get("checker", {})
            lines.append(
                f"| {name} | {_n(_rps(mixed))} | {_pct(mixed['app']['hit_ratio'])} | {_n(db, 1)} | "
                f"{_pct(1 - db / base if db is not None and base else None)} | "
                f"{_n(mixed['app']['redis_commands_per_request'], 2)} | "
                f"{checker.get('stale_reads', '-')} / {checker.get('reads_checked', '-')} |"
            )
    lines += [
        "",
        "**Writes** (updates, creates and deletes only). Latencies in ms, p50 / p95 / p99.",
        "",
        f"| mode | req/s at {c} conns | latency at 1 conn | latency at {c} conns |",
        "|---|---:|---:|---:|",
    ]
    for name, mode in modes.items():
        phases = mode["phases"]
        if "writes_c" in phases:
            lines.append(
                f"| {name} | {_n(_rps(phases['writes_c']))} | {_ms(phases['writes_1'])} | {_ms(phases['writes_c'])} |"
            )
    lines += [
        "",
        "**Redis per cache hit**, warm keys read one at a time: round trips (the service's count of its Redis calls; "
        "for the naive and floor apps, commands) / commands (its redis-server's INFO commandstats, which also "
        "counts the commands a Lua script runs), mean per hit, by command.",
        "",
        "| mode | product | list | count |",
        "|---|---|---|---|",
    ]
    for name, mode in modes.items():
        probes = mode.get("probes")
        if probes:
            cells = " | ".join(_per_hit(probes.get(kind)) for kind in ("product", "list", "count"))
            lines.append(f"| {name} | {cells} |")
    errors = {n: sum(sum(p["wrk"]["errors"].values()) for p in mode["phases"].values()) for n, mode in modes.items()}
    lines += ["", "wrk errors (socket errors, timeouts, non-2xx/3xx) per mode: " + str(errors) + "."]
    return "\n".join(lines) + "\n"
