"""Fixtures for the ``proxy.memo`` tests: a fake clock and a real ``redis-server`` on a free loopback port.

The Redis fixture is self-contained on purpose (the storage tests will get shared ones): one server per test,
started with persistence off, waited for with PING, terminated by its PID afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from proxy.clock import FakeClock

STARTUP_DEADLINE = 10.0  # seconds; a bound on waiting, not a measurement


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STARTUP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(binary: str) -> RedisServer:
    """Start a server; retried on a fresh port if another process took the one we picked."""
    for _ in range(3):
        port = free_port()
        command = [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
        server = RedisServer(port, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + STARTUP_DEADLINE
        while server.process.poll() is None and time.monotonic() < deadline:
            if answers_ping(port):
                return server
            time.sleep(0.02)
        server.stop()
    pytest.fail("redis-server did not answer PING")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server not installed, and CI is set: the Redis store tests must run")
        pytest.skip("redis-server not installed")
    server = start_redis(binary)
    try:
        yield server
    finally:
        server.stop()
