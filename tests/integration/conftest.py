"""Integration fixtures beyond the shared chain: a MongoDB that separate processes can share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.mongo_server import MongoForTests, mongo_for_tests, unique_database_name


@pytest.fixture(scope="session")
def wire_mongo() -> Iterator[MongoForTests]:
    """nx-27017 on a free port (or the real MongoDB in MONGODB_URI), started once per session."""
    server = mongo_for_tests()
    server.start()
    yield server
    server.close()


@pytest.fixture
def shared_mongodb_uri(wire_mongo: MongoForTests) -> Iterator[str]:
    """A fresh database URI for `celery -A tasks` children, which refuse the in-process store."""
    database = unique_database_name()
    yield wire_mongo.uri_for(database)
    wire_mongo.drop_database(database)
