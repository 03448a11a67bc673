"""Counts the MongoDB commands this process sends, by (command, collection).

`jollyjet_db_queries_total` has one label (the command), so it cannot tell a product read
from the recovery fence's and the cache epoch's background polls. This listener can. It is
registered once per process, when this module is first imported: pymongo hands global
listeners to clients created afterwards, which every app a test builds is.
"""

from __future__ import annotations

import threading
from collections import Counter

from pymongo import monitoring


class CommandCounter(monitoring.CommandListener):
    """Counts (command, collection) pairs while switched on."""

    def __init__(self) -> None:
        self.on = False
        self.counts: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.on:
            collection = event.command.get(event.command_name)
            with self.lock:
                self.counts[(event.command_name, str(collection))] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Not needed: started events are what is counted."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Not needed: started events are what is counted."""


COUNTER = CommandCounter()
monitoring.register(COUNTER)
