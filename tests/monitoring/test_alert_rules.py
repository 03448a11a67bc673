"""The alert rules, Prometheus and Alertmanager configs, checked and unit-tested by the real tools."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.monitoring

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERT_TESTS = PROMETHEUS / "tests" / "alerts_test.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (scripts/test installs it)"
    return path


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def test_promtool_checks_the_rules_and_the_prometheus_config() -> None:
    assert "SUCCESS: 11 rules found" in run(tool("promtool"), "check", "rules", str(ALERTS))
    assert "is valid prometheus config file syntax" in run(
        tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml")
    )


def test_amtool_checks_the_alertmanager_config() -> None:
    assert "SUCCESS" in run(tool("amtool"), "check-config", str(ROOT / "deploy" / "alertmanager" / "alertmanager.yml"))


def test_promtool_unit_tests_pass() -> None:
    assert "SUCCESS" in run(tool("promtool"), "test", "rules", str(ALERT_TESTS))


def test_every_alert_has_a_case_that_fires_and_one_that_stays_quiet() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts without a firing test"
    assert names - quiet == set(), "alerts without a quiet test"


def test_every_alert_links_to_its_runbook_entry_and_is_explained() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", operations, flags=re.M)}
    monitoring = (ROOT / "docs" / "monitoring.md").read_text()
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}", name
        assert name.lower() in anchors, f"docs/operations.md has no runbook entry for {name}"
        assert f"`{name}`" in monitoring, f"docs/monitoring.md does not explain {name}"
        assert rule["labels"]["severity"] in ("warning", "critical"), name


def test_docker_compose_mounts_the_monitoring_files_that_exist() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("prometheus", "alertmanager", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)
    assert services["worker"]["environment"]["JOLLYJET_WORKER_METRICS_ADDRESS"] == "0.0.0.0:9101"
