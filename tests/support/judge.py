"""A whole-answer judge: every answer must be what ONE catalog state the test's writes produced gives.

The test records each write it sends (when it began and completed on the client's
`time.monotonic()`, and the API body it returned, or that it deleted) in a
CatalogHistory over the products seeded before. An answer to a request that began at
t0 and ended at t1 may show any state made of every write completed before t0, plus
any subset of the writes that began before t1 and had not completed before t0, closed
under happens-before (w1 completed before w2 began, or one product's version v before
v+1, or every write of a product before its delete). CatalogJudge computes the answer
each such state gives, exactly as the service computes it from MongoDB
(jollyjet/products/repository.py: build_filter, _sort_keys, categories), and the
answer must equal one of them as a whole: a product body, a list page (ids, order,
versions, bodies, total), a count, the categories. So a page mixing two moments (ids
from before a write, an item's body from after it) is caught even when each item on
its own is "fresh".

A write whose outcome the client never learned (timeout, 5xx) stays optional forever
after it began: its effect is its request applied to the product (the version and
updated_at it would get are unknown and match anything; an unknown create is
recognized by its sku). A write the server refused (4xx) is withdrawn. A judgment
waits for writes that began before its answer arrived and are still in flight (their
bodies decide the states), at most `wait_s`, then counts them as unknown outcomes.

Thread-safe: writers and readers record from many threads.
"""

from __future__ import annotations

import bisect
import itertools
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

MAX_STATES = 4096  # candidate states per answer; beyond it the judge refuses to judge
DELETE = "DELETE"  # the `change` of a write that deletes its product
_SORT_FIELDS = ("price", "name", "created_at", "updated_at", "stock")
_DEFAULT_SORT = "-created_at"  # ProductListQuerySchema.sort's load_default
_DEFAULT_PAGE_SIZE = 20  # schemas.DEFAULT_PAGE_SIZE (when the configured cap is not below it)
_QUERY_ARGS = {"category", "tag", "min_price", "max_price", "in_stock", "is_active", "q", "sort", "page", "page_size"}


class TooManyStates(RuntimeError):
    """More candidate states than MAX_STATES: the test's concurrency is beyond what the judge enumerates."""


class _Any:
    """A field whose value the history cannot know (an unknown outcome's version, a timestamp)."""

    def __repr__(self) -> str:
        return "?"


ANY: Any = _Any()
Body = dict[str, Any]


@dataclass
class Write:
    """One write as the client saw it."""

    seq: int
    product_id: str | None  # None: a create not answered yet (or never)
    change: Mapping[str, Any] | str  # the request: fields sent (PATCH/PUT/POST) or DELETE
    began: float
    completed: float | None = None
    body: Body | None = None  # what it returned (None for a delete)
    outcome: str = "pending"  # pending, done, failed, unknown

    @property
    def is_delete(self) -> bool:
        """Whether this write deletes its product."""
        return self.change == DELETE

    @property
    def version(self) -> int | None:
        """The version a completed create/update left."""
        return None if self.body is None else int(self.body["version"])

    def known(self) -> bool:
        """Completed, and so exactly known."""
        return self.outcome == "done"

    def describe(self) -> str:
        """Short text for a mismatch report: #seq, what, which product, the version it left, how it ended."""
        target = _short(self.product_id) if self.product_id else "new"
        if isinstance(self.change, str):
            what = "delete"
        elif self.version == 1 or self.product_id is None:
            what = "create"
        else:
            what = "update " + ",".join(sorted(self.change)) if len(self.change) <= 3 else "update"
        left = f" v{self.version}" if self.version is not None else ""
        return f"#{self.seq} {what} {target}{left} ({self.outcome})"


@dataclass
class State:
    """One candidate catalog state: product id -> its API body (fields may be ANY)."""

    products: dict[str, Body]
    applied: tuple[int, ...]  # seq of the optional writes it includes
    # Products an unknown create may have made, by sku (their id is unknown).
    phantoms: dict[str, Body] = field(default_factory=dict)

    def bodies(self) -> list[Body]:
        """Every product of the state."""
        return [*self.products.values(), *self.phantoms.values()]


class CatalogHistory:
    """The writes a test sent, with their times; gives the candidate states of an answer."""

    def __init__(self, initial: Iterable[Mapping[str, Any]] = (), *, wait_s: float = 30.0) -> None:
        self._cond = threading.Condition()
        self.wait_s = wait_s
        self._seq = itertools.count(1)
        self._initial: dict[str, Body] = {str(b["id"]): dict(b) for b in initial}
        self._by_seq: dict[int, Write] = {}
        self._open: dict[int, Write] = {}  # pending writes
        self._unknown: list[Write] = []  # unknown outcomes: optional forever after they began
        # Completed writes sorted by when they began (to find those overlapping an answer)...
        self._done: list[Write] = []
        self._done_began: list[float] = []
        self._longest = 0.0  # the longest completed write, which bounds that search
        # ...and per product sorted by when they completed (for the base state).
        self._product_done: dict[str, list[Write]] = {}
        self._product_done_at: dict[str, list[float]] = {}

    # --- recording -----------------------------------------------------------------------
    def begin_write(self, product_id: str | None, change: Mapping[str, Any] | str, *, at: float | None = None) -> Write:
        """Call right before sending a write: POST (product_id None), PUT/PATCH fields, or DELETE."""
        if change != DELETE and not isinstance(change, Mapping):
            raise ValueError(f"a write changes fields or is DELETE, not {change!r}")
        with self._cond:
            write = Write(next(self._seq), product_id, change if isinstance(change, str) else dict(change), _now(at))
            self._by_seq[write.seq] = write
            self._open[write.seq] = write
            return write

    def complete_write(self, token: Write, body: Mapping[str, Any] | None, *, at: float | None = None) -> None:
        """Call right after the answer: the body a create/update returned, None for a delete's 204."""
        with self._cond:
            if (body is None) != token.is_delete:
                raise ValueError(f"write {token.describe()}: a delete completes with None, others with a body")
            token.completed = _now(at)
            if body is not None:
                if token.product_id is not None and token.product_id != body["id"]:
                    raise ValueError(f"write {token.describe()} answered for product {body['id']}")
                token.body = dict(body)
                token.product_id = str(body["id"])
            token.outcome = "done"
            pid = str(token.product_id)
            index = bisect.bisect_right(self._product_done_at.setdefault(pid, []), token.completed)
            self._product_done_at[pid].insert(index, token.completed)
            self._product_done.setdefault(pid, []).insert(index, token)
            index = bisect.bisect_right(self._done_began, token.began)
            self._done_began.insert(index, token.began)
            self._done.insert(index, token)
            self._longest = max(self._longest, token.completed - token.began)
            self._close(token)

    def fail_write(self, token: Write) -> None:
        """The server refused the write (a 4xx): it did not happen."""
        with self._cond:
            token.outcome = "failed"
            self._close(token)

    def unknown_write(self, token: Write) -> None:
        """The client never learned the outcome (timeout, 5xx): it may have happened, any time after it began."""
        with self._cond:
            token.outcome = "unknown"
            self._unknown.append(token)
            self._close(token)

    def record_write(
        self,
        began: float,
        completed: float,
        body: Mapping[str, Any] | None,
        *,
        product_id: str | None = None,
        change: Mapping[str, Any] | str | None = None,
    ) -> Write:
        """A whole completed write at once (body None: a delete of product_id)."""
        if change is None:
            change = DELETE if body is None else {k: v for k, v in body.items() if k not in _SERVER_FIELDS}
        token = self.begin_write(product_id if body is None else str(body["id"]), change, at=began)
        self.complete_write(token, body, at=completed)
        return token

    def _close(self, token: Write) -> None:
        self._open.pop(token.seq, None)
        self._cond.notify_all()

    def counts(self) -> dict[str, int]:
        """How many writes ended each way (done, failed, unknown, pending)."""
        with self._cond:
            result: dict[str, int] = {}
            for w in self._by_seq.values():
                result[w.outcome] = result.get(w.outcome, 0) + 1
            return result

    def describe(self, seqs: Iterable[int]) -> str:
        """Short text naming some writes."""
        with self._cond:
            return ", ".join(self._by_seq[s].describe() for s in seqs)

    # --- states --------------------------------------------------------------------------
    def states(self, began: float, ended: float) -> list[State]:
        """Every candidate state of an answer to a request sent at `began` and answered at `ended`."""
        with self._cond:
            # Writes still in flight that began before the answer decide by their results: wait.
            deadline = time.monotonic() + self.wait_s
            while any(w.began < ended for w in self._open.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            base = self._base(began)
            optional = [w for w in self._unknown if w.began < ended]
            # Still pending after the wait: for this answer, an unknown outcome.
            optional += [replace(w, outcome="unknown") for w in self._open.values() if w.began < ended]
            # Completed writes that overlap the answer (began before it ended, completed after it began).
            stop = bisect.bisect_left(self._done_began, ended)
            for index in range(stop - 1, -1, -1):
                w = self._done[index]
                if w.began < began - self._longest:
                    break
                if w.completed is not None and w.completed >= began:
                    optional.append(w)
            # A lower version of a product that began after the answer ended keeps its later versions out.
            barred = {
                w.seq
                for w in optional
                for later in self._done[stop:]
                if w.known() and later.product_id == w.product_id and _rank(later) < _rank(w)
            }
        return _enumerate(base, [w for w in optional if w.seq not in barred])

    def _base(self, began: float) -> dict[str, Write | Body]:
        """Each product's newest completed write before `began` (or its initial body)."""
        base: dict[str, Write | Body] = dict(self._initial)
        for pid, times in self._product_done_at.items():
            index = bisect.bisect_left(times, began)
            if index == 0:
                continue
            writes = self._product_done[pid]
            best = writes[index - 1]
            # Completion order may differ from version order for overlapping writes: look back
            # until writes completed before the best began (those happened before it).
            for earlier in range(index - 2, -1, -1):
                w = writes[earlier]
                if w.completed is not None and best.began > w.completed:
                    break
                if _rank(w) > _rank(best):
                    best = w
            base[pid] = best
        return base


_SERVER_FIELDS = ("id", "version", "created_at", "updated_at")


def _now(at: float | None) -> float:
    return time.monotonic() if at is None else at


def _rank(write: Write) -> float:
    """Order of one product's completed writes: by version, a delete last."""
    return float("inf") if write.is_delete else float(write.version or 0)


def _must_precede(a: Write, b: Write) -> bool:
    """Whether a happened before b: a completed before b began, or b's product order says so."""
    if a.completed is not None and a.completed < b.began:
        return True
    if not (a.known() and b.known()) or a.product_id != b.product_id:
        return False
    return _rank(a) < _rank(b)


def _enumerate(base: dict[str, Write | Body], optional: list[Write]) -> list[State]:
    """The states: base plus each downward-closed subset of the optional writes."""
    # A base write forces the optional writes that must precede it (an earlier version).
    forced = {
        w.seq
        for w in optional
        for b in base.values()
        if isinstance(b, Write) and b.product_id == w.product_id and _must_precede(w, b)
    }
    order = sorted(optional, key=lambda w: w.began)
    preds = {w.seq: [p.seq for p in optional if p is not w and _must_precede(p, w)] for w in optional}
    # A known write of a product preceded by a write the answer cannot include is out too
    # (a lower version that began after the answer: this one was applied after it).
    subsets: list[tuple[int, ...]] = []

    def walk(i: int, chosen: set[int]) -> None:
        if len(subsets) > MAX_STATES:
            raise TooManyStates(f"more than {MAX_STATES} candidate states ({len(optional)} optional writes)")
        if i == len(order):
            subsets.append(tuple(sorted(chosen)))
            return
        w = order[i]
        if all(p in chosen for p in preds[w.seq]):
            chosen.add(w.seq)
            walk(i + 1, chosen)
            chosen.discard(w.seq)
        if w.seq not in forced:
            walk(i + 1, chosen)

    # preds may point later in `order` (a version order against begin order): repeat the walk
    # in a topological order instead.
    order = _topological(order, preds)
    walk(0, set())
    by_seq = {w.seq: w for w in optional}
    states: list[State] = []
    for subset in subsets:
        states.extend(_build(base, [by_seq[s] for s in subset], subset))
        if len(states) > MAX_STATES:
            raise TooManyStates(f"more than {MAX_STATES} candidate states")
    return states


def _topological(order: list[Write], preds: dict[int, list[int]]) -> list[Write]:
    placed: set[int] = set()
    result: list[Write] = []
    pending = list(order)
    while pending:
        ready = [w for w in pending if all(p in placed for p in preds[w.seq])]
        if not ready:  # a cycle cannot happen on one clock; keep the begin order if it did
            ready = pending[:1]
        for w in ready:
            placed.add(w.seq)
            result.append(w)
        pending = [w for w in pending if w.seq not in placed]
    return result


def _build(base: dict[str, Write | Body], applied: list[Write], subset: tuple[int, ...]) -> Iterator[State]:
    """The state(s) a subset gives: one, unless unknown outcomes of a product may land in several orders."""
    newest: dict[str, Write | Body] = dict(base)
    for w in applied:
        if w.known():
            pid = str(w.product_id)
            current = newest.get(pid)
            if not isinstance(current, Write) or _rank(w) > _rank(current):
                newest[pid] = w
    products: dict[str, Body] = {}
    for pid, entry in newest.items():
        if isinstance(entry, Write):
            if entry.body is not None:
                products[pid] = entry.body
        else:
            products[pid] = entry
    unknown = [w for w in applied if not w.known()]
    if not unknown:
        yield State(products, subset)
        return
    # An unknown outcome may land after every known write of its product (before one, the
    # known write's body is the product's exact state): try each order of them.
    for ordering in itertools.permutations(unknown):
        state = State(dict(products), subset)
        for w in ordering:
            _apply_unknown(state, w)
        yield state
        if len(unknown) > 6:
            raise TooManyStates(f"{len(unknown)} unknown outcomes in one answer's window")


def _apply_unknown(state: State, w: Write) -> None:
    if isinstance(w.change, str):  # DELETE
        if w.product_id is not None:
            state.products.pop(w.product_id, None)
    elif w.product_id is None:  # a create never answered: a product known only by its sku
        state.phantoms[str(w.change["sku"])] = _created_body(w.change)
    elif (current := state.products.get(w.product_id)) is not None:  # else: an update of an absent product is a 404
        state.products[w.product_id] = {**current, **_as_body(w.change), "version": ANY, "updated_at": ANY}


def _created_body(payload: Mapping[str, Any]) -> Body:
    defaults = {"description": "", "currency": "USD", "tags": [], "stock": 0, "is_active": True}
    body: Body = {**defaults, **_as_body(payload)}
    body.update(id=ANY, version=1, created_at=ANY, updated_at=ANY)
    return body


def _as_body(change: Mapping[str, Any]) -> Body:
    """Request fields as the body shows them (price as "12.30", tags de-duplicated)."""
    body = dict(change)
    if "price" in body:
        body["price"] = f"{Decimal(str(body['price'])):.2f}"
    if "tags" in body:
        body["tags"] = list(dict.fromkeys(body["tags"]))
    return body


# --- answers a state gives ------------------------------------------------------------------
@dataclass(frozen=True)
class ListQuery:
    """A list/count query as the service normalizes it (representation.query_from_args)."""

    category: str | None = None
    tag: str | None = None
    min_cents: int | None = None
    max_cents: int | None = None
    in_stock: bool | None = None
    is_active: bool | None = None
    q: str | None = None
    sort: str = _DEFAULT_SORT
    page: int = 1
    page_size: int = _DEFAULT_PAGE_SIZE

    @classmethod
    def of(cls, args: Mapping[str, Any]) -> ListQuery:
        """From query-string values (strings or already typed)."""
        unknown = set(args) - _QUERY_ARGS
        if unknown:
            raise ValueError(f"the judge does not know the filters {sorted(unknown)}")
        q = str(args["q"]).strip() or None if "q" in args else None
        return cls(
            category=args.get("category"),
            tag=args.get("tag"),
            min_cents=_cents(args["min_price"]) if "min_price" in args else None,
            max_cents=_cents(args["max_price"]) if "max_price" in args else None,
            in_stock=_flag(args.get("in_stock")),
            is_active=_flag(args.get("is_active")),
            q=q,
            sort=_sort(str(args.get("sort", _DEFAULT_SORT))),
            page=int(args.get("page", 1)),
            page_size=int(args.get("page_size", _DEFAULT_PAGE_SIZE)),
        )

    def matches(self, body: Body) -> bool:
        """build_filter's conditions, on a body."""
        price = _cents(body["price"])
        return (
            (self.category is None or body["category"] == self.category)
            and (self.tag is None or self.tag in body["tags"])
            and (self.min_cents is None or price >= self.min_cents)
            and (self.max_cents is None or price <= self.max_cents)
            and (self.in_stock is None or (body["stock"] > 0) == self.in_stock)
            and (self.is_active is None or body["is_active"] == self.is_active)
            and (self.q is None or re.search(re.escape(self.q), body["name"], re.IGNORECASE) is not None)
        )

    def describe(self, page: bool = True) -> str:
        """Short text for a report (without sort and page for a count)."""
        skip = () if page else ("sort", "page", "page_size")
        fields = {k: v for k, v in vars(self).items() if v is not None and k not in skip}
        return " ".join(f"{k}={v}" for k, v in fields.items())


def _sort(sort: str) -> str:
    if sort.lstrip("-") not in _SORT_FIELDS or sort.count("-") > 1:
        raise ValueError(f"not a sort the service knows: {sort!r}")
    return sort


def _flag(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1"):
        return True
    if str(value).lower() in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _cents(price: Any) -> int:
    return int(Decimal(str(price)) * 100)


def _sort_key(body: Body, sort: str, extreme: int) -> tuple[tuple[int, Any], tuple[int, Any]]:
    """_sort_keys: the field, then the id; a value the history cannot know goes to one end."""
    name = sort.lstrip("-")
    value = body[name]
    if value is not ANY and name == "price":
        value = _cents(value)
    # Timestamps are ISO strings with milliseconds and "Z": their text order is their time order.
    # Strings compare by code point, which is MongoDB's (UTF-8 byte) order.
    first = (extreme, None) if value is ANY else (0, value)
    second = (extreme, None) if body["id"] is ANY else (0, body["id"])
    return first, second


def _unify(bodies: list[Body], answered: list[Body]) -> list[Body]:
    """Fill the fields a state cannot know (ANY) from the answer's item of that product."""
    by_id = {a.get("id"): a for a in answered}
    by_sku = {a.get("sku"): a for a in answered}
    known_ids = {b["id"] for b in bodies if b["id"] is not ANY}
    result = []
    for body in bodies:
        if not any(v is ANY for v in body.values()):
            result.append(body)
            continue
        twin = by_id.get(body["id"]) if body["id"] is not ANY else by_sku.get(body["sku"])
        if twin is not None and (body["id"] is not ANY or twin.get("id") not in known_ids):
            body = {k: (twin.get(k, v) if v is ANY else v) for k, v in body.items()}
        result.append(body)
    return result


def page_of(state: State, query: ListQuery, answered: list[Body] | None = None) -> list[tuple[list[Body], int]]:
    """The page (and total) the state gives; more than one when an unknown value decides the order."""
    matching = [b for b in _unify(state.bodies(), answered or []) if query.matches(b)]
    total = len(matching)
    skip = (query.page - 1) * query.page_size
    pages = []
    undecided = any(v is ANY for b in matching for v in (b[query.sort.lstrip("-")], b["id"]))
    for extreme in (-1, 1) if undecided else (0,):
        ordered = sorted(matching, key=lambda b: _sort_key(b, query.sort, extreme), reverse=query.sort.startswith("-"))
        pages.append((ordered[skip : skip + query.page_size] if skip < total else [], total))
    return pages


def categories_of(state: State) -> list[dict[str, Any]]:
    """GET /api/v1/categories: category -> count, sorted by category."""
    counts: dict[str, int] = {}
    for body in state.bodies():
        counts[body["category"]] = counts.get(body["category"], 0) + 1
    return [{"category": c, "count": counts[c]} for c in sorted(counts)]


def same(answer: Any, expected: Any) -> bool:
    """Equal, where ANY in the expected value matches anything."""
    if expected is ANY:
        return True
    if isinstance(expected, dict):
        return (
            isinstance(answer, dict)
            and answer.keys() == expected.keys()
            and all(same(answer[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return isinstance(answer, list) and len(answer) == len(expected) and all(map(same, answer, expected))
    return bool(answer == expected) and type(answer) is type(expected)


# --- the judge ------------------------------------------------------------------------------
@dataclass
class Mismatch:
    """An answer no candidate state gives."""

    kind: str  # product, page, count, categories
    request: str
    began: float
    ended: float
    x_cache: str | None
    answered: str
    closest: str  # what the closest candidate state gives
    states: int  # how many candidate states there were
    writes: str  # the optional writes in the answer's window
    shape: str = ""  # for a page: "items" (no state has these items) or "total" (one has, with another total)

    def __str__(self) -> str:
        return (
            f"{self.kind}{' ' + self.shape if self.shape else ''} {self.request} (X-Cache={self.x_cache},"
            f" {self.states} candidate states;"
            f" window: {self.writes})\n  answered: {self.answered}\n  closest:  {self.closest}"
        )


class CatalogJudge:
    """Judges whole answers against a CatalogHistory; mismatches collect in `mismatches`."""

    def __init__(self, history: CatalogHistory) -> None:
        self.history = history
        self._lock = threading.Lock()
        self.mismatches: list[Mismatch] = []
        self.judged: dict[str, int] = {}
        self.mismatched: dict[str, int] = {}

    def product(
        self,
        product_id: str,
        began: float,
        ended: float,
        status: int,
        body: Mapping[str, Any] | None,
        x_cache: str | None = None,
    ) -> bool:
        """GET /api/v1/products/<id>: 200 with one state's exact body, or 404 where it is absent."""
        states = self.history.states(began, ended)
        answer = dict(body) if status == 200 and body is not None else None
        if status not in (200, 404):
            raise ValueError(f"judge only 200 and 404 answers, not {status}")
        candidates = [state.products.get(product_id) for state in states]
        ok = any(same(answer, c) if c is not None and answer is not None else c is answer for c in candidates)
        closest = min(candidates, key=lambda c: _distance(answer, c))
        return self._verdict(
            "product",
            ok,
            f"GET {product_id}",
            began,
            ended,
            x_cache,
            states,
            lambda: (_item(answer) if answer else "404", _item(closest) if closest else "404 (absent)"),
        )

    def page(
        self,
        query: Mapping[str, Any],
        began: float,
        ended: float,
        items: list[Mapping[str, Any]],
        total: int | None = None,
        x_cache: str | None = None,
    ) -> bool:
        """GET /api/v1/products?...: one state's page (ids, order, bodies) and, when given, its total."""
        spec = ListQuery.of(query)
        answer = [dict(i) for i in items]
        states = self.history.states(began, ended)
        candidates = [p for s in states for p in page_of(s, spec, answer)]
        ok = any(same(answer, page) and (total is None or total == count) for page, count in candidates)
        closest = min(candidates, key=lambda c: _page_distance(answer, total, c))
        shape = "total" if any(same(answer, page) for page, _ in candidates) else "items"
        return self._verdict(
            "page",
            ok,
            spec.describe(),
            began,
            ended,
            x_cache,
            states,
            lambda: (_page_text(answer, total), _page_text(closest[0], closest[1], answer)),
            shape,
        )

    def count(
        self, query: Mapping[str, Any], began: float, ended: float, count: int, x_cache: str | None = None
    ) -> bool:
        """GET /api/v1/products/count?...: one state's number of matching products."""
        spec = ListQuery.of(query)
        states = self.history.states(began, ended)
        candidates = sorted({sum(1 for b in s.bodies() if spec.matches(b)) for s in states})
        ok = count in candidates
        return self._verdict(
            "count",
            ok,
            spec.describe(page=False),
            began,
            ended,
            x_cache,
            states,
            lambda: (str(count), f"one of {candidates}"),
        )

    def categories(
        self, began: float, ended: float, answer: list[Mapping[str, Any]], x_cache: str | None = None
    ) -> bool:
        """GET /api/v1/categories: one state's category -> count list, sorted by category."""
        rows = [dict(r) for r in answer]
        states = self.history.states(began, ended)
        candidates = [categories_of(s) for s in states]
        ok = any(rows == c for c in candidates)
        closest = min(candidates, key=lambda c: sum(1 for r in c if r not in rows) + sum(1 for r in rows if r not in c))
        return self._verdict(
            "categories",
            ok,
            "GET /categories",
            began,
            ended,
            x_cache,
            states,
            lambda: (_rows(rows), _rows(closest)),
        )

    def _verdict(
        self,
        kind: str,
        ok: bool,
        request: str,
        began: float,
        ended: float,
        x_cache: str | None,
        states: list[State],
        texts: Any,
        shape: str = "",
    ) -> bool:
        with self._lock:
            self.judged[kind] = self.judged.get(kind, 0) + 1
            if ok:
                return True
            self.mismatched[kind] = self.mismatched.get(kind, 0) + 1
        answered, closest = texts()
        window = sorted({s for state in states for s in state.applied})
        writes = self.history.describe(window[:8]) or "none"
        mismatch = Mismatch(kind, request, began, ended, x_cache, answered, closest, len(states), writes, shape)
        with self._lock:
            self.mismatches.append(mismatch)
        return False

    def examples(self, each: int = 2) -> list[Mismatch]:
        """The first few mismatches of each kind, shape and X-Cache."""
        seen: dict[tuple[str, str, str | None], int] = {}
        result = []
        with self._lock:
            for m in self.mismatches:
                key = (m.kind, m.shape, m.x_cache)
                seen[key] = seen.get(key, 0) + 1
                if seen[key] <= each:
                    result.append(m)
        return result

    def summary(self) -> str:
        """Judged and mismatched answers by kind."""
        with self._lock:
            kinds = sorted(self.judged)
            text = ", ".join(f"{k}: {self.mismatched.get(k, 0)}/{self.judged[k]} mismatched" for k in kinds)
            shapes: dict[str, int] = {}
            for m in self.mismatches:
                key = f"{m.kind}{'/' + m.shape if m.shape else ''} X-Cache={m.x_cache}"
                shapes[key] = shapes.get(key, 0) + 1
        detail = ", ".join(f"{k}: {n}" for k, n in sorted(shapes.items()))
        return (text or "none") + (f" ({detail})" if detail else "")


# --- readable differences ---------------------------------------------------------------------
def _short(product_id: Any) -> str:
    """An ObjectId's last 10 hex digits: its counter, and enough of its per-process random part to differ."""
    return str(product_id)[-10:]


def _item(body: Mapping[str, Any] | None) -> str:
    if body is None:
        return "absent"
    pid = body.get("id")
    return f"{_short(pid)} v{body.get('version')} {body.get('category')} {body.get('price')}"


def _distance(answer: Body | None, expected: Body | None) -> int:
    if answer is None or expected is None:
        return 0 if answer is expected else 100
    return sum(1 for k in expected.keys() | answer.keys() if not same(answer.get(k), expected.get(k)))


def _page_distance(answer: list[Body], total: int | None, candidate: tuple[list[Body], int]) -> int:
    page, count = candidate
    mine = {b["id"]: b for b in page}
    off = sum(1 for a in answer if a.get("id") not in mine or not same(a, mine[a.get("id")]))
    off += sum(1 for b in page if b["id"] not in {a.get("id") for a in answer})
    order = [a.get("id") for a in answer if a.get("id") in mine] != [b["id"] for b in page if b["id"] in mine]
    return off * 2 + order + (total is not None and total != count)


def _page_text(page: list[Body], total: int | None, answer: list[Body] | None = None) -> str:
    text = f"total={total} [{'; '.join(_item(b) for b in page)}]"
    if answer is None:
        return text
    mine = {a.get("id"): a for a in answer}
    notes = []
    for b in page:
        a = mine.get(b["id"])
        if a is None:
            notes.append(f"{_short(b['id'])} missing from the answer")
        elif not same(a, b):
            fields = sorted(k for k in b if not same(a.get(k), b[k]))
            notes.append(f"{_short(b['id'])} differs in {fields}")
    extra = [a for a in answer if a.get("id") not in {b["id"] for b in page}]
    notes += [
        f"{_short(a.get('id'))} (v{a.get('version')} {a.get('category')}) not in this state's page" for a in extra
    ]
    if not notes:
        same_order = [a.get("id") for a in answer] == [b["id"] for b in page]
        notes.append("same items, same order: the total differs" if same_order else "same items, other order")
    return text + f"\n  diff:     {'; '.join(notes)}"


def _rows(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['category']}={r['count']}" for r in rows)
