"""Counts every MongoDB command the process sends, from pymongo's command monitoring.

Registered on the client itself (jollyjet/db.py), so "database load" is what the
driver sent, not what the code paths we remembered to instrument report.
"""

from __future__ import annotations

from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from jollyjet.monitoring.metrics import DB_QUERIES


class QueryCounter(CommandListener):
    """jollyjet_db_queries_total{operation}: one per command started (find, insert, aggregate, …)."""

    def started(self, event: CommandStartedEvent) -> None:
        """Count the command as it is sent (a failed command loaded the server too)."""
        DB_QUERIES.labels(event.command_name).inc()

    def succeeded(self, event: CommandSucceededEvent) -> None:
        """Nothing to count: the command was counted when sent."""

    def failed(self, event: CommandFailedEvent) -> None:
        """Nothing to count: the command was counted when sent."""
