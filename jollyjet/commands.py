"""The Flask CLI (`flask --app app <command>`, docs/operations.md "Commands") and the seed catalog.

Each command checks the servers it needs (one line naming the setting, never a traceback), runs the function
the Celery job, admin endpoint or embedded mode runs, and prints one summary line. Exit status: 0 done; 1
failed; 2 bad usage; 3 the job's lock is held, nothing done. Seed products are deterministic (the n-th of a
category has the same sku), so a second run adds only what is missing; they are written through the cache.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import click
from flask import Flask
from flask.cli import with_appcontext
from kombu.utils.url import maybe_sanitize_url
from marshmallow import ValidationError
from mongoengine import Document
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from jollyjet.cache.epoch import CacheEpochRecord, drop_cached_data
from jollyjet.cache.fence import CacheRepairRecord
from jollyjet.cache.store import CacheError
from jollyjet.db import mongo_problem
from jollyjet.extensions import CacheServices, Services, current_services
from jollyjet.jobs import JobEntry, JobReport, run_job_once
from jollyjet.jobs.audit import DRIFT_CLASSES, AuditRun, run_audit
from jollyjet.jobs.repair import run_repair
from jollyjet.jobs.warm import run_warm
from jollyjet.ops.jobs import JobStatus
from jollyjet.products.catalog import Catalog
from jollyjet.products.record import ProductDocument, cents
from jollyjet.products.repository import DatabaseUnavailable, DuplicateSku
from jollyjet.products.schemas import ProductInputSchema
from jollyjet.settings import CLEANUP_SCAN_BATCH, AuditMode, RedisTopology, Settings

log = logging.getLogger(__name__)
EXIT_BUSY = 3
MAX_SEED = 1_000_000
PROGRESS_FROM = 500  # a bar only where one helps: below this, seeding takes about a second
_RUN_ERRORS = (CacheError, RedisError, DatabaseUnavailable, PyMongoError)

_CATEGORIES = {
    "audio": ["Headphones", "Speaker", "Earbuds", "Soundbar"],
    "books": ["Field Guide", "Cookbook", "Atlas", "Novel"],
    "kitchen": ["Kettle", "Chef Knife", "Skillet", "Coffee Grinder"],
    "outdoor": ["Tent", "Sleeping Bag", "Headlamp", "Backpack"],
}
DEMO_CATEGORIES = tuple(_CATEGORIES)
_OTHER_NAMES = ["Gadget", "Kit", "Set", "Bundle"]  # for a category the demo catalog does not have
_VARIANTS = ("Lite", "Classic", "Pro")
_PER_SERIES = len(_OTHER_NAMES) * len(_VARIANTS)  # products of one category in one series: 12
DEMO_COUNT = len(DEMO_CATEGORIES) * _PER_SERIES  # 48


@dataclass
class SeedReport:
    """What one seeding run did."""

    added: int = 0
    present: int = 0  # its sku was taken already (an earlier run, or another seeder)


def _sku_prefix(category: str) -> str:
    # The demo categories keep their readable prefixes; any other category (free text, up to
    # 100 characters of anything) gets a hash of its name: a valid sku, and one per category.
    if category in _CATEGORIES:
        return category[:3].upper()
    return "C" + hashlib.blake2b(category.encode(), digest_size=4).hexdigest().upper()


def _product(category: str, index: int) -> dict[str, Any]:
    position = DEMO_CATEGORIES.index(category) if category in _CATEGORIES else 0
    series, within = divmod(index, _PER_SERIES)
    n_index, variant = divmod(within, len(_VARIANTS))
    name = _CATEGORIES.get(category, _OTHER_NAMES)[n_index]
    # Series 0 of the demo categories is the demo catalog, exactly as it always was.
    price = Decimal(9 + 7 * n_index + 13 * position + variant * 5 + series % 50) + Decimal("0.99")
    suffix = f"-{series}" if series else ""
    return {
        "sku": f"{_sku_prefix(category)}-{n_index:02d}{variant}{suffix}",
        "name": f"{name} {_VARIANTS[variant]}" + (f" {series + 1}" if series else ""),
        "description": f"A {name.lower()} for the JollyJet demo catalog.",
        "price_cents": cents(price),
        "currency": "USD",
        "category": category,
        "tags": [category.strip()[:50], ("budget", "popular", "premium")[variant]],
        "stock": (n_index * 7 + variant * 3 + series) % 25,
        "is_active": True,
    }


def catalog_products(count: int = DEMO_COUNT, categories: Sequence[str] = DEMO_CATEGORIES) -> Iterator[dict[str, Any]]:
    """The first `count` products, deterministic, taking the categories in turn (by default: the demo catalog)."""
    for i in range(count):
        index, c_index = divmod(i, len(categories))
        yield _product(categories[c_index], index)


def seed_products(
    repository: Catalog, products: Iterator[dict[str, Any]], progress: Callable[[int], None] | None = None
) -> SeedReport:
    """Create each product whose sku is not taken yet; progress(1) after each. Needs the unique sku index."""
    report = SeedReport()
    for values in products:
        try:
            repository.create(values)
        except DuplicateSku:
            report.present += 1
        else:
            report.added += 1
        if progress is not None:
            progress(1)
    log.info("seeded %d products (%d already present)", report.added, report.present)
    return report


# Every collection. Serving never creates an index (auto_create_index=False: a first write would pay for it,
# or fail in a MongoDB outage); `flask --app app ensure-indexes` does, in the release phase.
DOCUMENTS: tuple[type[Document], ...] = (ProductDocument, CacheRepairRecord, AuditRun, JobStatus, CacheEpochRecord)


def ensure_indexes() -> dict[str, int]:
    """Create the declared indexes of every collection (idempotent); how many indexes each has now."""
    counts = {}
    for document in DOCUMENTS:
        document.ensure_indexes()
        collection = document._get_collection()
        counts[collection.name] = len(collection.index_information())
    return counts


class JobBusy(click.ClickException):
    """Another run of the job holds its lock: nothing was done."""

    exit_code = EXIT_BUSY


def _mongo(settings: Settings) -> None:
    """Fail (exit 1, one line) unless MongoDB is a real server that answers."""
    if settings.embedded_mongo:
        raise click.ClickException(
            "MONGODB_URI is unset or mongomock://: this command would work on an in-process store of its "
            "own that vanishes when it exits; set MONGODB_URI to the service's MongoDB"
        )
    if problem := mongo_problem(settings):
        raise click.ClickException(problem)


def _cache(services: Services) -> CacheServices:
    """The cache group, after checking that MongoDB and a real Redis answer; fails (exit 1) otherwise."""
    settings = services.settings
    if services.cache is None:
        raise click.ClickException("the cache is disabled (JOLLYJET_CACHE_ENABLED=false): nothing to do")
    if settings.embedded_redis:
        raise click.ClickException(
            "REDIS_URL is unset: this command would work on an in-process Redis of its own; "
            "set REDIS_URL to the service's Redis"
        )
    # MongoDB first: a new Redis connection is checked against MongoDB (cache/epoch.py).
    _mongo(settings)
    try:
        services.cache.backend.ping()
    except CacheError as error:
        if settings.redis_topology is RedisTopology.SENTINEL:
            address = f"the Sentinel master {settings.redis_sentinel.master!r}"
        else:
            address = maybe_sanitize_url(settings.redis_url or "")
        raise click.ClickException(f"cannot reach Redis at {address} (REDIS_URL): {error}") from None
    return services.cache


@contextmanager
def _one_line_errors(command: str) -> Iterator[None]:
    """A server lost or timing out during the run: exit 1 with one line (the logs have the details)."""
    try:
        yield
    except _RUN_ERRORS as error:
        detail = str(error).splitlines()[0][:200] if str(error) else ""
        raise click.ClickException(f"{command} failed: {type(error).__name__}: {detail}".rstrip(": ")) from None


def _run_job(services: Services, job: str, entry: JobEntry, exclusive: bool = True) -> JobReport:
    """Run a job's entry point as its Celery task does (under the job's lock when exclusive)."""
    _cache(services)
    with _one_line_errors(job):
        report = run_job_once(services, job, entry, exclusive=exclusive)
    if report is None:
        raise JobBusy(f"{job}: another run of this job is in progress (its lock is held); nothing done")
    return report


def _category(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """Each --category checked by the API's own rule for a product's category."""
    field = ProductInputSchema().fields["category"]
    for value in values:
        try:
            field.deserialize(value)
        except ValidationError as error:
            raise click.BadParameter(f"{value[:40]!r}: {' '.join(map(str, error.messages))}") from None
    return tuple(dict.fromkeys(values))


@click.command("seed")
@click.option(
    "--count",
    type=click.IntRange(1, MAX_SEED),
    default=DEMO_COUNT,
    show_default=True,
    help=f"how many products (the first {DEMO_COUNT} are the demo catalog)",
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    callback=_category,
    help=f"a category to put them in, taken in turn; repeatable (default: {', '.join(DEMO_CATEGORIES)})",
)
@with_appcontext
def seed(count: int, categories: tuple[str, ...]) -> None:
    """Insert products not there yet (deterministic skus: running it again adds nothing)."""
    services = current_services()
    _mongo(services.settings)
    if services.cache is not None:
        _cache(services)  # seeding writes through: with Redis down, each product would leave a repair record
    products = catalog_products(count, categories or DEMO_CATEGORIES)
    with _one_line_errors("seed"):
        ensure_indexes()  # the unique sku index is what makes a second run add nothing
        if count < PROGRESS_FROM:
            report = seed_products(services.products, products)
        else:
            # On stderr: stdout keeps only the summary line. Click draws it only on a terminal.
            with click.progressbar(length=count, label="seeding", file=sys.stderr) as bar:
                report = seed_products(services.products, products, bar.update)
    click.echo(f"seed: {report.added} products added, {report.present} already present")


@click.command("ensure-indexes")
@with_appcontext
def ensure_indexes_command() -> None:
    """Create the MongoDB indexes of every collection (idempotent; the Procfile's release phase)."""
    _mongo(current_services().settings)
    with _one_line_errors("ensure-indexes"):
        counts = ensure_indexes()
    listed = ", ".join(f"{name} {n}" for name, n in counts.items())
    click.echo(f"ensure-indexes: {sum(counts.values())} indexes on {len(counts)} collections ({listed})")


@click.command("warm")
@with_appcontext
def warm() -> None:
    """Fill the most-read products and list pages (the warming job, once)."""
    report = _run_job(current_services(), "warm", run_warm).as_dict()
    click.echo(
        f"warm: {report['products_warmed']} products and {report['queries_warmed']} list pages warmed "
        f"({report['products_considered']} and {report['queries_considered']} considered) "
        f"in {report['duration_s']:.2f} s"
    )


@click.command("audit")
@click.option("--full", is_flag=True, help="check every cached product, not a sample (JOLLYJET_AUDIT_MODE)")
@with_appcontext
def audit(full: bool) -> None:
    """Compare cached products with MongoDB and repair drift (the audit job, once; stored like its runs)."""
    services = current_services()
    settings = services.settings.model_copy(update={"audit_mode": AuditMode.FULL}) if full else services.settings
    report = _run_job(services, "audit", lambda job_services, _: run_audit(job_services, settings)).as_dict()
    drift = ", ".join(f"{c} {report['drift'][c]}" for c in DRIFT_CLASSES if report["drift"][c]) or "none"
    click.echo(
        f"audit ({report['mode']}): {report['keys_checked']} of {report['keys_scanned']} keys checked, "
        f"drift: {drift}; {sum(report['repaired'].values())} repaired in {report['duration_s']:.2f} s"
    )


@click.command("repair")
@with_appcontext
def repair() -> None:
    """Replay cache writes that failed after their database write (the repair job, once)."""
    # Without the job lock, as the Celery task (jollyjet/jobs says why).
    report = _run_job(current_services(), "repair", run_repair, exclusive=False).as_dict()
    click.echo(
        f"repair: {report['records']} records replayed for {report['products']} products "
        f"({report['rewritten']} rewritten, {report['tombstoned']} tombstoned, {report['deferred']} deferred), "
        f"{report['remaining']} pending, in {report['duration_s']:.2f} s"
    )


@click.command("drop-cache")
@with_appcontext
def drop_cache() -> None:
    """Delete this service's cached keys (its key prefix only; job locks, beat claims and read counts stay)."""
    cache = _cache(current_services())
    with _one_line_errors("drop-cache"):
        deleted = drop_cached_data(cache.backend, cache.keys, CLEANUP_SCAN_BATCH)
    click.echo(f"drop-cache: {deleted} keys deleted under {cache.keys.service_pattern()}")


def register_commands(app: Flask) -> None:
    """Add the commands to `flask --app app` (app.cli)."""
    for command in (seed, ensure_indexes_command, warm, audit, repair, drop_cache):
        app.cli.add_command(command)
