"""bench/hit_cpu.py --conditional measures a 200 and a 304 of every read kind, on a real redis-server.

No timing is asserted; the bytes are: a 304 carries no body, so it is smaller than its 200.
"""

from __future__ import annotations

import re

import pytest

from bench import hit_cpu

pytestmark = pytest.mark.bench


def test_every_read_kind_is_measured_both_ways(capsys: pytest.CaptureFixture[str]) -> None:
    hit_cpu.main(["--conditional", "--rounds", "1", "--requests", "20"])
    rows = {
        m.group(1).strip(): [int(n) for n in m.groups()[1:]]
        for line in capsys.readouterr().out.splitlines()
        if (m := re.match(r"\s+(.+?)\s+(\d+) us\s+(\d+) us\s+(\d+)\s+(\d+)$", line))
    }
    assert set(rows) == {"product by id", "list page of 20", "count", "categories"}
    for kind, (cpu_200, cpu_304, bytes_200, bytes_304) in rows.items():
        assert cpu_200 > 0 and cpu_304 > 0, kind
        assert bytes_304 < bytes_200, kind
