"""Reading the Dockerfile and docker-compose.yml the way Docker does, for tests on a machine without Docker.

Only what the repository's files use: Dockerfile instructions with `\\` continuations and
JSON (exec form) arguments; compose's `$$` escape (a literal `$` for the container's shell),
`CMD` and `CMD-SHELL` healthchecks, and durations such as `40s` or `5m30s`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.procfile import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in file order, continuation lines joined, comments skipped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, arguments = (pending + line.strip()).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def dockerfile_healthcheck() -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options (interval, timeout, ...) and its exec-form command."""
    (arguments,) = [args for keyword, args in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    options_text, _, command = arguments.partition("CMD ")
    options = dict(option.removeprefix("--").split("=", 1) for option in options_text.split())
    return options, json.loads(command)


def dockerfile_cmd() -> list[str]:
    """The image's default command (exec form), as the last CMD outside HEALTHCHECK says."""
    commands = [args for keyword, args in dockerfile_instructions() if keyword == "CMD"]
    return json.loads(commands[-1])  # type: ignore[no-any-return]


def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed (YAML merge keys `<<:` resolved by the loader)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())  # type: ignore[no-any-return]


def compose_healthcheck_argv(service: str) -> list[str]:
    """The argv Docker runs for a compose service's healthcheck (CMD-SHELL through /bin/sh -c)."""
    test = compose()["services"][service]["healthcheck"]["test"]
    kind, *rest = [part.replace("$$", "$") for part in test]
    if kind == "CMD-SHELL":
        (line,) = rest
        return ["sh", "-c", line]
    assert kind == "CMD", test
    return rest


def duration_s(value: str) -> float:
    """Seconds in a compose duration such as 40s, 5m30s or 1h."""
    match = _DURATION.fullmatch(value)
    if not value or match is None:
        raise ValueError(f"not a compose duration: {value!r}")
    hours, minutes, seconds, millis = (int(group or 0) for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000
