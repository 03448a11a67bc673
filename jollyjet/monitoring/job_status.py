"""Each job's last run and last success, in MongoDB: the web process reads what the worker did.

The worker's own counters vanish when it restarts; these records do not, so "when did
the audit last succeed" survives restarts and is answered by any process.
This module does not import prometheus_client.
"""

from __future__ import annotations

import logging
from typing import Any

from mongoengine import DateTimeField, DictField, Document, StringField
from pymongo.errors import PyMongoError

from jollyjet.db import set_to_server_time
from jollyjet.products.representation import api_timestamp

log = logging.getLogger(__name__)


class JobStatus(Document):
    """One job (warm, cleanup, audit, repair): its latest run and success."""

    meta = {"collection": "job_status", "auto_create_index": False}

    task = StringField(primary_key=True)
    last_run_at = DateTimeField()
    last_outcome = StringField()
    last_success_at = DateTimeField()
    last_report = DictField()

    def as_dict(self) -> dict[str, Any]:
        """The statistics endpoint's view."""
        return {
            "task": self.task,
            "last_run_at": api_timestamp(self.last_run_at) if self.last_run_at else None,
            "last_outcome": self.last_outcome,
            "last_success_at": api_timestamp(self.last_success_at) if self.last_success_at else None,
            "last_report": dict(self.last_report or {}),
        }


def record_run(task: str, outcome: str, report: dict[str, Any] | None) -> None:
    """Upsert a job's status after a run; a success also stores its report. Never raises."""
    stamped = ["last_run_at"]
    changes: dict[str, Any] = {"set__last_outcome": outcome}
    if outcome == "success":
        stamped.append("last_success_at")
        changes["set__last_report"] = report or {}
    try:
        JobStatus.objects(task=task).update_one(upsert=True, __raw__=set_to_server_time(*stamped), **changes)
    except PyMongoError:
        # The job itself ran; its status is lost for this run only.
        log.warning("could not record the status of job %s", task, exc_info=True)


def all_statuses() -> dict[str, JobStatus]:
    """Every job's status by task name (raises PyMongoError when MongoDB is down)."""
    return {status.task: status for status in JobStatus.objects}
