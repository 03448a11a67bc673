"""Keys one Lua script touches together hash to one Redis Cluster slot (redis-py's own slot function)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from jollyjet.cache.epoch import UnverifiedCacheServer, cluster_shard
from jollyjet.cache.keys import CacheKeys

PRODUCT_IDS = ["6b07e533d17ed8b9c05f9c21", "000000000000000000000000", "ffffffffffffffffffffffff"]


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def test_a_products_entry_and_its_lease_share_a_slot() -> None:
    keys = CacheKeys("jj")
    for product_id in PRODUCT_IDS:
        product = keys.product(product_id)
        assert slot(product.entry) == slot(product.lease)
    # ...while different products spread over the cluster.
    assert len({slot(keys.product(p).entry) for p in PRODUCT_IDS}) == len(PRODUCT_IDS)


def test_list_and_count_results_and_their_locks_share_the_generations_slot() -> None:
    keys = CacheKeys("jj")
    generation = slot(keys.generation)
    for kind in ("list", "count"):
        for query in ({"category": "lamps", "page": 1}, {"q": "x", "sort": "-price", "page": 7}):
            result = keys.query_result(kind, 1795680515201366, query)
            assert slot(result) == generation
            assert slot(keys.fill_lock(result)) == generation


def test_a_cluster_masters_shard_is_its_first_slot_range() -> None:
    """What a promoted replica takes over unchanged; a master without slots is its own shard."""
    nodes = (
        "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eec 0 1426238317239 4 connected\n"
        "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 myself,master - 0 0 2 connected "
        "5461-10922 [5460->-e7d1eec]\n"
    )
    assert cluster_shard(nodes) == "slots-5461-10922"
    empty = "67ed2db8 127.0.0.1:30002@31002 myself,master - 0 0 2 connected\n"
    assert cluster_shard(empty) == "node-67ed2db8"
    with pytest.raises(UnverifiedCacheServer):
        cluster_shard("67ed2db8 127.0.0.1:30002@31002 master - 0 0 2 connected 0-100\n")
