"""Sentinel failovers and a cluster node restart under concurrent writers and readers: 0 stale, 0 5xx.

The fault suite's stack (tests/fault/conftest.py running_stack: the Procfile's web with 2
gunicorn workers, worker and beat on nx-27017, Celery's broker on a separate standalone
redis-server) with the cache settings pointed at a real Sentinel setup (master, replica,
3 sentinels) or a real three-master Redis Cluster. One client process
sends the traffic (2 writers, 6 readers: products, the category's list and its count)
and keeps a WriteLedger of completed writes (tests/support/traffic.py). Each scenario:
healthy traffic, the fault, traffic until every failed cache write was replayed, a few
seconds more; every read during and after is judged.

- Sentinel failover (SENTINEL FAILOVER): the replica is promoted, the old master demoted.
- Failover to a lagging replica: the replica's replication link is cut (it cannot log in
  to the master again), writes go on against the master alone, the test checks the
  replica really holds older versions, then the master is SIGKILLed and the sentinels
  promote the replica with its old data.
- Cluster node restart from an old snapshot: SAVE on the node holding the list
  generation, writes go on, SIGKILL, restart: the node comes back with the old
  generation, list pages, counts and product versions.

The old data a lagging failover or a snapshot restart brings back is what the cache
epoch (jollyjet/cache/epoch.py) catches: every new connection checks the server's
identity before it carries a command, and every use of a connection checks that its
server is still the current one of its shard, as MongoDB's record says. Writes whose write-through failed or was skipped
meanwhile are fenced (jollyjet/cache/fence.py) until the repair job replays them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from jollyjet.cache.keys import CacheKeys
from tests.fault.conftest import TOKEN, FaultStack, running_stack
from tests.fault.outcome import Outcome
from tests.support.ledger import WriteLedger
from tests.support.redis_topologies import ClusterTopology, RedisNode, SentinelTopology, snapshot_value
from tests.support.traffic import Traffic

pytestmark = [pytest.mark.fault, pytest.mark.slow]

BEFORE_S = 1.5  # healthy traffic first: products, lists and counts are cached when the fault strikes
LAG_S = 1.5  # writes that reach the master only
LAG_WAIT_S = 8.0  # at most this much longer, on a slow machine, for the replica to fall behind
AFTER_S = 2.0  # traffic after the heal, once nothing is left to replay
REPAIR_TIMEOUT_S = 30.0
# A failover is over for the service once every process has left the old master: at the
# latest when Sentinel demotes it (about 8 s after a planned failover) and its clients are
# killed, then two fence polls.
SETTLE_TIMEOUT_S = 30.0


@dataclass
class TopologyStack:
    """The fault suite's Procfile stack with its cache on a topology, and the key names it uses."""

    stack: FaultStack
    keys: CacheKeys
    prefix: str
    masters: Callable[[], list[RedisNode]]  # the servers the topology serves from now

    def settled(self) -> bool:
        """Has the service switched to the topology's masters, every process having left the old ones?

        The cache epoch's record in MongoDB names each shard's current server (epoch.py):
        the switch is over when it names every master, and each of them is settled."""
        record: dict[str, Any] = self.stack.repairs.database["cache_epochs"].find_one({"_id": self.prefix}) or {}
        current: dict[str, dict[str, Any]] = record.get("current") or {}
        run_ids = {str(node.client().info("server")["run_id"]) for node in self.masters()}
        named = {str(server.get("id", "")).split("/")[0] for server in current.values()}
        return named == run_ids and all(server.get("settled") for server in current.values())

    def wait_until_settled(self, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.settled():
            assert time.monotonic() < deadline, f"the service did not settle on the new Redis servers in {timeout_s} s"
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return self.stack.url


def _stack_on(log_dir: Path, masters: Callable[[], list[RedisNode]], **topology_env: str) -> Iterator[TopologyStack]:
    """running_stack (web, worker, beat, broker, store) with the cache settings pointed at the topology."""
    prefix = f"topo{uuid.uuid4().hex[:10]}"
    with running_stack(log_dir, JOLLYJET_CACHE_KEY_PREFIX=prefix, **topology_env) as stack:
        yield TopologyStack(stack, CacheKeys(prefix), prefix, masters)


@pytest.fixture(scope="module")
def sentinel_topology() -> Iterator[SentinelTopology]:
    topology = SentinelTopology()
    try:
        topology.start()
        yield topology
    finally:
        topology.close()


@pytest.fixture(scope="module")
def sentinel_stack(
    sentinel_topology: SentinelTopology, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TopologyStack]:
    yield from _stack_on(
        tmp_path_factory.mktemp("sentinel-stack"),
        lambda: [sentinel_topology.node_at(sentinel_topology.master_address())],
        # The sentinels name the master (the stack's own standalone cache stays unused).
        REDIS_URL=sentinel_topology.url(),
    )


@pytest.fixture(scope="module")
def cluster_topology() -> Iterator[ClusterTopology]:
    topology = ClusterTopology()
    try:
        topology.start()
        yield topology
    finally:
        topology.close()


@pytest.fixture(scope="module")
def cluster_stack(
    cluster_topology: ClusterTopology, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TopologyStack]:
    yield from _stack_on(
        tmp_path_factory.mktemp("cluster-stack"),
        lambda: list(cluster_topology.nodes),
        REDIS_URL=cluster_topology.url,
    )


def run_scenario(stack: TopologyStack, name: str, fault: Callable[[], None]) -> Outcome:
    """Healthy traffic, fault() (returns once the topology serves again), traffic until all is replayed."""
    ledger = WriteLedger()
    records_before = stack.stack.repairs.count_documents({})
    traffic = Traffic(stack.url, TOKEN, f"topo-{name}", ledger)
    traffic.seed(30)
    traffic.start()
    try:
        time.sleep(BEFORE_S)
        stack.wait_until_settled()  # the service uses the topology's servers (the first test: its first)
        started = time.monotonic()
        fault()
        stack.wait_until_settled()  # the failover is over for the service too
        ended = time.monotonic()
        deadline = ended + REPAIR_TIMEOUT_S
        while stack.stack.pending_repairs() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(AFTER_S)
    finally:
        report = traffic.stop()
    recorded = stack.stack.repairs.count_documents({}) - records_before
    details = f"fault_s={ended - started:.1f} failed_cache_writes={recorded} "
    outcome = Outcome(name, report, ledger, started, ended, details=details)
    print(outcome.summary())
    stack.stack.assert_alive()
    return outcome


def assert_clean(outcome: Outcome, stack: TopologyStack) -> None:
    """0 stale, every answer one state, 0 5xx, membership and counts right, every failed cache write replayed."""
    report = outcome.report
    assert outcome.ledger.stale == [], (outcome.summary(), outcome.ledger.stale[:10])
    assert report.membership_violations == [], report.membership_violations[:10]
    assert report.count_violations == [], report.count_violations[:10]
    assert report.judge.mismatches == [] and report.unjudged == [], outcome.whole()
    assert report.read_5xx() == 0 and report.write_5xx == 0, outcome.summary()
    assert stack.stack.pending_repairs() == 0
    assert outcome.ledger.reads_checked > 100 and outcome.ledger.writes_recorded > 30, outcome.summary()


def _versions(client: redis.Redis, keys: CacheKeys, product_ids: list[str]) -> dict[str, int]:
    """Cached product versions on one server (absent entries left out)."""
    found = {}
    for product_id in product_ids:
        version = client.hget(keys.product(product_id).entry, "v")
        if version is not None:
            found[product_id] = int(version)
    return found


def _product_ids(stack: TopologyStack, category: str) -> list[str]:
    response = requests.get(f"{stack.url}/api/v1/products?category={category}&page_size=100", timeout=10)
    return [p["id"] for p in response.json()]


def test_sentinel_failover(sentinel_stack: TopologyStack, sentinel_topology: SentinelTopology) -> None:
    """SENTINEL FAILOVER under traffic: the pool follows the new master; nothing stale, no 5xx."""
    old = sentinel_topology.master_address()
    new: list[tuple[str, int]] = []
    outcome = run_scenario(sentinel_stack, "sentinel-failover", lambda: new.append(sentinel_topology.failover()))
    assert new[0] != old and sentinel_topology.master_address() == new[0]
    assert_clean(outcome, sentinel_stack)


# After the planned failover of the test before, processes may still hold pooled connections
# to the server that is now the lagging replica; the cache epoch's check (each connection a
# pool hands out carries the current identity of MongoDB's record) keeps them unused.
def test_sentinel_failover_to_a_lagging_replica(
    sentinel_stack: TopologyStack, sentinel_topology: SentinelTopology
) -> None:
    """The replica misses the last writes, the master dies, the replica is promoted: its old data is never served."""
    master = sentinel_topology.node_at(sentinel_topology.master_address())
    replica = next(n for n in (sentinel_topology.master, sentinel_topology.replica) if n is not master)
    category = "topo-lagging-failover"
    lagged: dict[str, int] = {}
    # After the planned failover of the test before, the old master is demoted and resyncs
    # some seconds later; cut a replica that receives this test's writes, not one that never did.
    sentinel_topology.wait_for_replica_in_sync(replica)

    def fault() -> None:
        sentinel_topology.cut_replication(replica)
        time.sleep(LAG_S)  # writes reach the master only
        deadline = time.monotonic() + LAG_WAIT_S
        while time.monotonic() < deadline:  # bounded: until the replica is behind on some products
            ids = _product_ids(sentinel_stack, category)
            on_master = _versions(master.client(), sentinel_stack.keys, ids)
            on_replica = _versions(replica.client(), sentinel_stack.keys, ids)
            lagged.update({p: v for p, v in on_master.items() if p in on_replica and on_replica[p] < v})
            if len(lagged) >= 3:
                break
            time.sleep(0.25)
        master.kill()
        sentinel_topology.wait_for_master(replica.address)

    outcome = run_scenario(sentinel_stack, "lagging-failover", fault)
    # The setup works: the promoted replica really held older versions of products the clients had written.
    assert lagged, "the replica was not behind when the master died"
    print(f"[lagging-failover] products whose cached version on the promoted replica was behind: {len(lagged)}")
    assert_clean(outcome, sentinel_stack)


def test_cluster_node_restart_from_an_old_snapshot(
    cluster_stack: TopologyStack, cluster_topology: ClusterTopology
) -> None:
    """The node holding the list generation restarts from a snapshot taken before the last writes."""
    node: list[RedisNode] = []
    category = "topo-cluster-restart"
    behind: dict[str, int] = {}

    def fault() -> None:
        keys = cluster_stack.keys
        target = cluster_topology.node_owning(keys.generation)
        node.append(target)
        target.client().save()
        time.sleep(LAG_S)  # writes after the snapshot: lost when the node restarts
        # Lists and counts are guarded by the global generation and the filter generations, all
        # on this node ({products}); a list-changing write bumps one of them.
        filter_generations = f"{keys.root}:products:{{products}}:fgen:*"
        generations = [keys.generation, *(k.decode() for k in target.client().scan_iter(filter_generations))]
        at_kill = {k: int(target.client().get(k) or 0) for k in generations}
        target.kill()
        # The setup works: the snapshot the node restarts from holds older generations (and
        # its lists and counts). Read from a copy: once restarted, the service may purge it at once.
        saved = {k: snapshot_value(target.dir / "dump.rdb", k) for k in generations}
        assert saved[keys.generation] is not None, "the snapshot holds no list generation"
        behind["generation"] = sum(1 for k in generations if (v := saved[k]) is not None and at_kill[k] > int(v))
        target.start()
        cluster_topology.wait_until_ok()

    outcome = run_scenario(cluster_stack, "cluster-restart", fault)
    assert behind["generation"] > 0, "no list-changing write happened between the snapshot and the kill"
    assert _product_ids(cluster_stack, category)
    assert_clean(outcome, cluster_stack)
