"""Run the Procfile's lines as separate processes, the way a platform does, for the e2e tests.

Each line is started as its own process, with `$VAR`, `${VAR}` and `${VAR:-default}`
expanded from the environment given (as `sh` would), the venv's bin directory first on
PATH so `gunicorn` and `celery` resolve, cwd the repository root, and stdout+stderr in
a log file. Processes are always stopped: SIGTERM (each program's own clean shutdown),
then SIGKILL of the process's group if it has not exited within a bounded wait.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCFILE = REPO_ROOT / "Procfile"
# Not resolved: a venv's python is a symlink, and its bin directory is the venv's, not /usr/bin.
VENV_BIN = Path(sys.executable).parent
# Variables a developer's shell may hold that would leak into a child's settings or command line.
_INHERITED_PREFIXES = ("JOLLYJET_", "CELERY_", "REDIS_URL", "MONGODB_URI", "WEB_", "GUNICORN_", "PORT")
_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)
# Anything beyond variable expansion needs a real shell; refuse rather than run it differently.
_SHELL_SYNTAX = re.compile(r"[|;&<>`]|\$\(")


def read_procfile(path: Path = PROCFILE) -> dict[str, str]:
    """Process type → command line, in file order (blank lines and # comments skipped)."""
    entries: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ValueError(f"{path}: not a Procfile line: {line!r}")
        entries[name] = command.strip()
    return entries


def expand(command: str, env: Mapping[str, str]) -> str:
    """Expand $VAR, ${VAR} and ${VAR:-default} (default also when empty, as sh does); unset without default raises."""

    def value(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        current = env.get(name, "")
        if current:
            return current
        if match.group("default") is not None:
            return match.group("default")
        raise KeyError(f"the Procfile needs {name} and it is not set")

    return _VARIABLE.sub(value, command)


def command_argv(command: str, env: Mapping[str, str]) -> list[str]:
    """The argv a shell would run for this Procfile command (variables expanded, words split)."""
    if _SHELL_SYNTAX.search(command):
        raise ValueError(f"the command needs a shell, which this runner does not emulate: {command!r}")
    return shlex.split(expand(command, env))


def bind_to_loopback(argv: list[str]) -> list[str]:
    """argv with every `--bind 0.0.0.0:PORT` moved to 127.0.0.1 (tests never listen on all interfaces)."""
    result = list(argv)
    for i, arg in enumerate(result[:-1]):
        if arg in ("--bind", "-b") and result[i + 1].startswith("0.0.0.0:"):
            result[i + 1] = "127.0.0.1:" + result[i + 1].removeprefix("0.0.0.0:")
    return result


def procfile_env(**values: str) -> dict[str, str]:
    """This process's environment without service settings, the venv first on PATH, plus values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", os.defpath)])
    env["PYTHONUNBUFFERED"] = "1"  # gunicorn's access log goes to stdout: see lines as they happen
    env.update(values)
    return env


@dataclass
class ProcfileProcess:
    """One started Procfile line: its argv, process and log file."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.process.poll() is None

    def log_text(self) -> str:
        """Everything it has written so far."""
        return self.log.read_text(errors="replace")


def start_process(
    name: str, env: Mapping[str, str], log_dir: Path, adjust: Callable[[list[str]], list[str]] = bind_to_loopback
) -> ProcfileProcess:
    """Start the Procfile line `name` (argv passed through adjust); its output goes to log_dir/<name>.log."""
    argv = adjust(command_argv(read_procfile()[name], env))
    if shutil.which(argv[0], path=env.get("PATH")) is None:
        raise RuntimeError(f"{argv[0]!r} is not on PATH ({env.get('PATH')})")
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        # Its own session: a process that ignores SIGTERM is killed with its children
        # (gunicorn's workers, Celery's pool) by process group, never by name.
        process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return ProcfileProcess(name, argv, process, log)


def stop_processes(processes: list[ProcfileProcess], timeout_s: float = 10.0) -> None:
    """SIGTERM all at once, wait (bounded), then SIGKILL the groups of those still running."""
    for proc in processes:
        if proc.alive():
            proc.process.terminate()
    deadline = time.monotonic() + timeout_s
    for proc in processes:
        try:
            proc.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            # Still running, so the group id is still this process's own.
            os.killpg(proc.process.pid, signal.SIGKILL)
            proc.process.wait(timeout=5)


def log_tails(processes: list[ProcfileProcess], lines: int = 100) -> str:
    """The last lines of every process's log, each under a header with its name and exit code."""
    parts = []
    for proc in processes:
        tail = "\n".join(proc.log_text().splitlines()[-lines:])
        parts.append(f"===== {proc.name} (exit code {proc.process.poll()}): {proc.log}\n{tail}")
    return "\n".join(parts)


def run_release(env: Mapping[str, str], log_dir: Path, timeout_s: float = 60.0) -> str:
    """Run the Procfile's release line to its end, as a platform does before starting the others; its output.

    Raises AssertionError (with the output) if it fails or outlives timeout_s."""
    release = start_process("release", env, log_dir)
    try:
        code = release.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_processes([release])
        raise AssertionError(f"the release phase ran past {timeout_s} s:\n{release.log_text()}") from None
    assert code == 0, f"the release phase failed (exit code {code}):\n{release.log_text()}"
    return release.log_text()


@contextmanager
def procfile_processes(names: list[str], env: Mapping[str, str], log_dir: Path) -> Iterator[dict[str, ProcfileProcess]]:
    """Start these Procfile lines; on exit stop them all and print their log tails (pytest shows them on failure)."""
    started: list[ProcfileProcess] = []
    try:
        for name in names:
            started.append(start_process(name, env, log_dir))
        yield {proc.name: proc for proc in started}
    finally:
        stop_processes(started)
        print(log_tails(started))
