"""Writes and reads whose answers the whole-answer judge (tests/support/judge.py) judges.

The same loops run in process (Flask's test client) and against web processes over HTTP
(HttpClient, the few test-client calls they use): a test of one app object and a test of
gunicorn's workers send the same traffic and judge it the same way.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import requests

from tests.fault.conftest import wait_ready
from tests.support.factories import product_payload
from tests.support.judge import CatalogHistory, CatalogJudge
from tests.support.procfile import ProcfileProcess, procfile_env, procfile_processes
from tests.support.redis_server import free_port

PRODUCTS = "/api/v1/products"
READ_KINDS = ("product", "page", "count", "categories")


class Answer(Protocol):
    """What the loops read from a response (werkzeug's TestResponse has it; so does Reply)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Any: ...  # werkzeug's Headers or a dict: .get and [] by name

    def get_json(self) -> Any: ...


class ApiClient(Protocol):
    """The calls the loops make (Flask's test client has them; so does HttpClient)."""

    def get(self, path: str) -> Answer: ...

    def post(self, path: str, *, json: Any, headers: Mapping[str, str]) -> Answer: ...

    def patch(self, path: str, *, json: Any, headers: Mapping[str, str]) -> Answer: ...


@dataclass
class Reply:
    """An HTTP answer; status 0 when none came (connection refused, reset, timed out)."""

    status_code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None

    def get_json(self) -> Any:
        return self.body


class HttpClient:
    """get/post/patch over HTTP to running web processes, a new connection each (as separate clients are)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url
        self.timeout_s = timeout_s

    def get(self, path: str) -> Reply:
        return self._send("GET", path)

    def post(self, path: str, *, json: Any, headers: Mapping[str, str]) -> Reply:
        return self._send("POST", path, headers, json=json)

    def patch(self, path: str, *, json: Any, headers: Mapping[str, str]) -> Reply:
        return self._send("PATCH", path, headers, json=json)

    def _send(self, method: str, path: str, headers: Mapping[str, str] | None = None, **kwargs: Any) -> Reply:
        # requests.request: a session (so a connection) per call, so gunicorn's workers share the
        # requests by accept(), not by whichever worker took a kept-alive connection first.
        try:
            response = requests.request(
                method, self.base_url + path, headers=dict(headers or {}), timeout=self.timeout_s, **kwargs
            )
        except requests.RequestException:
            return Reply(0)
        is_json = response.headers.get("Content-Type", "").startswith("application/json")
        return Reply(response.status_code, response.headers, response.json() if is_json else None)


@contextmanager
def web_processes(
    redis_url: str, mongodb_uri: str, token: str, log_dir: Path, workers: int = 2
) -> Iterator[tuple[str, ProcfileProcess]]:
    """The Procfile's web with `workers` gunicorn workers on these stores: its URL once ready, and its process."""
    port = free_port()
    env = procfile_env(
        PORT=str(port),
        MONGODB_URI=mongodb_uri,
        REDIS_URL=redis_url,
        JOLLYJET_ENV="testing",
        JOLLYJET_API_TOKENS=token,
        JOLLYJET_CACHE_KEY_PREFIX=f"web{uuid.uuid4().hex[:8]}",
        JOLLYJET_LOG_LEVEL="WARNING",
        WEB_CONCURRENCY=str(workers),
        # gunicorn's access log (off in the Procfile) as a test instrument: %(p)s names the serving worker.
        GUNICORN_CMD_ARGS="--access-logfile - --access-logformat '%(p)s \"%(r)s\" %(s)s'",
    )
    with procfile_processes(["web"], env, log_dir) as processes:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, processes)
        yield url, processes["web"]


def served_by_worker(web: ProcfileProcess, request_prefix: str) -> Counter[str]:
    """How many requests starting with `request_prefix` ("GET /api/...") each worker served (web_processes' log)."""
    return Counter(line.split(" ", 1)[0] for line in web.log_text().splitlines() if f'"{request_prefix}' in line)


def seed_products(client: ApiClient, auth: Mapping[str, str], categories: Sequence[str], count: int) -> list[Any]:
    """`count` products spread over `categories` in turn (prices and stock differing); their API bodies."""
    bodies = []
    for n in range(count):
        payload = product_payload(category=categories[n % len(categories)], price=f"{10 + n}.00", stock=n % 3)
        response = client.post(PRODUCTS, json=payload, headers=auth)
        assert response.status_code == 201, (response.status_code, response.get_json())
        bodies.append(response.get_json())
    return bodies


def patch_recorded(
    client: ApiClient, auth: Mapping[str, str], history: CatalogHistory, pid: str, change: dict[str, Any]
) -> dict[str, Any] | None:
    """One PATCH recorded in the history; the body it returned, or None when it failed."""
    token = history.begin_write(pid, change)
    response = client.patch(f"{PRODUCTS}/{pid}", json=change, headers=auth)
    if response.status_code == 200:
        history.complete_write(token, response.get_json())
        return dict(response.get_json())
    # A refusal did not happen; a 5xx (or no answer) may have committed before it failed.
    if response.status_code >= 500 or response.status_code == 0:
        history.unknown_write(token)
    else:
        history.fail_write(token)
    return None


class JudgedReader:
    """Reads of the given kinds, each judged whole; counts what failed."""

    def __init__(
        self,
        client: Callable[[], ApiClient],
        judge: CatalogJudge,
        ids: list[str],
        categories: Sequence[str],
        page: dict[str, Any],
        kinds: Sequence[str] = READ_KINDS,
    ) -> None:
        self.client, self.judge, self.ids, self.categories = client, judge, ids, categories
        self.page_query = page  # sort and page size of the list reads (the category is drawn)
        self.kinds = kinds
        self.failures: list[str] = []
        self.lock = threading.Lock()

    def run(self, seed: int, stop: threading.Event, also: Callable[[str, str, float, Any], None] | None = None) -> None:
        """Read until `stop` is set; `also(kind, what, began, answer)` sees each 200 product and page answer too."""
        client, rng = self.client(), random.Random(seed)
        while not stop.is_set():
            kind = rng.choice(self.kinds)
            category = rng.choice(self.categories)
            began = time.monotonic()
            if kind == "product":
                pid = rng.choice(self.ids)
                response = client.get(f"{PRODUCTS}/{pid}")
                ended = time.monotonic()
                if self._failed(kind, response.status_code, (200, 404)):
                    continue
                answer = response.get_json() if response.status_code == 200 else None
                self.judge.product(pid, began, ended, response.status_code, answer, response.headers.get("X-Cache"))
                if also and answer:
                    also(kind, pid, began, answer)
            elif kind == "page":
                query = {"category": category, **self.page_query}
                response = client.get(f"{PRODUCTS}?{urlencode(query)}")
                ended = time.monotonic()
                if self._failed(kind, response.status_code):
                    continue
                total = json.loads(response.headers["X-Pagination"])["total"]
                items = response.get_json()
                self.judge.page(query, began, ended, items, total, response.headers.get("X-Cache"))
                if also:
                    also(kind, category, began, (items, response.headers.get("X-Cache")))
            elif kind == "count":
                response = client.get(f"{PRODUCTS}/count?{urlencode({'category': category})}")
                ended = time.monotonic()
                if self._failed(kind, response.status_code):
                    continue
                count = response.get_json()["count"]
                self.judge.count({"category": category}, began, ended, count, response.headers.get("X-Cache"))
            else:
                response = client.get("/api/v1/categories")
                ended = time.monotonic()
                if self._failed(kind, response.status_code):
                    continue
                self.judge.categories(began, ended, response.get_json(), response.headers.get("X-Cache"))

    def _failed(self, kind: str, status: int, expected: tuple[int, ...] = (200,)) -> bool:
        if status in expected:
            return False
        with self.lock:
            self.failures.append(f"{kind} {status}")
        return True


def run_threads(
    threads: Sequence[threading.Thread], stop: threading.Event, cap_s: float, enough: Callable[[], bool] | None = None
) -> None:
    """Start the threads; set `stop` once enough() holds (asked every 0.1 s) or after cap_s; join them.

    A test asserts on counts, not timings: `enough` ends the run as soon as the traffic it
    needs has happened, and cap_s bounds it on a machine too busy to get there."""
    deadline = time.monotonic() + cap_s
    for thread in threads:
        thread.start()
    try:
        while not stop.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
            if (enough is not None and enough()) or time.monotonic() >= deadline:
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def judge_report(judge: CatalogJudge, history: CatalogHistory) -> str:
    """What the judge judged and found, for the test's output."""
    lines = [f"judged: {judge.summary()}; writes {history.counts()}"]
    lines += [str(m) for m in judge.examples()]
    return "\n".join(lines)
