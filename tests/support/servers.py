"""Real servers for end-to-end tests: an ASGI app under uvicorn in the test's loop, or a whole process.

Everything binds to loopback on a free port and is stopped by the helper that started it (a process by its PID).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the test runner's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class UvicornServer:
    """One ASGI app served by uvicorn as a task in the running loop.

    ``port=0`` lets the OS choose; the chosen port is kept, so ``stop()`` then ``start()`` serves again on the same
    URL (to simulate an origin outage). Extra keyword arguments go to ``uvicorn.Config``.
    """

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._config = {"lifespan": "on", "log_level": "warning", "timeout_graceful_shutdown": 3, **config}
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> str:
        """Start serving and return the base URL once the socket is accepting."""
        if self._server is not None:
            raise RuntimeError("server already running")
        config = uvicorn.Config(self.app, host=self.host, port=self.port, loop="asyncio", **self._config)
        server = _QuietServer(config)
        task = asyncio.create_task(self._serve(server))
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn exited before it started")
            await asyncio.sleep(0.01)
        self._server, self._task = server, task
        self.port = int(server.servers[0].sockets[0].getsockname()[1])
        return self.url

    @staticmethod
    async def _serve(server: uvicorn.Server) -> None:
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn exits the process when lifespan startup fails
            raise RuntimeError(f"uvicorn failed to start (exit {exc.code})") from exc

    async def stop(self) -> None:
        """Ask uvicorn to shut down (lifespan shutdown included) and wait for it."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        await task

    async def __aenter__(self) -> UvicornServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@contextlib.asynccontextmanager
async def run_asgi(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` under uvicorn on loopback for the duration of the block; yields the base URL."""
    async with UvicornServer(app, host=host, port=port, **config) as server:
        yield server.url


def wait_http(url: str, *, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers with any HTTP status; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout} s") from None
            time.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes], *, grace: float = 5.0) -> None:
    """SIGTERM the process by its PID, then SIGKILL it if it has not exited after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def run_process(
    args: Sequence[str],
    *,
    ready_url: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 15.0,
    cwd: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args`` (e.g. ``[sys.executable, "-m", "proxy", "serve", ...]``), wait for ``ready_url``, yield it.

    ``env`` is added to the current environment. Output goes to a temporary file whose tail is put in the error
    when the process fails to become ready (a pipe could fill up and block it).
    """
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(list(args), env={**os.environ, **(env or {})}, stdout=log, stderr=log, cwd=cwd)
        try:
            try:
                wait_http(ready_url, timeout=timeout, proc=proc)
            except (RuntimeError, TimeoutError) as exc:
                stop_process(proc)
                log.seek(0)
                tail = log.read()[-4000:].decode("utf-8", "replace")
                raise RuntimeError(f"{exc}\n--- output of {list(args)} ---\n{tail}") from exc
            yield proc
        finally:
            stop_process(proc)
