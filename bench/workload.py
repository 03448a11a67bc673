"""The request mix, shared by both load generators: wrk (workload.lua) and the Python client.

Zipf(s) product ids over the catalog, list and count reads from a small set of
popular filters, and writes (updates of Zipf ids, creates, deletes of reserve ids).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from bench.catalog import CATALOG_PREFIX, POPULAR_COUNTS, POPULAR_LISTS, RESERVE_PREFIX, product_id


@dataclass(frozen=True)
class Mix:
    """Fractions of all requests (the rest are product reads) and the Zipf exponent."""

    # Product pages dominate a catalog's reads; listings and counts are the rest.
    p_list: float = 0.03
    p_count: float = 0.02
    p_update: float = 0.04
    p_create: float = 0.005
    p_delete: float = 0.005
    zipf_s: float = 1.1

    @property
    def p_write(self) -> float:
        """The share of writes."""
        return self.p_update + self.p_create + self.p_delete


@dataclass(frozen=True)
class Request:
    """One request of the workload."""

    method: str
    path: str
    body: bytes | None = None

    @property
    def is_write(self) -> bool:
        """True for POST, PATCH and DELETE."""
        return self.method != "GET"


class Zipf:
    """Ranks 0..n-1 with P(rank k) proportional to 1/(k+1)^s (rank 0 the most popular)."""

    def __init__(self, n: int, s: float) -> None:
        weights = [1 / (k**s) for k in range(1, n + 1)]
        total = sum(weights)
        self.cdf = list(itertools.accumulate(w / total for w in weights))
        self.cdf[-1] = 1.0

    def draw(self, rng: random.Random) -> int:
        """One rank."""
        return bisect.bisect_left(self.cdf, rng.random())


class PythonWorkload:
    """A deterministic sequence of requests (fixed seed): the smoke run's generator."""

    def __init__(self, catalog: int, mix: Mix, seed: int, reserve: range, nonce: str) -> None:
        self.catalog = catalog
        self.mix = mix
        self.rng = random.Random(seed)
        self.zipf = Zipf(catalog, mix.zipf_s)
        self.reserve = iter(reserve)
        self.nonce = nonce
        self.created = 0

    def product_read(self) -> Request:
        """GET one product, id by Zipf rank."""
        return Request("GET", f"/api/v1/products/{product_id(CATALOG_PREFIX, self.zipf.draw(self.rng))}")

    def write(self, r: float) -> Request:
        """An update, create or delete, chosen by r in [0, p_write)."""
        mix = self.mix
        if r >= mix.p_update and r < mix.p_update + mix.p_create:
            self.created += 1
            body = (
                f'{{"sku": "py-{self.nonce}-{self.created}", "name": "Load test item", "price": "19.99", '
                f'"category": "audio", "tags": ["new"], "stock": 5}}'
            )
            return Request("POST", "/api/v1/products", body.encode())
        if r >= mix.p_update + mix.p_create:
            index = next(self.reserve, None)
            if index is not None:
                return Request("DELETE", f"/api/v1/products/{product_id(RESERVE_PREFIX, index)}")
        pid = product_id(CATALOG_PREFIX, self.zipf.draw(self.rng))
        return Request("PATCH", f"/api/v1/products/{pid}", f'{{"stock": {self.rng.randint(0, 60)}}}'.encode())

    def next_mixed(self) -> Request:
        """One request of the mixed workload."""
        r = self.rng.random()
        mix = self.mix
        if r < mix.p_write:
            return self.write(r)
        r -= mix.p_write
        if r < mix.p_list:
            return Request("GET", self.rng.choice(POPULAR_LISTS))
        r -= mix.p_list
        if r < mix.p_count:
            return Request("GET", self.rng.choice(POPULAR_COUNTS))
        return self.product_read()

    def mixed(self, count: int) -> Iterator[Request]:
        """count requests of the mixed workload."""
        for _ in range(count):
            yield self.next_mixed()


def sweep_requests(catalog: int) -> Iterator[Request]:
    """Every catalog product and every popular path once (cache warming)."""
    for i in range(catalog):
        yield Request("GET", f"/api/v1/products/{product_id(CATALOG_PREFIX, i)}")
    for path in (*POPULAR_LISTS, *POPULAR_COUNTS):
        yield Request("GET", path)
