"""The Flask CLI (`flask --app app <command>`): what an operator or a release phase runs, once.

seed, ensure-indexes, warm, audit, repair, drop-cache. Each first checks the servers it
needs (one line naming the setting and the address, never a traceback), then runs the
very function the Celery job, the admin endpoint or the embedded mode runs, and prints
one summary line on stdout. Exit status: 0 done; 1 failed (a server unreachable, or the
run failed: the line on stderr says why); 2 bad usage (click's); 3 another run of the
job holds its lock, so nothing was done. docs/operations.md ("Commands") lists them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask
from flask.cli import with_appcontext
from kombu.utils.url import maybe_sanitize_url
from marshmallow import ValidationError
from mongoengine import Document
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from jollyjet.cache.backend import CacheError
from jollyjet.cache.epoch import CacheEpochRecord
from jollyjet.cache.repair_log import CacheRepairRecord
from jollyjet.db import mongo_problem
from jollyjet.extensions import CacheServices, Services, current_services
from jollyjet.maintenance.audit import DRIFT_CLASSES, run_audit
from jollyjet.maintenance.audit_store import AuditRun
from jollyjet.maintenance.flush import drop_service_keys
from jollyjet.maintenance.repair import run_repair
from jollyjet.maintenance.report import JobEntry, JobReport
from jollyjet.maintenance.run_lock import run_job_once
from jollyjet.maintenance.warming import run_warm
from jollyjet.monitoring.job_status import JobStatus
from jollyjet.products.models import ProductDocument
from jollyjet.products.repository import DatabaseUnavailable
from jollyjet.products.schemas import ProductInputSchema
from jollyjet.seed import DEMO_CATEGORIES, DEMO_COUNT, catalog_products, seed_products
from jollyjet.settings import CLEANUP_SCAN_BATCH, AuditMode, Settings

EXIT_BUSY = 3
MAX_SEED = 1_000_000
# A bar only where one helps: below this, seeding takes about a second.
PROGRESS_FROM = 500
# What a run can fail with once the servers answered: a server lost midway, a timeout.
_RUN_ERRORS = (CacheError, RedisError, DatabaseUnavailable, PyMongoError)


# Every collection of the service. Their documents say auto_create_index=False: serving
# never creates an index (a first write would pay for it, and a MongoDB outage at that
# moment would fail the write); `flask --app app ensure-indexes` does, in the release phase.
DOCUMENTS: tuple[type[Document], ...] = (ProductDocument, CacheRepairRecord, AuditRun, JobStatus, CacheEpochRecord)


def ensure_indexes() -> dict[str, int]:
    """Create the declared indexes of every collection (idempotent); how many indexes each collection has now
    (a collection with no declared index and no documents yet does not exist: 0)."""
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
    problem = mongo_problem(settings)
    if problem:
        raise click.ClickException(problem)


def _redis_address(settings: Settings) -> str:
    if settings.redis_url:
        return f"{maybe_sanitize_url(settings.redis_url)} (REDIS_URL)"
    return f"the Sentinel master {settings.redis_sentinel_master!r} (JOLLYJET_REDIS_SENTINELS)"


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
        raise click.ClickException(f"cannot reach Redis at {_redis_address(settings)}: {error}") from None
    return services.cache


@contextmanager
def _one_line_errors(command: str) -> Iterator[None]:
    """A server lost during the run: exit 1 with one line (the logs have the details), not a traceback."""
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
        # Seeding writes through the cache: with Redis down, each product would leave a
        # repair record behind instead of a cached entry.
        _cache(services)
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
    entry: JobEntry = run_audit
    if full:
        settings = services.settings.model_copy(update={"audit_mode": AuditMode.FULL})
        entry = _with_settings(run_audit, settings)
    report = _run_job(services, "audit", entry).as_dict()
    drift = ", ".join(f"{c} {report['drift'][c]}" for c in DRIFT_CLASSES if report["drift"][c]) or "none"
    click.echo(
        f"audit ({report['mode']}): {report['keys_checked']} of {report['keys_scanned']} keys checked, "
        f"drift: {drift}; {sum(report['repaired'].values())} repaired in {report['duration_s']:.2f} s"
    )


def _with_settings(entry: JobEntry, settings: Settings) -> JobEntry:
    return lambda services, _: entry(services, settings)


@click.command("repair")
@with_appcontext
def repair() -> None:
    """Replay cache writes that failed after their database write (the repair job, once)."""
    # Without the job lock, as the Celery task (tasks/jobs.py says why).
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
    services = current_services()
    cache = _cache(services)
    with _one_line_errors("drop-cache"):
        deleted = drop_service_keys(cache.backend, cache.keys, CLEANUP_SCAN_BATCH)
    click.echo(f"drop-cache: {deleted} keys deleted under {cache.keys.service_pattern()}")


def register_commands(app: Flask) -> None:
    """Add the commands to `flask --app app` (app.cli)."""
    for command in (seed, ensure_indexes_command, warm, audit, repair, drop_cache):
        app.cli.add_command(command)
