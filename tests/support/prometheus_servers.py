"""Real Prometheus and Alertmanager (Debian's packages) on free loopback ports, and a webhook receiver."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.support.processes import stop_process
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


def binary(*names: str) -> str:
    """The first of these programs on PATH."""
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    raise RuntimeError(f"none of {names} is installed (scripts/test installs them)")


@dataclass
class Webhook:
    """An HTTP receiver for Alertmanager's webhook notifications."""

    port: int
    received: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def alerts(self, name: str, status: str = "firing") -> list[dict[str, Any]]:
        """Alerts of this name and status in the notifications so far."""
        return [
            alert
            for note in list(self.received)
            for alert in note.get("alerts", [])
            if alert["labels"].get("alertname") == name and alert["status"] == status
        ]


@contextmanager
def webhook_receiver() -> Iterator[Webhook]:
    """A ThreadingHTTPServer on a free port that records every JSON body POSTed to it."""
    hook = Webhook(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hook.received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", hook.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} process exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready in {timeout_s} s:\n{log.read_text(errors='replace')[-3000:]}")


@contextmanager
def alertmanager(tmp: Path, webhook_url: str) -> Iterator[str]:
    """Alertmanager sending every alert to webhook_url at once (1 s grouping); yields its URL."""
    port = free_port()
    config = {
        "route": {"receiver": "test", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "test", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }  # fmt: skip
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(config))
    log = tmp / "alertmanager.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={tmp / 'alertmanager.yml'}",
                f"--storage.path={tmp / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no gossip: a single, private instance
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/-/ready", process, log)
        yield url
    finally:
        stop_process(process)


@contextmanager
def prometheus(tmp: Path, targets: dict[str, str], alertmanager_url: str | None) -> Iterator[str]:
    """Prometheus scraping targets ({job: host:port}) every second with the service's alerts.yml; yields its URL."""
    port = free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in targets.items()
        ],
    }
    if alertmanager_url:
        host = alertmanager_url.removeprefix("http://")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = tmp / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/-/ready", process, log)
        yield url
    finally:
        stop_process(process)


def query(prometheus_url: str, promql: str) -> dict[str, Any]:
    """The API's answer to an instant query (status, data or error)."""
    answer: dict[str, Any] = requests.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=5).json()
    return answer
