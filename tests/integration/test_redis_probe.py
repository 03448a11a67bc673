"""The scrape-time Redis figures on a real redis-server: INFO read, and a hung Redis never holds a scrape."""

from __future__ import annotations

import os
import signal

import pytest

from jollyjet.ops.health import RedisProbe
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.monitoring]


def test_the_probe_reads_memory_evictions_and_clients(private_redis: RedisServer) -> None:
    raw = private_redis.client()
    raw.config_set("maxmemory", str(64 * 1024 * 1024))
    figures = RedisProbe.for_url(private_redis.url).sample()
    assert figures.up and figures.maxmemory == 64 * 1024 * 1024
    assert 0 < figures.used_memory < figures.maxmemory and figures.connected_clients >= 1
    assert figures.evicted_keys == 0 and figures.memory_ratio is not None and figures.memory_ratio < 1


def test_a_hung_redis_reads_as_down_instead_of_blocking(private_redis: RedisServer) -> None:
    probe = RedisProbe.for_url(private_redis.url)
    assert probe.sample().up
    assert private_redis.process is not None
    os.kill(private_redis.process.pid, signal.SIGSTOP)  # accepts no command, closes nothing
    try:
        assert probe.sample().up is False  # the probe's own 250 ms socket timeout, no retry
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    assert probe.sample().up
    private_redis.stop()
    assert probe.sample().up is False
