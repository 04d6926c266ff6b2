"""The proxy as a process: `cacheproxy serve` from the command line, SIGTERM, and memory under a large download."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httpx

from tests.support.origin import RunningOrigin
from tests.support.servers import free_port, run_process


def serve_args(origin: RunningOrigin, port: int) -> list[str]:
    return [sys.executable, "-m", "proxy", "serve", "--upstream", origin.url, "--port", str(port), "--no-access-log"]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


async def test_sigterm_lets_in_flight_requests_finish(origin: RunningOrigin) -> None:
    origin.set("/slow", headers={"Cache-Control": "max-age=60"}, body="finished", delay=1.0)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with run_process(serve_args(origin, port), ready_url=url + "/_cacheproxy/healthz", env=ENV, timeout=60) as proc:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            in_flight = asyncio.create_task(client.get("/slow"))
            for _ in range(500):  # until the request has reached the origin (it answers 1 s later)
                if origin.hits["/slow"]:
                    break
                await asyncio.sleep(0.01)
            assert origin.hits["/slow"] == 1
            proc.send_signal(signal.SIGTERM)
            response = await in_flight
        code = await asyncio.to_thread(proc.wait, 30)
    assert response.status_code == 200
    assert response.text == "finished"
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down cleanly


async def test_streamed_download_keeps_memory_flat(origin: RunningOrigin) -> None:
    size = 400 * 1024 * 1024  # far above the 8 MiB object cap: streamed, never held whole
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with run_process(serve_args(origin, port), ready_url=url + "/_cacheproxy/healthz", env=ENV, timeout=60) as proc:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            await client.get("/bytes/1048576")  # warm up the paths
            before = rss_kib(proc.pid)
            peak = before
            received = 0
            async with client.stream("GET", f"/bytes/{size}") as response:
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    if received % (16 * 1024 * 1024) < len(chunk):
                        peak = max(peak, rss_kib(proc.pid))
    assert received == size
    assert peak - before < 64 * 1024, f"proxy RSS grew by {(peak - before) / 1024:.0f} MiB for a 400 MiB download"
