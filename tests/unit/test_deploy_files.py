"""The image, compose and lock files keep their promises (Docker is not on the test machines).

Healthchecks exist and probe what docs/operations.md says; stop grace periods cover the
longest a process may take to stop (the Celery hard time limit, gunicorn's graceful
timeout); the production lock and image carry no in-process stand-ins, and nothing imports
them unless the embedded mode is configured. tests/e2e/test_compose_healthchecks.py runs the
checks against real processes; tests/e2e/test_production_image.py starts the image's
contents on a fresh install of requirements.lock.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jollyjet.settings import Settings, SettingsError, load_settings
from tests.support.deploy_files import (
    compose,
    compose_healthcheck_argv,
    dockerfile_cmd,
    dockerfile_healthcheck,
    dockerfile_instructions,
    duration_s,
)
from tests.support.procfile import REPO_ROOT, procfile_env, read_procfile

STAND_INS = ("mongomock", "fakeredis", "lupa")


def locked_names(lock: str) -> set[str]:
    return set(re.findall(r"^([a-z0-9][a-z0-9._-]*)==", (REPO_ROOT / lock).read_text(), re.MULTILINE))


def graceful_timeout_s() -> int:
    """gunicorn's graceful_timeout as gunicorn.conf.py sets it (read, not imported: importing it has effects)."""
    tree = ast.parse((REPO_ROOT / "gunicorn.conf.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["graceful_timeout"]:
            return int(ast.literal_eval(node.value))
    raise AssertionError("gunicorn.conf.py sets no graceful_timeout")


def test_the_image_checks_web_liveness_with_the_standard_library() -> None:
    options, command = dockerfile_healthcheck()
    assert command[:2] == ["python", "-c"] and "urllib.request" in command[2]  # slim images have no curl
    assert "/health/live" in command[2] and "PORT" in command[2]
    assert duration_s(options["timeout"]) < duration_s(options["interval"])
    assert "start-period" in options  # the app's imports take seconds on a small machine


def test_the_image_installs_the_production_lock_only() -> None:
    installs = [args for keyword, args in dockerfile_instructions() if keyword == "RUN" and "pip install" in args]
    assert installs == ["pip install --no-cache-dir --require-hashes -r requirements.lock"]
    copied = " ".join(args for keyword, args in dockerfile_instructions() if keyword == "COPY")
    assert "requirements-embedded.lock" not in copied and "requirements-dev.lock" not in copied


def test_compose_probes_each_process_the_way_it_runs() -> None:
    services = compose()["services"]
    assert "/health/ready" in " ".join(services["web"]["healthcheck"]["test"])
    assert compose_healthcheck_argv("worker") == [
        "sh",
        "-c",
        "celery -A tasks inspect ping -d celery@$HOSTNAME --timeout 5",
    ]
    assert compose_healthcheck_argv("beat") == [
        "sh",
        "-c",
        "celery -A tasks inspect ping -d celerybeat@$HOSTNAME --timeout 5",
    ]
    for name in ("web", "worker", "beat"):
        check = services[name]["healthcheck"]
        # A check that is killed at its timeout says nothing; each must finish inside it.
        assert duration_s(check["timeout"]) < duration_s(check["interval"]), name
        assert duration_s(check["start_period"]) > 0, name
        if name != "web":  # the ping's own wait (--timeout 5) ends before Docker's timeout kills the check
            assert duration_s(check["timeout"]) > 5, name


def test_compose_stop_grace_covers_the_longest_stop() -> None:
    services = compose()["services"]
    env = services["worker"]["environment"]
    time_limit = int(env.get("CELERY_TIME_LIMIT_S", Settings.model_fields["celery_time_limit_s"].default))
    assert duration_s(services["worker"]["stop_grace_period"]) > time_limit
    assert duration_s(services["web"]["stop_grace_period"]) > graceful_timeout_s()
    # Nobody overrides gunicorn.conf.py's value on a command line the test above does not read.
    commands = [*read_procfile().values(), *dockerfile_cmd(), *(str(s.get("command", "")) for s in services.values())]
    assert not any("graceful-timeout" in command for command in commands)
    assert duration_s(services["beat"]["stop_grace_period"]) >= 10


def test_compose_durations_parse_as_docker_reads_them() -> None:
    assert [duration_s(v) for v in ("40s", "5m30s", "1h", "250ms")] == [40, 330, 3600, 0.25]
    with pytest.raises(ValueError, match="not a compose duration"):
        duration_s("forty")


def test_only_the_embedded_and_dev_locks_carry_the_stand_ins() -> None:
    production, embedded, dev = (
        locked_names(lock) for lock in ("requirements.lock", "requirements-embedded.lock", "requirements-dev.lock")
    )
    assert not production & set(STAND_INS)
    assert set(STAND_INS) <= embedded and set(STAND_INS) <= dev
    assert production < embedded  # the same pins plus the stand-ins
    header = (REPO_ROOT / "requirements-embedded.lock").read_text().splitlines()[1]
    assert "--extra embedded --generate-hashes -o requirements-embedded.lock" in header
    assert "bootstrap_venv requirements-embedded.lock" in (REPO_ROOT / "scripts/serve").read_text()


def test_the_app_and_the_celery_app_build_without_the_stand_ins() -> None:
    # What the production image runs, with the stand-ins made unimportable: building connects
    # to nothing, so the unreachable addresses are never dialled.
    blocked = f"import sys; sys.modules.update(dict.fromkeys({STAND_INS!r}))"
    env = procfile_env(MONGODB_URI="mongodb://127.0.0.1:9/jj", REDIS_URL="redis://127.0.0.1:9/0")
    code = f"{blocked}; import app, tasks; tasks.app; print([n for n in {STAND_INS!r} if sys.modules[n] is not None])"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "[]"  # still the blocking entries: nothing imported them


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [({}, "MONGODB_URI"), ({"mongodb_uri": "mongodb://db:27017/jj"}, "REDIS_URL")],
    ids=["no-mongodb-uri", "no-redis-url"],
)
def test_settings_name_the_variable_when_a_stand_in_is_missing(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str], variable: str
) -> None:
    for name in STAND_INS:
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
    for name in ("MONGODB_URI", "REDIS_URL", "JOLLYJET_CACHE_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SettingsError, match=f"{variable}: not set.*install the `embedded` extra") as error:
        load_settings(**overrides)
    assert "\n" not in str(error.value)
    # With the cache off, no Redis stand-in is needed.
    assert load_settings(mongodb_uri="mongodb://db:27017/jj", cache_enabled=False).embedded_redis


def test_the_stand_ins_are_imported_in_one_place_each() -> None:
    sources = [
        *Path(REPO_ROOT / "jollyjet").rglob("*.py"),
        *Path(REPO_ROOT / "tasks").rglob("*.py"),
        REPO_ROOT / "app.py",
    ]
    importers = {
        str(path.relative_to(REPO_ROOT)): re.findall(
            r"^\s+import (mongomock|fakeredis)\b", path.read_text(), re.MULTILINE
        )
        for path in sources
    }
    # Indented: inside the function that builds the embedded store, never at module level.
    assert {path: names for path, names in importers.items() if names} == {
        "jollyjet/db.py": ["mongomock"],
        "jollyjet/cache/client.py": ["fakeredis"],
    }
    assert not any(
        re.search(r"^(import|from) (mongomock|fakeredis)\b", path.read_text(), re.MULTILINE) for path in sources
    )
