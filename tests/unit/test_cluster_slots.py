"""Keys one Lua script touches together hash to one Redis Cluster slot (redis-py's own slot function)."""

from __future__ import annotations

from redis.crc import key_slot

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
