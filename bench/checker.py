"""The stale-read checker: writes and reads alongside the load, judged whole and by the shared WriteLedger.

It works on its own products (a category no load request touches), so every write to
them is in its history. Each cycle reads a product, updates it and reads it again;
every eighth cycle it reads the category's list page (a list read can be slow: the
count behind it reads the whole collection on some stores), and creates a product,
and deletes the one it created before (a later read or list that still shows it is
stale). Two judges: the ledger's stale reads (a read that began after a write of that
product had completed and returned an older version, tests/support/ledger.py), the
figure the benchmark report quotes; and the whole-answer judge (tests/support/judge.py):
a product's whole body, and the page's ids in order with every body and the total,
must be what one state of the category gives. Its starting state is the category's
page read before the first write (the load never writes there).

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
from tests.support.judge import DELETE, CatalogHistory, CatalogJudge
from tests.support.ledger import WriteLedger

LIST_QUERY = {"category": CHECKER_CATEGORY, "page_size": 100}
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
        self.judge: CatalogJudge | None = None  # made by the first cycle, from the category's page

    def start(self) -> CatalogJudge:
        """The whole-answer judge, over the category as it is before the checker's first write."""
        if self.judge is None:
            reply = self.client.send("GET", LIST_PATH)
            if reply.status != 200:
                raise RuntimeError(f"the checker's category could not be read: {reply.status}")
            total = int(orjson.loads(reply.headers["x-pagination"])["total"])
            items = orjson.loads(reply.body)
            if total != len(items):
                raise RuntimeError(f"the checker's category holds {total} products, more than one page")
            self.judge = CatalogJudge(CatalogHistory(items))
        return self.judge

    def read(self, product_id: str) -> None:
        """GET one product and judge it."""
        judge = self.start()
        began = time.monotonic()
        reply = self.client.send("GET", f"/api/v1/products/{product_id}")
        ended = time.monotonic()
        if reply.status == 404:
            self.ledger.check_read(product_id, began, None)
            judge.product(product_id, began, ended, 404, None, reply.headers.get("x-cache"))
        elif reply.status == 200:
            product = orjson.loads(reply.body)
            self.ledger.check_read(product_id, began, int(product["version"]))
            judge.product(product_id, began, ended, 200, product, reply.headers.get("x-cache"))
        else:
            self.errors += 1

    def read_list(self) -> None:
        """GET the checker category's page and judge every item on it."""
        judge = self.start()
        began = time.monotonic()
        reply = self.client.send("GET", LIST_PATH)
        ended = time.monotonic()
        if reply.status != 200:
            self.errors += 1
            return
        page = orjson.loads(reply.body)
        total = int(orjson.loads(reply.headers["x-pagination"])["total"])
        judge.page(LIST_QUERY, began, ended, page, total, reply.headers.get("x-cache"))
        items = [(item["id"], int(item["version"])) for item in page]
        self.ledger.check_items(items, began, "list")

    def write(
        self, method: str, path: str, change: dict[str, Any] | None = None, product_id: str | None = None
    ) -> dict[str, Any] | None:
        """Send a write (recorded in the judge's history); the product it left ({} for a delete), or None on failure."""
        history = self.start().history
        token = history.begin_write(product_id, DELETE if change is None else change)
        try:
            reply = self.client.send(method, path, None if change is None else orjson.dumps(change))
        except OSError:
            history.unknown_write(token)  # sent, never answered
            raise
        completed = time.monotonic()
        if reply.status not in (200, 201, 204):
            self.errors += 1
            # A refusal did not happen; a server error (or no answer) may have committed.
            (history.fail_write if 400 <= reply.status < 500 else history.unknown_write)(token)
            return None
        product = orjson.loads(reply.body) if reply.body else {}
        history.complete_write(token, product or None, at=completed)
        return product

    def cycle(self) -> None:
        """Read, update, read one product; now and then a list, a create and a delete."""
        pid = self.ids[self.cycles % len(self.ids)]
        self.read(pid)
        product = self.write("PATCH", f"/api/v1/products/{pid}", {"stock": self.cycles % 50}, pid)
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
            if self.write("DELETE", f"/api/v1/products/{self.created}", None, self.created) is not None:
                self.ledger.record_delete(self.created, time.monotonic())
            self.read(self.created)
            self.read_list()
        body = {"sku": f"chk-{self.nonce}-{self.cycles}", "name": "Checker item", "price": "5.00"}
        product = self.write("POST", "/api/v1/products", {**body, "category": CHECKER_CATEGORY})
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
            # The whole-answer judge: answers judged and mismatched by kind, a few mismatches.
            "whole_judged": dict(judge.judged) if (judge := self.judge) else {},
            "whole_mismatches": sum(judge.mismatched.values()) if judge else 0,
            "whole_mismatched": dict(judge.mismatched) if judge else {},
            "whole_examples": [str(m) for m in judge.examples()[:5]] if judge else [],
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
