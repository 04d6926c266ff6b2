"""Real ``redis-server`` processes for tests: one server, or a cluster (with replicas if asked), on free loopback ports.

Each server runs in its own temporary directory with persistence off and is stopped by its own PID (never by name,
never the system's server on 6379). ``require_redis()`` skips a test when the binary is missing, unless ``CI`` is
set: then it fails, so the CI run proves the Redis tests ran.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import redis

HOST = "127.0.0.1"


def require_redis() -> None:
    """Skip without ``redis-server`` and ``redis-cli``; fail instead when the ``CI`` environment variable is set."""
    missing = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not installed"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and CI is set: the Redis tests must run in CI")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def free_cluster_port() -> int:
    """A free port ``p`` whose cluster bus port ``p + 10000`` is free too (so ``p`` is at most 55535)."""
    while True:
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind((HOST, port))
                b.bind((HOST, port + 10000))
        except OSError:
            continue
        return port


@dataclass
class RedisServer:
    """One running ``redis-server`` this test session started."""

    host: str
    port: int
    proc: subprocess.Popen[bytes]
    directory: str
    extra: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(self.host, self.port, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as in a crash."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        """Start again on the same port and directory (empty: persistence is off)."""
        self.kill()
        self.proc = _spawn(self.port, self.directory, self.extra)
        wait_for_ping(self.host, self.port, self.proc)


def _spawn(port: int, directory: str, extra: tuple[str, ...]) -> subprocess.Popen[bytes]:
    command = [
        "redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
        "--daemonize", "no", "--dir", directory, "--logfile", os.path.join(directory, "redis.log"), *extra,
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_ping(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    client = redis.Redis(host, port, socket_timeout=1, socket_connect_timeout=1)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {port} exited with {proc.returncode}")
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not answer PING within {timeout}s")
            time.sleep(0.02)
    finally:
        client.close()


@contextmanager
def redis_server(*extra: str) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` on a free port in a temporary directory; stopped (by PID) on exit."""
    with tempfile.TemporaryDirectory(prefix="cacheproxy-redis-") as directory:
        server = _start(directory, extra)
        try:
            yield server
        finally:
            if server.proc.poll() is None:
                server.proc.terminate()
                try:
                    server.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()


def _start(directory: str, extra: tuple[str, ...], attempts: int = 5) -> RedisServer:
    """Spawn on a free port; another process may take the port first, so try a few."""
    for attempt in range(attempts):
        port = free_cluster_port() if "--cluster-enabled" in extra else free_port()
        proc = _spawn(port, directory, extra)
        try:
            wait_for_ping(HOST, port, proc)
        except RuntimeError:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            if attempt == attempts - 1:
                raise
            continue
        return RedisServer(HOST, port, proc, directory, extra)
    raise AssertionError("unreachable")


@dataclass
class RedisClusterHandle:
    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    @property
    def alive(self) -> list[RedisServer]:
        """The nodes whose process is still running (a test may have killed some)."""
        return [node for node in self.nodes if node.proc.poll() is None]

    def _table(self) -> dict[str, Any]:
        """``CLUSTER NODES`` as the first live node sees it."""
        with self.alive[0].client() as client:
            table: dict[str, Any] = client.execute_command("CLUSTER NODES")
        return table

    def _node_at(self, address: str) -> RedisServer:
        return next(n for n in self.nodes if f"{n.host}:{n.port}" == address.split("@")[0])

    def owner_of(self, slot: int) -> RedisServer:
        """The primary serving ``slot``, as the first (live) node sees the cluster."""
        for address, node in self._table().items():
            # A range is [lo, hi]; redis-py gives a lone slot (after a move) as [slot].
            if any(int(bounds[0]) <= slot <= int(bounds[-1]) for bounds in node["slots"]):
                return self._node_at(address)
        raise LookupError(f"no node serves slot {slot}")

    def primaries(self) -> list[RedisServer]:
        """The live nodes that are primaries now (after a failover, a former replica is one)."""
        table = self._table()
        return [
            self._node_at(address) for address, node in table.items()
            if "master" in node["flags"] and "fail" not in node["flags"] and self._node_at(address) in self.alive
        ]  # fmt: skip

    def wait_for_failover(self, slot: int, dead: RedisServer, timeout: float = 15.0) -> RedisServer:
        """After ``dead`` (the primary of ``slot``) was killed: wait until a replica took ``slot`` over and every
        live node reports the cluster ok again; the new primary."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.RedisError, LookupError):
                owner = self.owner_of(slot)
                if owner is not dead and all(_state_ok(node) for node in self.alive):
                    return owner
            if time.monotonic() > deadline:
                raise RuntimeError(f"no replica took slot {slot} over from port {dead.port} within {timeout}s")
            time.sleep(0.1)

    def heal(self, timeout: float = 30.0) -> None:
        """Restart every killed node (on its port, with its ``nodes.conf``: it rejoins as a replica) and wait
        until the cluster is ok and every replica is in sync."""
        for node in self.nodes:
            if node.proc.poll() is not None:
                node.restart()
        wait_for_cluster_ok(self.nodes, timeout)
        wait_for_replicas_in_sync(self.nodes, timeout)

    def move_slot(self, slot: int, target: RedisServer) -> None:
        """Migrate ``slot`` and its keys to ``target`` the way ``redis-cli --cluster reshard`` does, so clients
        with the old slot map get ``MOVED`` (or ``ASK`` mid-migration)."""
        source = self.owner_of(slot)
        with source.client() as src, target.client() as dst:
            src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
            dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
            while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
                src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
        for node in self.nodes:
            with node.client() as client:
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)

    def flushall(self) -> None:
        """Empty every primary (replicas follow; they refuse ``FLUSHALL`` themselves)."""
        for node in self.primaries():
            with node.client() as client:
                client.flushall()
                client.config_resetstat()


@contextmanager
def redis_cluster(n: int = 3, *, replicas: int = 0, node_timeout_ms: int = 2000) -> Iterator[RedisClusterHandle]:
    """``n`` primaries, each with ``replicas`` replicas, made into a cluster by ``redis-cli --cluster create``;
    waits for state ok (and for every replica to be in sync). ``node_timeout_ms`` is ``cluster-node-timeout``: how
    soon a silent primary is failed over."""
    with ExitStack() as stack:
        nodes = [
            stack.enter_context(
                redis_server("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                             "--cluster-node-timeout", str(node_timeout_ms))
            )
            for _ in range(n * (1 + replicas))
        ]  # fmt: skip
        addresses = [f"{node.host}:{node.port}" for node in nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        wait_for_cluster_ok(nodes)
        wait_for_replicas_in_sync(nodes)
        yield RedisClusterHandle(nodes)


def wait_for_cluster_ok(nodes: list[RedisServer], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for node in nodes:
        with node.client() as client:
            while not _cluster_ok(client.execute_command("CLUSTER INFO"), len(nodes)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node {node.port} not ok within {timeout}s")
                time.sleep(0.05)


def _cluster_ok(info: dict[str, str], size: int) -> bool:
    """State ok, and this node knows every other one (so a client may start from any node)."""
    return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == size


def _state_ok(node: RedisServer) -> bool:
    with node.client() as client:
        info: dict[str, str] = client.execute_command("CLUSTER INFO")
    return info.get("cluster_state") == "ok"


def wait_for_replicas_in_sync(nodes: list[RedisServer], timeout: float = 30.0) -> None:
    """Every replica among ``nodes`` has its link to its primary up and no sync in progress (a no-op without
    replicas): only then can it take over from a failed primary."""
    deadline = time.monotonic() + timeout
    for node in nodes:
        with node.client() as client:
            while not _in_sync(client.info("replication")):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica on port {node.port} not in sync within {timeout}s")
                time.sleep(0.05)


def _in_sync(replication: dict[str, Any]) -> bool:
    if replication.get("role") != "slave":
        return True
    return replication.get("master_link_status") == "up" and not replication.get("master_sync_in_progress")
