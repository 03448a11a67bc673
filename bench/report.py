"""Turns a run's results into the figures readers compare, as Markdown tables (charts.py draws them)."""

from __future__ import annotations

from typing import Any

ORDER = ("ceiling", "nocache", "naive", "service", "floor")
CPU_PARTS = ("generator", "app", "redis", "mongodb")


def _lat(phase: dict[str, Any] | None) -> tuple[float, float, float] | None:
    if not phase:
        return None
    lat = phase["wrk"]["latency_us"]
    return (lat["50"] / 1000, lat["95"] / 1000, lat["99"] / 1000)


def _per_request(phase: dict[str, Any] | None) -> float | None:
    if not phase or not phase["app"]["requests"]:
        return None
    return sum(phase["app"]["redis_commands"].values()) / phase["app"]["requests"]


def _cores(phase: dict[str, Any] | None) -> dict[str, float] | None:
    if not phase:
        return None
    wall = phase["wrk"]["duration_us"] / 1e6
    cpu = dict(phase["app"]["cpu_s"])
    cpu["generator"] = phase["wrk"]["generator_cpu_s"]
    return {part: cpu.get(part, 0.0) / wall for part in CPU_PARTS if part in cpu} if wall else None


def summarize(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per mode, the figures of the report (ratios within this one run)."""
    modes = results["modes"]
    rows: dict[str, dict[str, Any]] = {}
    for name in [m for m in ORDER if m in modes]:
        phases = modes[name]["phases"]
        reads, mixed = phases.get("reads_c"), phases.get("mixed")
        # wrk's own count: socket errors, timeouts and responses that were not 2xx/3xx.
        errors = sum(sum(p["wrk"]["errors"].values()) for p in phases.values() if "wrk" in p)
        rows[name] = {
            "title": modes[name]["title"],
            "reads_rps": reads["wrk"]["requests_per_s"] if reads else None,
            "reads_latency_1": _lat(phases.get("reads_1")),
            "reads_latency_c": _lat(reads),
            "reads_hit_ratio": reads["app"]["hit_ratio"] if reads else None,
            "reads_redis_per_request": _per_request(reads),
            "reads_round_trips": reads["app"]["redis_round_trips_per_request"] if reads else None,
            "mixed_rps": mixed["wrk"]["requests_per_s"] if mixed else None,
            "hit_ratio": mixed["app"]["hit_ratio"] if mixed else None,
            "hit_ratio_by_kind": {k: v["hit_ratio"] for k, v in mixed["app"]["per_kind"].items()} if mixed else None,
            "db_per_1k": mixed["app"]["db_queries_per_1k_requests"] if mixed else None,
            "db_reads_per_1k_reads": mixed["app"]["db_queries_by_reads_per_1k_reads"] if mixed else None,
            "mixed_redis_per_request": _per_request(mixed),
            "metrics_db": sum(mixed["metrics_db_queries"].values())
            if mixed and mixed.get("metrics_db_queries")
            else None,
            "listener_db": mixed["app"]["db_queries"] + mixed["app"]["per_kind"]["checker"]["db_commands"]
            if mixed
            else None,
            "writes_rps": phases["writes_c"]["wrk"]["requests_per_s"] if "writes_c" in phases else None,
            "writes_latency_1": _lat(phases.get("writes_1")),
            "writes_latency_c": _lat(phases.get("writes_c")),
            "checker": modes[name].get("checker"),
            "probes": modes[name].get("probes"),
            "cores": _cores(reads),
            "cores_mixed": _cores(mixed),
            "errors": errors,
        }
    ceiling = rows.get("ceiling", {}).get("reads_rps")
    nocache = rows.get("nocache", {}).get("db_per_1k")
    for row in rows.values():
        rps = row["reads_rps"]
        row["x_ceiling"] = rps / ceiling if rps and ceiling else None
        for other in ("naive", "floor"):
            theirs = rows.get(other, {}).get("reads_rps")
            row[f"x_{other}"] = rps / theirs if rps and theirs else None
        db = row["db_per_1k"]
        row["db_reduction"] = 1 - db / nocache if db is not None and nocache else None
    return rows


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ms(lat: tuple[float, float, float] | None) -> str:
    return "-" if lat is None else " / ".join(f"{v:.2f}" for v in lat)


def ratio_label(value: float | None) -> str:
    """A ratio as the tables print it ("0.83x")."""
    return "-" if value is None else f"{value:.2f}x"


def _probe(probe: dict[str, Any] | None) -> str:
    if not probe or probe["redis_commands_per_hit"] is None:
        return "-"
    parts = ", ".join(f"{k} {v:.2f}" for k, v in probe["redis_commands_per_hit_by_command"].items())
    return f"{probe['redis_round_trips_per_hit']:.2f} / {probe['redis_commands_per_hit']:.2f} ({parts})"


def markdown(results: dict[str, Any]) -> str:
    """The report: machine, settings, and one table per question."""
    rows = summarize(results)
    s, m = results["settings"], results["machine"]
    c = s["connections"]
    lines = [
        f"Run of {results['started_at']} ({results['elapsed_s']:.0f} s). Machine: {m['nproc']} CPUs "
        f"({m['cpu_model']}), {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}; "
        f"load average at start {m['load_average_at_start']}, at end {m.get('load_average_at_end', '?')}.",
        f"Settings: {s['products']:,} products, gunicorn {s['workers']} workers x {s['threads']} threads "
        f"(access log {'on' if s['access_log'] else 'off'}), wrk {s['wrk_threads']} threads, {c} connections, "
        f"MongoDB: {s['mongodb']}, Zipf s={s['mix']['zipf_s']}, seed {s['seed']}"
        + "".join(f", service env {k}={v}" for k, v in s.get("service_env", ()))
        + ".",
        "",
        f"**Product reads** (Zipf ids, warm cache; {s['reads_s']:.0f} s at {c} connections, "
        f"{s['latency_s']:.0f} s at 1). Latencies in ms, p50 / p95 / p99.",
        "",
        "| mode | req/s | x ceiling | x naive | x floor | latency at 1 conn | latency at "
        f"{c} conns | hit ratio | Redis round trips / cmds per read |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name}: {r['title']} | {_n(r['reads_rps'])} | {ratio_label(r['x_ceiling'])} | "
            f"{ratio_label(r['x_naive'])} | {ratio_label(r['x_floor'])} | {_ms(r['reads_latency_1'])} | "
            f"{_ms(r['reads_latency_c'])} | "
            f"{_pct(r['reads_hit_ratio'])} | {_n(r['reads_round_trips'], 2)} / {_n(r['reads_redis_per_request'], 2)} |"
        )
    mix = s["mix"]
    lines += [
        "",
        f"**Mixed load** ({s['mixed_s']:.0f} s at {c} connections: {100 * mix['p_list']:.0f}% lists, "
        f"{100 * mix['p_count']:.0f}% counts, {100 * (mix['p_update'] + mix['p_create'] + mix['p_delete']):.0f}% "
        "writes, the rest product reads). Hit ratio: reads that caused no MongoDB "
        "command (products / lists / counts). DB queries include those no request sent (background polls); "
        "Redis commands are server-wide.",
        "",
        "| mode | req/s | hit ratio | by kind | DB queries / 1k req | reduction vs no cache | DB queries by reads"
        " / 1k reads | Redis cmds / req | stale reads / judged (checker, mixed and concurrent writes) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        if r["mixed_rps"] is None:
            continue
        kinds = r["hit_ratio_by_kind"] or {}
        by_kind = " / ".join(_pct(kinds.get(k)) for k in ("product", "list", "count"))
        chk = r["checker"] or {}
        lines.append(
            f"| {name} | {_n(r['mixed_rps'])} | {_pct(r['hit_ratio'])} | {by_kind} | {_n(r['db_per_1k'], 1)} | "
            f"{_pct(r['db_reduction'])} | {_n(r['db_reads_per_1k_reads'], 1)} | "
            f"{_n(r['mixed_redis_per_request'], 2)} | "
            f"{chk.get('stale_reads', '-')} / {chk.get('reads_checked', '-')} |"
        )
    cross = [
        f"{name} {_n(r['metrics_db'])} (listener {_n(r['listener_db'])})"
        for name, r in rows.items()
        if r["metrics_db"] is not None
    ]
    if cross:
        lines += [
            "",
            "MongoDB commands in the mixed run by the service's own `jollyjet_db_queries_total` "
            "(checker included, pings excluded): " + ", ".join(cross) + ".",
        ]
    lines += [
        "",
        "**Writes** (updates, creates and deletes only). Latencies in ms, p50 / p95 / p99.",
        "",
        f"| mode | req/s at {c} conns | latency at 1 conn | latency at {c} conns |",
        "|---|---:|---:|---:|",
    ]
    for name, r in rows.items():
        if r["writes_rps"] is not None:
            lines.append(
                f"| {name} | {_n(r['writes_rps'])} | {_ms(r['writes_latency_1'])} | {_ms(r['writes_latency_c'])} |"
            )
    lines += [
        "",
        "**Redis per cache hit**, warm keys read one at a time: round trips (counted in redis-py) / commands "
        "(INFO commandstats, which also counts the commands a Lua script runs), mean per hit, by command.",
        "",
        "| mode | product | list | count |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        probes = r["probes"]
        if probes:
            lines.append(
                f"| {name} | {_probe(probes.get('product'))} | {_probe(probes.get('list'))} | "
                f"{_probe(probes.get('count'))} |"
            )
    lines += [
        "",
        f"**Where the {m['nproc']} CPUs went** during the product-read run at {c} connections "
        "(CPU seconds per wall second; the load generator shares the machine).",
        "",
        "| mode | wrk (generator) | gunicorn (app) | redis-server | MongoDB | wrk errors (all runs of the mode) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        cores = r["cores"] or {}
        lines.append(
            f"| {name} | {_n(cores.get('generator'), 2)} | {_n(cores.get('app'), 2)} | "
            f"{_n(cores.get('redis'), 2)} | {_n(cores.get('mongodb'), 2)} | {r['errors']} |"
        )
    return "\n".join(lines) + "\n"
