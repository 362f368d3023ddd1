"""Fixtures of the multi-replica tests: a real redis-server per test, and 3 replicas on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench._redis_cluster import RedisServer, redis_available


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if not redis_available():
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    server = RedisServer().start()
    yield server
    server.stop()
