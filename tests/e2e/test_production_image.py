"""The production image's contents on a fresh install of requirements.lock, without Docker.

What the Dockerfile does, done here: a new virtualenv with the hash-checked production
lock (no mongomock, no fakeredis), the files its COPY lines copy, and its CMD. That image
serves real MongoDB and Redis, passes its own HEALTHCHECK, and, started without
MONGODB_URI, stops at once with one line that names the variable and the extra.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.deploy_files import dockerfile_cmd, dockerfile_healthcheck, dockerfile_instructions
from tests.support.mongo_server import mongo_for_tests, unique_database_name
from tests.support.procfile import REPO_ROOT
from tests.support.redis_server import RedisServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TOKEN = "image-token-0123456789abcdef"


class Image:
    """A directory laid out as the image's WORKDIR and the virtualenv its RUN line installs."""

    def __init__(self, root: Path) -> None:
        self.app = root / "app"
        self.venv = root / "venv"
        self.tmp = root / "tmp"

    def env(self, **values: str) -> dict[str, str]:
        """The container's environment: the image's ENV lines, its venv first on PATH, and values."""
        env = {"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", "HOME": str(self.tmp), "TMPDIR": str(self.tmp)}
        for keyword, arguments in dockerfile_instructions():
            if keyword == "ENV":
                env.update(pair.split("=", 1) for pair in arguments.split())
        env.update(values)
        return env

    def run(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(argv, cwd=self.app, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    built = Image(tmp_path_factory.mktemp("image"))
    built.app.mkdir()
    built.tmp.mkdir()
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY":
            continue
        *sources, destination = arguments.split()
        for source in sources:
            target = built.app / destination / source if destination.endswith("/") else built.app / destination
            if (REPO_ROOT / source).is_dir():
                shutil.copytree(REPO_ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(REPO_ROOT / source, target)
    subprocess.run([sys.executable, "-m", "venv", str(built.venv)], check=True)
    # The Dockerfile's install, with pip's cache allowed (the image build uses none).
    install = [str(built.venv / "bin/pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*install, "--require-hashes", "-r", str(built.app / "requirements.lock")], check=True)
    return built


def web_command() -> list[str]:
    """The image's CMD, listening on loopback only (tests never listen on every interface)."""
    return [part.replace("0.0.0.0:", "127.0.0.1:") for part in dockerfile_cmd()]


def test_the_image_serves_real_servers_without_the_stand_ins(
    image: Image, private_redis: RedisServer, tmp_path: Path
) -> None:
    installed = subprocess.run(
        ["python", "-c", "import mongomock"], env=image.env(), capture_output=True, text=True, check=False
    )
    assert "No module named 'mongomock'" in installed.stderr
    mongo = mongo_for_tests()
    port = free_port()
    env = image.env(
        PORT=str(port),
        JOLLYJET_ENV="production",
        MONGODB_URI=mongo.uri_for(unique_database_name("jj_image")),
        REDIS_URL=private_redis.url,
        JOLLYJET_API_TOKENS=TOKEN,
        WEB_CONCURRENCY="1",
    )
    _, healthcheck = dockerfile_healthcheck()
    try:
        mongo.start()
        web = image.run(web_command(), env, tmp_path / "web.log")
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while not _answers(f"{base}/health/ready"):
                assert web.poll() is None, (tmp_path / "web.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "web.log").read_text()
                time.sleep(0.2)
            check = subprocess.run(healthcheck, cwd=image.app, env=env, capture_output=True, text=True, timeout=10)
            assert check.returncode == 0, check.stderr
            created = requests.post(
                f"{base}/api/v1/products",
                json={"sku": "IMG-1", "name": "Mug", "price": "9.50", "category": "kitchen"},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=10,
            )
            assert created.status_code == 201, created.text
            read = requests.get(f"{base}/api/v1/products/{created.json()['id']}", timeout=10)
            assert read.json() == created.json() and read.headers["X-Cache"] == "HIT"
        finally:
            web.send_signal(signal.SIGTERM)
            assert web.wait(timeout=40) == 0, (tmp_path / "web.log").read_text()
    finally:
        mongo.close()


@pytest.mark.parametrize(
    "argv",
    [web_command(), ["celery", "-A", "tasks", "worker", "--loglevel=INFO"]],
    ids=["web", "worker"],
)
def test_without_mongodb_uri_the_image_stops_with_one_line(image: Image, tmp_path: Path, argv: list[str]) -> None:
    log = tmp_path / "start.log"
    process = image.run(argv, image.env(PORT=str(free_port())), log)
    assert process.wait(timeout=60) != 0
    text = log.read_text()
    named = [line for line in text.splitlines() if "MONGODB_URI" in line]
    assert len(named) == 1 and "install the `embedded` extra" in named[0], text
    assert "Traceback" not in text and "Booting worker" not in text, text


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False
