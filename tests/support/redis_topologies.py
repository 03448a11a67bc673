"""Real Redis topologies on loopback free ports: Sentinel (master, replica, 3 sentinels) and a 3-master Cluster.

Every process is a real `redis-server` / `redis-sentinel` started here and stopped by
close() (SIGTERM, then SIGKILL), each in its own temporary directory. Failure timings are
short (down-after 1 s, failover-timeout 3 s) so a failover takes seconds, not minutes.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

import redis

from tests.support.processes import stop_process
from tests.support.redis_server import free_port
from tests.support.tls_certs import TlsFiles, make_tls_files

MASTER_NAME = "jjmaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (scripts/test installs it)")
    return found


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll until condition() holds (errors count as not yet); raise naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


class RedisNode:
    """One redis-server (or redis-sentinel) process with a config file in its own directory."""

    def __init__(
        self,
        root: Path,
        name: str,
        config: list[str],
        sentinel: bool = False,
        password: str | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.dir = root / name
        self.dir.mkdir()
        self.config_file = self.dir / ("sentinel.conf" if sentinel else "redis.conf")
        # With TLS the plain port is closed (port 0): nothing reaches the server unencrypted.
        ports = [f"port {self.port}"] if tls is None else ["port 0", f"tls-port {self.port}", *tls.server_config()]
        base = [*ports, "bind 127.0.0.1", f'dir "{self.dir}"']
        if not sentinel:
            base += ['save ""', "appendonly no"]
        # Sentinel rewrites its config file as it learns the topology, so it must be writable.
        self.config_file.write_text("\n".join([*base, *config]) + "\n")
        self.binary = _binary("redis-sentinel" if sentinel else "redis-server")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def client(self) -> redis.Redis:
        """A plain client for the test's own commands (not the app's)."""
        tls = {} if self.tls is None else {"ssl": True, "ssl_ca_certs": str(self.tls.ca_cert)}
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=3, password=self.password, **tls)

    def start(self) -> None:
        """Start (or restart on the same port and directory) and wait until it answers PING."""
        log = (self.dir / "server.log").open("ab")
        self.process = subprocess.Popen([self.binary, str(self.config_file)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(self._answers(), 10, f"{self.config_file.parent.name} to answer PING")

    def _answers(self) -> Callable[[], bool]:
        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                log = (self.dir / "server.log").read_text(errors="replace")[-1000:]
                raise RuntimeError(f"{self.binary} exited ({self.process.returncode}):\n{log}")
            return bool(self.client().ping())

        return answers

    def kill(self) -> None:
        """SIGKILL: the process dies at once, nothing saved, clients see connection resets."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited."""
        if self.process is not None:
            stop_process(self.process)
            self.process = None


def _master_of(sentinel: RedisNode) -> tuple[str, int]:
    host, port = sentinel.client().sentinel_get_master_addr_by_name(MASTER_NAME)
    return (host.decode() if isinstance(host, bytes) else str(host), int(port))


class SentinelTopology:
    """A master, one replica and three sentinels (quorum 2) watching them as MASTER_NAME.

    password: requirepass of master and replica; sentinel_password: the sentinels' own.
    """

    def __init__(self, password: str | None = None, sentinel_password: str | None = None, tls: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="jj-sentinel-"))
        self.tls = make_tls_files(self.root / "tls") if tls else None
        auth = [f"requirepass {password}", f"masterauth {password}"] if password else []
        # Full syncs start at once (Redis waits 5 s by default for more replicas to join).
        auth.append("repl-diskless-sync-delay 0")
        self.master = RedisNode(self.root, "master", auth, password=password, tls=self.tls)
        self.replica = RedisNode(
            self.root, "replica", [*auth, f"replicaof 127.0.0.1 {self.master.port}"], password=password, tls=self.tls
        )
        monitor = [
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2",
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
        ]
        if password:
            monitor.append(f"sentinel auth-pass {MASTER_NAME} {password}")
        if sentinel_password:
            # The sentinels log in to each other with it too.
            monitor += [f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}"]
        self.sentinels = [
            RedisNode(self.root, f"sentinel{i}", monitor, sentinel=True, password=sentinel_password, tls=self.tls)
            for i in range(3)
        ]

    def url(self, password: str | None = None, sentinel_password: str | None = None) -> str:
        """The REDIS_URL naming all three sentinels and MASTER_NAME (rediss+sentinel:// with its CA over TLS)."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        options = {"sentinel_password": sentinel_password} if sentinel_password else {}
        if self.tls is not None:
            options["ssl_ca_certs"] = str(self.tls.ca_cert)
        auth = f":{quote(password, safe='')}@" if password else ""
        query = f"?{urlencode(options)}" if options else ""
        return f"{'rediss' if self.tls else 'redis'}+sentinel://{auth}{hosts}/{MASTER_NAME}{query}"

    def start(self) -> None:
        """Start every process; return when the replica is in sync and all sentinels know both servers."""
        self.master.start()
        self.replica.start()
        for sentinel in self.sentinels:
            sentinel.start()
        wait_for(self._replica_synced, 15, "the replica to sync")
        wait_for(self._sentinels_agree, 15, "every sentinel to see the master, the replica and the others")

    def _replica_synced(self) -> bool:
        info = self.replica.client().info("replication")
        return bool(info.get("master_link_status") == "up")

    def _sentinels_agree(self) -> bool:
        for sentinel in self.sentinels:
            state = sentinel.client().sentinel_master(MASTER_NAME)
            if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                return False
        return True

    def master_address(self) -> tuple[str, int]:
        """Where the sentinels say the master is now."""
        return _master_of(self.sentinels[0])

    def node_at(self, address: tuple[str, int]) -> RedisNode:
        """The server process listening at address."""
        return next(n for n in (self.master, self.replica) if n.address == address)

    def wait_for_master(self, address: tuple[str, int], timeout_s: float = 20) -> None:
        """Until every sentinel names `address` as the master and that server says it is one."""

        def done() -> bool:
            named = all(_master_of(s) == address for s in self.sentinels)
            role = self.node_at(address).client().info("replication")["role"]
            return named and role == "master"

        wait_for(done, timeout_s, f"{address} to become the master")

    def failover(self) -> tuple[str, int]:
        """SENTINEL FAILOVER (the replica is promoted, the old master demoted); returns the new master."""
        old = self.master_address()
        new = next(n.address for n in (self.master, self.replica) if n.address != old)
        self.sentinels[0].client().sentinel_failover(MASTER_NAME)
        self.wait_for_master(new)
        return new

    def wait_for_replica_in_sync(self, replica: RedisNode, timeout_s: float = 30) -> None:
        """Until the server replicates from the master with its link up (a demoted master is
        reconfigured by Sentinel some seconds after a failover, then resyncs)."""

        def in_sync() -> bool:
            info = replica.client().info("replication")
            return info.get("role") == "slave" and info.get("master_link_status") == "up"

        wait_for(in_sync, timeout_s, "the replica to be in sync with the master")

    def cut_replication(self, replica: RedisNode) -> None:
        """Make the replica lag: it drops its link and cannot log in again, so writes stop reaching it."""
        client = replica.client()
        # A wrong masterauth: the replica's reconnect fails at AUTH (a master without a
        # password refuses any AUTH too) while the master serves on.
        client.config_set("masterauth", "not-the-password")
        client.client_kill_filter(_type="master")
        wait_for(
            lambda: client.info("replication").get("master_link_status") == "down", 10, "the replication link to drop"
        )

    def close(self) -> None:
        """Stop every process and remove the directories."""
        for node in [*self.sentinels, self.replica, self.master]:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def snapshot_value(rdb: Path, key: str) -> bytes | None:
    """The value of a string key in an RDB file, read by a throwaway redis-server loading a copy of it."""
    root = Path(tempfile.mkdtemp(prefix="jj-rdb-"))
    node = RedisNode(root, "reader", ["dbfilename dump.rdb"])
    shutil.copy(rdb, node.dir / "dump.rdb")
    try:
        node.start()
        value = node.client().get(key)
        return value if isinstance(value, bytes) else None
    finally:
        node.stop()
        shutil.rmtree(root, ignore_errors=True)


class ClusterTopology:
    """Three masters (no replicas) joined with `redis-cli --cluster create`."""

    def __init__(self, node_timeout_ms: int = 2000) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="jj-cluster-"))
        config = [
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {node_timeout_ms}",
            # Shards that are up keep serving while one node is down.
            "cluster-require-full-coverage no",
        ]
        # The cluster bus listens on its own free port (by default port + 10000, which
        # overflows for the high ports free_port() hands out).
        self.nodes = [RedisNode(self.root, f"node{i}", [*config, f"cluster-port {free_port()}"]) for i in range(3)]

    @property
    def url(self) -> str:
        """REDIS_URL naming one node (the client discovers the others)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> None:
        """Start the nodes, create the cluster, and wait until every node reports cluster_state:ok."""
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [_binary("redis-cli"), "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_until_ok()

    def wait_until_ok(self, timeout_s: float = 30) -> None:
        """Until every node says cluster_state:ok and knows all three masters."""

        def ok() -> bool:
            for node in self.nodes:
                info = node.client().execute_command("CLUSTER INFO")
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != 3:
                    return False
            return True

        wait_for(ok, timeout_s, "the cluster to be ok")

    def node_owning(self, key: str) -> RedisNode:
        """The node whose slots hold key."""
        slot = int(self.nodes[0].client().execute_command("CLUSTER KEYSLOT", key))
        for start, end, primary, *_ in self.nodes[0].client().execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == int(primary[1]))
        raise LookupError(f"no node owns slot {slot}")

    def close(self) -> None:
        """Stop every node and remove the directories."""
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)
