"""The stale-read checker: writes and reads alongside the load, judged by the shared WriteLedger.

It works on its own products (a category no load request touches), so every write to
them is in its ledger. Each cycle reads a product, updates it and reads it again;
every eighth cycle it reads the category's list page and judges each item (a list
read can be slow: the count behind it reads the whole collection on some stores), and
creates a product, and deletes the one it created before (a later read or
list that still shows it is stale). A read is stale when it began after a write of
that product had completed and returned an older version (tests/support/ledger.py).

Run as a process next to wrk: `python -m bench.checker --url ... --token ... --stop-file F --out f.json`
(it stops when F exists, or after --max-seconds).
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench.catalog import CHECKER_CATEGORY, checker_ids
from bench.client import HttpClient
from tests.support.ledger import WriteLedger

LIST_PATH = f"/api/v1/products?category={CHECKER_CATEGORY}&page_size=100"


class Checker:
    """One client, one ledger; cycle() runs one round of writes and judged reads."""

    def __init__(self, client: HttpClient, product_ids: list[str], ledger: WriteLedger | None = None) -> None:
        self.client = client
        self.ids = product_ids
        self.ledger = ledger or WriteLedger()
        self.errors = 0
        self.cycles = 0
        self.created: str | None = None
        self.nonce = uuid.uuid4().hex[:8]

    def read(self, product_id: str) -> None:
        """GET one product and judge it."""
        began = time.monotonic()
        reply = self.client.send("GET", f"/api/v1/products/{product_id}")
        if reply.status == 404:
            self.ledger.check_read(product_id, began, None)
        elif reply.status == 200:
            self.ledger.check_read(product_id, began, int(orjson.loads(reply.body)["version"]))
        else:
            self.errors += 1

    def read_list(self) -> None:
        """GET the checker category's page and judge every item on it."""
        began = time.monotonic()
        reply = self.client.send("GET", LIST_PATH)
        if reply.status != 200:
            self.errors += 1
            return
        items = [(item["id"], int(item["version"])) for item in orjson.loads(reply.body)]
        self.ledger.check_items(items, began, "list")

    def write(self, method: str, path: str, body: bytes | None = None) -> dict[str, Any] | None:
        """Send a write; returns the product it left (None for a delete), or None on failure."""
        reply = self.client.send(method, path, body)
        if reply.status not in (200, 201, 204):
            self.errors += 1
            return None
        return orjson.loads(reply.body) if reply.body else {}

    def cycle(self) -> None:
        """Read, update, read one product; now and then a list, a create and a delete."""
        pid = self.ids[self.cycles % len(self.ids)]
        self.read(pid)
        product = self.write("PATCH", f"/api/v1/products/{pid}", orjson.dumps({"stock": self.cycles % 50}))
        if product:
            self.ledger.record_write(pid, int(product["version"]), time.monotonic())
        self.read(pid)
        if self.cycles % 8 == 0:
            self.read_list()
            self.create_and_delete()
        self.cycles += 1

    def create_and_delete(self) -> None:
        """Delete the product created last time (then read it), and create a new one (then read it)."""
        if self.created is not None:
            if self.write("DELETE", f"/api/v1/products/{self.created}") is not None:
                self.ledger.record_delete(self.created, time.monotonic())
            self.read(self.created)
            self.read_list()
        body = {"sku": f"chk-{self.nonce}-{self.cycles}", "name": "Checker item", "price": "5.00"}
        product = self.write("POST", "/api/v1/products", orjson.dumps({**body, "category": CHECKER_CATEGORY}))
        self.created = None
        if product:
            self.created = product["id"]
            self.ledger.record_write(product["id"], int(product["version"]), time.monotonic())
            self.read(product["id"])

    def summary(self) -> dict[str, Any]:
        """What was checked and what was stale."""
        by_where: dict[str, int] = {}
        for stale in self.ledger.stale:
            by_where[stale.where] = by_where.get(stale.where, 0) + 1
        return {
            "cycles": self.cycles,
            "reads_checked": self.ledger.reads_checked,
            "writes_recorded": self.ledger.writes_recorded,
            "stale_reads": self.ledger.stale_count,
            "stale_by_where": by_where,
            "errors": self.errors,
            "examples": [vars(s) for s in self.ledger.stale[:5]],
        }


def run_until(checker: Checker, stop_file: Path, max_seconds: float, pause_s: float) -> dict[str, Any]:
    """Cycle until stop_file exists (or max_seconds pass), pausing between cycles to stay a light load."""
    deadline = time.monotonic() + max_seconds
    while not stop_file.exists() and time.monotonic() < deadline:
        checker.cycle()
        time.sleep(pause_s)
    return checker.summary()


def main() -> None:
    """Command line: run until --stop-file exists, write the summary as JSON to --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--products", type=int, default=16)
    parser.add_argument("--stop-file", type=Path, required=True)
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--pause", type=float, default=0.05)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    client = HttpClient(args.url, token=args.token, role="checker")
    checker = Checker(client, checker_ids(args.products))
    try:
        summary = run_until(checker, args.stop_file, args.max_seconds, args.pause)
    finally:
        client.close()
    args.out.write_bytes(orjson.dumps(summary))


if __name__ == "__main__":
    main()
