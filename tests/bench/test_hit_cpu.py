"""bench/hit_cpu.py measures every case it names, on a real redis-server (no timing is asserted)."""

from __future__ import annotations

import re

import pytest

from bench import hit_cpu

pytestmark = pytest.mark.bench


def test_every_case_is_measured(capsys: pytest.CaptureFixture[str]) -> None:
    hit_cpu.main(["--rounds", "1", "--requests", "20"])
    lines = capsys.readouterr().out.splitlines()
    figures = {m.group(1).strip(): int(m.group(2)) for line in lines if (m := re.match(r"\s+(.+?)\s+(\d+) us$", line))}
    assert set(figures) == {
        "service GET /api/v1/products/<id> (hit)",
        "service GET /health/live",
        "floor GET /api/v1/products/<id>",
        "floor GET /health/live",
    }
    assert all(us > 0 for us in figures.values())
