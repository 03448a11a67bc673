"""PNG charts of a run (matplotlib, Agg): read throughput, latency, database load, CPU split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import CPU_PARTS, ratio_label, summarize


def charts(results: dict[str, Any], out: Path) -> list[Path]:
    """PNG charts (matplotlib, Agg): read throughput, latency, database load, CPU split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summarize(results)
    names = list(rows)
    c = results["settings"]["connections"]
    written = []

    fig, ax = plt.subplots(figsize=(8, 4))
    values = [rows[n]["reads_rps"] or 0 for n in names]
    bars = ax.bar(names, values, color=["#999", "#c66", "#e9a", "#36c", "#6a6"][: len(names)])
    for bar, name in zip(bars, names, strict=True):
        ax.annotate(
            ratio_label(rows[name]["x_ceiling"]),
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    ax.set_ylabel("requests/s")
    ax.set_title(f"Product reads at {c} connections (label: x the ceiling)")
    written.append(_save(fig, out / "reads-throughput.png"))

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for ax, key, label in (
        (axes[0], "reads_latency_1", "1 connection"),
        (axes[1], "reads_latency_c", f"{c} connections"),
    ):
        width = 0.25
        for i, pct in enumerate(("p50", "p95", "p99")):
            ys = [(rows[n][key] or (0, 0, 0))[i] for n in names]
            ax.bar([x + (i - 1) * width for x in range(len(names))], ys, width, label=pct)
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("ms")
        ax.set_title(f"Product read latency, {label}")
        ax.legend()
    written.append(_save(fig, out / "reads-latency.png"))

    mixed = [n for n in names if rows[n]["db_per_1k"] is not None]
    if mixed:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].bar(mixed, [rows[n]["db_per_1k"] for n in mixed], color="#c66")
        axes[0].set_title("MongoDB queries per 1,000 requests (mixed)")
        axes[1].bar(mixed, [100 * (rows[n]["hit_ratio"] or 0) for n in mixed], color="#36c")
        axes[1].set_ylim(0, 100)
        axes[1].set_title("Hit ratio, % of reads (mixed)")
        written.append(_save(fig, out / "database-load.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    bottom = [0.0] * len(names)
    for part in CPU_PARTS:
        ys = [(rows[n]["cores"] or {}).get(part, 0.0) for n in names]
        ax.bar(names, ys, bottom=bottom, label=part)
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    ax.axhline(results["machine"]["nproc"], color="black", linewidth=0.8, linestyle="--")
    ax.set_ylabel("CPU cores busy")
    ax.set_title(f"Where the CPUs went: product reads at {c} connections")
    ax.legend()
    written.append(_save(fig, out / "cpu.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
