"""What a run compares (the modes) and the settings it runs them with (the command-line flags)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.workload import Mix


@dataclass(frozen=True)
class Mode:
    """One configuration under test."""

    name: str
    title: str
    app: str  # service, naive or floor (bench/wsgi.py)
    env: dict[str, str] = field(default_factory=dict)
    cached: bool = True
    writes: bool = True


MODES = {
    "ceiling": Mode("ceiling", "trivial endpoint /health/live (the ceiling)", "service", cached=False, writes=False),
    "nocache": Mode("nocache", "this service, cache off", "service", {"JOLLYJET_CACHE_ENABLED": "false"}, cached=False),
    "naive": Mode("naive", "naive Flask-Caching @cache.cached(timeout=60)", "naive"),
    "service": Mode("service", "this service, cache on", "service"),
    "floor": Mode("floor", "the floor: one Redis GET of pre-rendered bytes", "floor", writes=False),
}
# The reserve ids each writing phase may delete (deletes are 0.5% of the mix, 10% of writes).
RESERVE_SLICES = {"mixed": (0, 150), "writes_c": (150, 400), "writes_1": (400, 600)}


@dataclass(frozen=True)
class Options:
    """Everything a run depends on (the command-line flags)."""

    products: int = 10_000
    connections: int = 16
    workers: int = 2
    threads: int = 4
    wrk_threads: int = 2
    modes: tuple[str, ...] = tuple(MODES)
    reads_s: float = 12
    latency_s: float = 6
    rounds: int = 6
    mixed_s: float = 30
    writes_s: float = 5
    probe_reads: int = 200
    access_log: bool = True
    # Extra environment for the service's processes (ceiling, nocache, service), e.g.
    # JOLLYJET_LOG_LEVEL=WARNING to see what the service's own access line costs.
    service_env: tuple[tuple[str, str], ...] = ()
    seed: int = 1
    mix: Mix = field(default_factory=Mix)
